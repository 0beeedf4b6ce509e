-- title: Stock-outs (moves that left a product's level in a warehouse at zero or below)
-- chart: bar
SELECT concat(product_id, ' @ ', warehouse_id) AS item, count() AS stock_outs
FROM
(
    SELECT product_id, warehouse_id,
           sum(delta) OVER (PARTITION BY product_id, warehouse_id ORDER BY ts, log_partition, log_offset
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS level
    FROM {db:Identifier}.stock_moves
)
WHERE level <= 0
GROUP BY item
ORDER BY stock_outs DESC, item
LIMIT 20
