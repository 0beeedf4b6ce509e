-- title: Returning buyers (buyers of the first week who ordered again in weeks 2-4, retention)
-- chart: bar
WITH (SELECT min(toDate(ts)) FROM {db:Identifier}.orders WHERE kind = 'placed') AS first_day
SELECT ['week 1', 'week 2', 'week 3', 'week 4'][i] AS week, buyers
FROM
(
    SELECT sumForEach(r) AS per_week
    FROM
    (
        SELECT user_id,
               retention(week = 0, week = 1, week = 2, week = 3) AS r
        FROM
        (
            SELECT user_id, intDiv(dateDiff('day', first_day, toDate(ts)), 7) AS week
            FROM {db:Identifier}.orders
            WHERE kind = 'placed'
        )
        GROUP BY user_id
    )
)
ARRAY JOIN per_week AS buyers, arrayEnumerate(per_week) AS i
ORDER BY i
