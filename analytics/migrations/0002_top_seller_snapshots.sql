-- The pipeline's top-sellers view (seed 003 query 2: units of confirmed orders, cancellations
-- and refunds subtracted) as analysts see it over time: one set of ranked rows per snapshot
-- time. Written by `analytics::snapshots`, at most once per snapshot time.
CREATE TABLE IF NOT EXISTS top_seller_snapshots (
    snapshot_at DateTime64(3, 'UTC'),
    rank UInt32,
    product_id String,
    category_id LowCardinality(String),
    units Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(snapshot_at)
ORDER BY (snapshot_at, rank);
