//! The part of the sink that talks to ClickHouse: one `INSERT` per table per batch through the
//! crate's `Insert` (RowBinaryWithNamesAndTypes, validated against the table), and the
//! "which of these positions does a table already hold?" question behind exactly-once.

use std::collections::BTreeMap;

use clickhouse::{Client, Row};
use shopflow_events::Topic;

use super::request_builder::{Present, RowBatch, Table};
use crate::rows::Positioned;
use crate::{AnalyticsError, AnalyticsSettings, Compression};

/// A client for the configured database.
pub fn client(settings: &AnalyticsSettings, url: &str) -> Client {
    let mut client = Client::default().with_url(url).with_database(&settings.database).with_validation(true);
    client = client.with_compression(match settings.compression {
        Compression::None => clickhouse::Compression::None,
        Compression::Lz4 => clickhouse::Compression::Lz4,
    });
    if let Some(user) = &settings.user {
        client = client.with_user(user);
    }
    if let Some(password) = &settings.password {
        client = client.with_password(password.expose());
    }
    client
}

#[derive(Clone)]
pub struct ClickHouseService {
    client: Client,
}

impl ClickHouseService {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Inserts every table of the batch that still has rows, one `INSERT` each, and empties a
    /// table's rows once ClickHouse acknowledged them, so a retry after a failure resends only
    /// the tables that were not acknowledged.
    pub async fn insert(&self, batch: &mut RowBatch) -> Result<(), AnalyticsError> {
        self.insert_rows(Table::Events, &mut batch.events).await?;
        self.insert_rows(Table::Products, &mut batch.products).await?;
        self.insert_rows(Table::StockMoves, &mut batch.stock_moves).await?;
        self.insert_rows(Table::Users, &mut batch.users).await?;
        self.insert_rows(Table::CartEvents, &mut batch.cart_events).await?;
        self.insert_rows(Table::Orders, &mut batch.orders).await?;
        self.insert_rows(Table::OrderLines, &mut batch.order_lines).await?;
        self.insert_rows(Table::Payments, &mut batch.payments).await?;
        self.insert_rows(Table::ProductViews, &mut batch.product_views).await?;
        self.insert_rows(Table::Searches, &mut batch.searches).await?;
        self.insert_rows(Table::RecommendationClicks, &mut batch.recommendation_clicks).await?;
        self.insert_rows(Table::Decisions, &mut batch.decisions).await?;
        Ok(())
    }

    async fn insert_rows<T>(&self, table: Table, rows: &mut Vec<T>) -> Result<(), AnalyticsError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Positioned + Send + Sync,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table.name()).await?;
        for row in rows.iter() {
            insert.write(row).await?;
        }
        insert.end().await?;
        metrics::counter!("analytics_sink_rows_total", "table" => table.name()).increment(rows.len() as u64);
        rows.clear();
        Ok(())
    }

    /// After a failed insert whose outcome is unknown (the connection broke after ClickHouse
    /// may have committed): drops from the batch every row whose table already holds its log
    /// position, so the retry cannot double it.
    pub async fn drop_present(&self, batch: &mut RowBatch) -> Result<(), AnalyticsError> {
        let present = self.present(&batch.first).await?;
        if present.is_empty() {
            return Ok(());
        }
        tracing::info!(rows = present.len(), "rows of a failed insert had landed; not sending them again");
        fn keep<T: Positioned>(rows: &mut Vec<T>, table: Table, present: &Present) {
            rows.retain(|r| {
                let (topic, partition, offset) = r.position();
                !Topic::from_name(topic).is_some_and(|t| present.contains(table, t, partition, offset))
            });
        }
        keep(&mut batch.events, Table::Events, &present);
        keep(&mut batch.products, Table::Products, &present);
        keep(&mut batch.stock_moves, Table::StockMoves, &present);
        keep(&mut batch.users, Table::Users, &present);
        keep(&mut batch.cart_events, Table::CartEvents, &present);
        keep(&mut batch.orders, Table::Orders, &present);
        keep(&mut batch.order_lines, Table::OrderLines, &present);
        keep(&mut batch.payments, Table::Payments, &present);
        keep(&mut batch.product_views, Table::ProductViews, &present);
        keep(&mut batch.searches, Table::Searches, &present);
        keep(&mut batch.recommendation_clicks, Table::RecommendationClicks, &present);
        keep(&mut batch.decisions, Table::Decisions, &present);
        Ok(())
    }

    /// The positions at or beyond `from` (per partition) that each table holds.
    pub async fn present(&self, from: &BTreeMap<(Topic, u32), u64>) -> Result<Present, AnalyticsError> {
        let mut present = Present::default();
        if from.is_empty() {
            return Ok(present);
        }
        // Topic names and numbers only: nothing here comes from outside.
        let filter = from
            .iter()
            .map(|((topic, partition), offset)| {
                format!("(log_topic = '{}' AND log_partition = {partition} AND log_offset >= {offset})", topic.name())
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        #[derive(Row, serde::Deserialize)]
        struct At {
            log_topic: String,
            log_partition: u32,
            log_offset: u64,
        }
        for table in Table::ALL {
            let sql = format!("SELECT DISTINCT log_topic, log_partition, log_offset FROM {} WHERE {filter}", table.name());
            let rows: Vec<At> = self.client.query(&sql).fetch_all().await?;
            for at in rows {
                if let Some(topic) = Topic::from_name(&at.log_topic) {
                    present.insert(table, topic, at.log_partition, at.log_offset);
                }
            }
        }
        Ok(present)
    }
}
