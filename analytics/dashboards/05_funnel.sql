-- title: Funnel view -> cart -> order (shoppers reaching each step within 24 h, windowFunnel)
-- chart: bar
SELECT ['viewed', 'added to cart', 'ordered'][step] AS stage, count() AS shoppers
FROM
(
    SELECT user_id, windowFunnel(86400000)(at, step = 1, step = 2, step = 3) AS level
    FROM
    (
        SELECT user_id, toUInt64(toUnixTimestamp64Milli(ts)) AS at, 1 AS step FROM {db:Identifier}.product_views
        UNION ALL
        SELECT user_id, toUInt64(toUnixTimestamp64Milli(ts)), 2 FROM {db:Identifier}.cart_events WHERE kind = 'item_added'
        UNION ALL
        SELECT user_id, toUInt64(toUnixTimestamp64Milli(ts)), 3 FROM {db:Identifier}.orders WHERE kind = 'placed'
    )
    GROUP BY user_id
)
ARRAY JOIN range(1, level + 1) AS step
GROUP BY step
ORDER BY step
