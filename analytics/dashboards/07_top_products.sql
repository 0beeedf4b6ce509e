-- title: Top products by units ordered
-- chart: bar
SELECT product_id, sum(quantity) AS units, sum(quantity * unit_price) AS revenue
FROM {db:Identifier}.order_lines
GROUP BY product_id
ORDER BY units DESC, product_id
LIMIT 10
