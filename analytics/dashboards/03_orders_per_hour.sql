-- title: Orders per hour
-- chart: time
SELECT toStartOfHour(toDateTime(ts, 'UTC')) AS t, count() AS orders
FROM {db:Identifier}.orders
WHERE kind = 'placed'
GROUP BY t
ORDER BY t
