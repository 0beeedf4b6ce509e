-- title: Gross revenue per day (placed orders)
-- chart: time
SELECT toDate(ts) AS t, sum(total) AS revenue
FROM {db:Identifier}.orders
WHERE kind = 'placed'
GROUP BY t
ORDER BY t
