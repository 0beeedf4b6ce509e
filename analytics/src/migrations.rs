//! Versioned schema migrations, applied in order at the sink's start and by
//! `shopflow analytics migrate`. Each applied version is recorded in `schema_migrations`; every
//! statement is `IF NOT EXISTS`, so a migration cut short by a crash is simply run again.
//! After the migrations, the `dashboards` table is refilled from the shipped SQL files.

use clickhouse::Client;

use crate::dashboards::{self, Chart, Dashboard};
use crate::rows::DashboardRow;
use crate::AnalyticsError;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Never edit an applied one: add the next version.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "tables", sql: include_str!("../migrations/0001_tables.sql") },
    Migration { version: 2, name: "top_seller_snapshots", sql: include_str!("../migrations/0002_top_seller_snapshots.sql") },
];

/// Creates the database if needed, applies the migrations it has not seen, refreshes the
/// dashboards; returns the versions applied now.
pub async fn migrate(client: &Client, database: &str) -> Result<Vec<u32>, AnalyticsError> {
    let mut quoted = String::new();
    quote_identifier(database, &mut quoted);
    client.clone().with_database("default").query(&format!("CREATE DATABASE IF NOT EXISTS {quoted}")).execute().await?;
    client
        .query("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version")
        .execute()
        .await?;
    let done: Vec<u32> = client.query("SELECT DISTINCT version FROM schema_migrations").fetch_all().await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for statement in statements(m.sql) {
            client.query(&statement).execute().await.map_err(|e| AnalyticsError::Migration {
                version: m.version,
                name: m.name,
                message: e.to_string(),
            })?;
        }
        client
            .query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied analytics migration");
        applied.push(m.version);
    }
    refresh_dashboards(client, &quoted).await?;
    Ok(applied)
}

/// The dashboards table holds the shipped queries with the database filled in, because the
/// /dashboard page sends its queries without a database.
async fn refresh_dashboards(client: &Client, quoted_db: &str) -> Result<(), AnalyticsError> {
    client.query("TRUNCATE TABLE dashboards").execute().await?;
    let mut insert = client.insert::<DashboardRow>("dashboards").await?;
    // The page draws time series only, with `t` in Unix seconds first; label charts (top
    // products, funnel, ...) stay in the report.
    for Dashboard { name, title, sql, .. } in dashboards::all().into_iter().filter(|d| d.chart == Chart::Time) {
        let body: String = sql.lines().filter(|l| !l.starts_with("--")).collect::<Vec<_>>().join("\n");
        let row = DashboardRow {
            dashboard: "shopflow".into(),
            name: name.into(),
            title: title.into(),
            query: format!(
                "SELECT toUnixTimestamp(toDateTime(t, 'UTC'))::INT AS t, * EXCEPT (t) FROM (\n{}\n)",
                body.replace("{db:Identifier}", quoted_db)
            ),
        };
        insert.write(&row).await?;
    }
    insert.end().await?;
    Ok(())
}

/// The statements of a migration file: comment lines dropped, split at `;`.
fn statements(sql: &str) -> Vec<String> {
    let body: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    body.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn quote_identifier(name: &str, out: &mut String) {
    out.push('`');
    for c in name.chars() {
        if c == '`' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('`');
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_numbered_in_order_and_split_into_statements() {
        for (i, m) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(super::statements(m.sql).iter().all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        }
        assert_eq!(super::statements(super::MIGRATIONS[0].sql).len(), 13);
    }
}
