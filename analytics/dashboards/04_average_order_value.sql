-- title: Average order value per day
-- chart: time
SELECT toDate(ts) AS t, round(toFloat64(sum(total)) / count(), 2) AS average_order_value
FROM {db:Identifier}.orders
WHERE kind = 'placed'
GROUP BY t
ORDER BY t
