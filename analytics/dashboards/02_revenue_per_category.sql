-- title: Revenue per category (order lines, each product's latest category)
-- chart: bar
SELECT if(c.category = '', 'unknown', c.category) AS category, sum(l.quantity * l.unit_price) AS revenue
FROM {db:Identifier}.order_lines AS l
LEFT JOIN
(
    SELECT product_id, assumeNotNull(argMax(category_id, ts)) AS category
    FROM {db:Identifier}.products
    WHERE category_id IS NOT NULL
    GROUP BY product_id
) AS c ON l.product_id = c.product_id
GROUP BY category
ORDER BY revenue DESC, category
