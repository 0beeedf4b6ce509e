//! The analysts' dashboards: SQL files under `analytics/dashboards/`, compiled in. Each file
//! starts with `-- title:` and `-- chart: time|bar` and names tables as
//! `{db:Identifier}.table` (a query parameter: the report binds it, the `dashboards` table
//! gets it filled in for the /dashboard page). The first column is the x axis, the rest are
//! values.

use clickhouse::Client;

use crate::AnalyticsError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chart {
    /// x is a date or a time; the /dashboard page can draw these.
    Time,
    /// x is a label.
    Bar,
}

#[derive(Clone, Debug)]
pub struct Dashboard {
    pub name: &'static str,
    pub title: &'static str,
    pub chart: Chart,
    pub sql: &'static str,
}

const FILES: &[(&str, &str)] = &[
    ("revenue_per_day", include_str!("../dashboards/01_revenue_per_day.sql")),
    ("revenue_per_category", include_str!("../dashboards/02_revenue_per_category.sql")),
    ("orders_per_hour", include_str!("../dashboards/03_orders_per_hour.sql")),
    ("average_order_value", include_str!("../dashboards/04_average_order_value.sql")),
    ("funnel", include_str!("../dashboards/05_funnel.sql")),
    ("retention", include_str!("../dashboards/06_retention.sql")),
    ("top_products", include_str!("../dashboards/07_top_products.sql")),
    ("stock_outs", include_str!("../dashboards/08_stock_outs.sql")),
    ("searches_without_results", include_str!("../dashboards/09_searches_without_results.sql")),
    ("recommendation_click_through", include_str!("../dashboards/10_recommendation_click_through.sql")),
];

/// Every shipped dashboard, in file order.
pub fn all() -> Vec<Dashboard> {
    FILES
        .iter()
        .map(|(name, sql)| {
            let header = |key: &str| {
                sql.lines().find_map(|l| l.strip_prefix(&format!("-- {key}:")).map(str::trim)).unwrap_or_default()
            };
            Dashboard {
                name,
                title: header("title"),
                chart: if header("chart") == "time" { Chart::Time } else { Chart::Bar },
                sql,
            }
        })
        .collect()
}

/// A query's answer as text, the way ClickHouse prints it (TSV): column names and rows.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Runs one dashboard against `database`.
pub async fn run(client: &Client, database: &str, dashboard: &Dashboard) -> Result<ResultTable, AnalyticsError> {
    let fail = |message: String| AnalyticsError::Dashboard { name: dashboard.name.to_string(), message };
    let mut cursor = client.query(dashboard.sql).param("db", database).fetch_bytes("TSVWithNames").map_err(|e| fail(e.to_string()))?;
    let bytes = cursor.collect().await.map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| fail(e.to_string()))?;
    let mut lines = text.lines();
    let columns = lines.next().unwrap_or_default().split('\t').map(unescape).collect();
    let rows = lines.map(|l| l.split('\t').map(unescape).collect()).collect();
    Ok(ResultTable { columns, rows })
}

fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}
