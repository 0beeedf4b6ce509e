-- The raw table keeps each event's JSON, with what must not leave the log taken out (see
-- src/sink/redact.rs): e-mail addresses become their keyed hash; password hashes, token
-- digests, client addresses, names, phone numbers, streets and authorization codes are dropped.
--
-- Every table carries the log position its row came from (log_topic, log_partition,
-- log_offset): the sink's exactly-once bookkeeping lives with the data (see src/sink/mod.rs).
-- Typed tables are fed from one topic each; a minmax index on log_offset keeps the sink's
-- start-up question ("which of these offsets are already here?") to a few granules.

CREATE TABLE IF NOT EXISTS events (
    id UUID,
    ts DateTime64(3, 'UTC'),
    type LowCardinality(String),
    key String,
    payload String CODEC(ZSTD(3)),
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (type, ts);

CREATE TABLE IF NOT EXISTS products (
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    product_id String,
    name Nullable(String),
    category_id Nullable(String),
    brand_id Nullable(String),
    price Nullable(Decimal(18, 2)),
    currency LowCardinality(String),
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
ORDER BY (product_id, ts);

CREATE TABLE IF NOT EXISTS stock_moves (
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    product_id String,
    warehouse_id LowCardinality(String),
    delta Int64,
    reason String,
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (product_id, warehouse_id, ts);

-- No password hash and no e-mail address: email_hash is a keyed hash (HMAC-SHA256) for
-- counting distinct addresses; names, phone numbers, streets, refresh-token digests and client
-- addresses are left out.
CREATE TABLE IF NOT EXISTS users (
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    user_id String,
    email_hash String,
    role LowCardinality(String),
    session_id String,
    country LowCardinality(String),
    city String,
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
ORDER BY (user_id, ts);

CREATE TABLE IF NOT EXISTS cart_events (
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    user_id String,
    product_id String,
    quantity UInt32,
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (user_id, ts);

CREATE TABLE IF NOT EXISTS orders (
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    order_id String,
    user_id String,
    status LowCardinality(String),
    lines UInt16,
    items UInt32,
    total Decimal(18, 2),
    currency LowCardinality(String),
    reason String,
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, order_id);

CREATE TABLE IF NOT EXISTS order_lines (
    ts DateTime64(3, 'UTC'),
    order_id String,
    user_id String,
    line UInt16,
    product_id String,
    quantity UInt32,
    unit_price Decimal(18, 2),
    currency LowCardinality(String),
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (product_id, ts);

-- Payment methods by token and last four digits only; no authorization codes.
CREATE TABLE IF NOT EXISTS payments (
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    order_id String,
    user_id String,
    payment_id String,
    amount Decimal(18, 2),
    currency LowCardinality(String),
    token String,
    last4 String,
    card_brand LowCardinality(String),
    reason String,
    retryable UInt8,
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, order_id);

CREATE TABLE IF NOT EXISTS product_views (
    ts DateTime64(3, 'UTC'),
    user_id String,
    product_id String,
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (product_id, ts);

CREATE TABLE IF NOT EXISTS searches (
    ts DateTime64(3, 'UTC'),
    user_id String,
    query String,
    hits UInt32,
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, user_id);

CREATE TABLE IF NOT EXISTS recommendation_clicks (
    ts DateTime64(3, 'UTC'),
    user_id String,
    product_id String,
    source LowCardinality(String),
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, user_id);

CREATE TABLE IF NOT EXISTS decisions (
    ts DateTime64(3, 'UTC'),
    kind LowCardinality(String),
    order_id String,
    product_id String,
    warehouse_id LowCardinality(String),
    holds UInt16,
    quantity Int64,
    available Int64,
    reason String,
    log_topic LowCardinality(String),
    log_partition UInt32,
    log_offset UInt64,
    INDEX log_pos log_offset TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, order_id);

-- The dashboards that ClickHouse's /dashboard page loads (`SELECT title, query FROM
-- shopflow.dashboards`); refilled from analytics/dashboards/*.sql by every migrate.
CREATE TABLE IF NOT EXISTS dashboards (
    dashboard LowCardinality(String),
    name String,
    title String,
    query String
) ENGINE = MergeTree
ORDER BY (dashboard, name);
