//! The `commerce` suite (issue 7): what the order saga does on this machine.
//!
//! - `decide`: orders decided per second in the dataflow (pre-loaded log → pipeline → every
//!   order `reserved` or `rejected` in the `orders` view), per backend.
//! - `orders`: p50/p99 of `POST /api/v1/orders?wait=decision` from an open-loop generator at
//!   fixed rates up to 2,000 orders/s, against the whole shop in process (pipeline, payment
//!   gateway in test mode, payment worker, notifier, HTTP server); and top-sellers freshness
//!   after an order, from probe orders mixed into those runs.
//!
//! Writes `OUT/commerce.json` (merged into report.json) and `OUT/commerce.md` (included in
//! report.md).

mod decide;
mod fresh;
mod load;
mod orders;
mod report;
mod shop;
mod stack;
mod timeline;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::pipeline::{Backend, SuiteConfig};

/// Orders decided per second in the dataflow (issue 7).
pub const AIM_DECIDED_PER_SEC: f64 = 20_000.0;
/// p99 of `POST /orders?wait=decision` at a steady 2,000 orders/s.
pub const AIM_POST_P99_MS: f64 = 25.0;
pub const AIM_POST_RATE: f64 = 2_000.0;
/// p99 top-sellers freshness after an order.
pub const AIM_FRESH_P99_MS: f64 = 50.0;

pub struct CommerceConfig {
    pub quick: bool,
    pub orders: u64,
    pub products: u64,
    pub customers: u64,
    pub rates: Vec<f64>,
    pub duration: Duration,
    pub probes_per_sec: f64,
    pub workers: usize,
    pub partitions: u32,
    pub scratch: PathBuf,
    pub timeout: Duration,
    /// Overrides of pipeline settings, `field=value` (value as JSON, else a string).
    pub pipeline_overrides: Vec<String>,
}

impl CommerceConfig {
    /// The pipeline settings of both phases: the defaults, but for what was overridden.
    pub(crate) fn pipeline(&self, config: shopflow_dataflow::pipeline::PipelineConfig) -> shopflow_dataflow::pipeline::PipelineConfig {
        apply_overrides(config, &self.pipeline_overrides).expect("overrides are checked before the suite runs")
    }

    /// Checks the pipeline overrides against the pipeline's settings.
    pub fn check_overrides(&self) -> Result<(), String> {
        apply_overrides(Default::default(), &self.pipeline_overrides).map(drop)
    }

    pub fn new(quick: bool, orders: Option<u64>, rates: Option<Vec<f64>>, duration: Option<f64>, suite: &SuiteConfig) -> Self {
        Self {
            quick,
            orders: orders.unwrap_or(if quick { 20_000 } else { 200_000 }),
            products: if quick { 500 } else { 2_000 },
            customers: if quick { 500 } else { 2_000 },
            rates: rates.unwrap_or_else(|| if quick { vec![200.0, 1_000.0] } else { vec![250.0, 500.0, 1_000.0, 2_000.0] }),
            duration: Duration::from_secs_f64(duration.unwrap_or(if quick { 2.0 } else { 10.0 })),
            probes_per_sec: 25.0,
            workers: suite.workers,
            partitions: suite.partitions,
            scratch: suite.scratch.clone(),
            timeout: suite.timeout,
            pipeline_overrides: Vec::new(),
        }
    }
}

/// `config` with each `field=value` of `overrides` set (the value as JSON, else a string).
fn apply_overrides(
    config: shopflow_dataflow::pipeline::PipelineConfig,
    overrides: &[String],
) -> Result<shopflow_dataflow::pipeline::PipelineConfig, String> {
    if overrides.is_empty() {
        return Ok(config);
    }
    let mut fields = serde_json::to_value(&config).map_err(|e| e.to_string())?;
    for assignment in overrides {
        let (field, value) = assignment.split_once('=').ok_or_else(|| format!("{assignment:?} is not field=value"))?;
        let slot = fields.get_mut(field).ok_or_else(|| format!("the pipeline has no setting {field:?}"))?;
        *slot = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
    }
    serde_json::from_value(fields).map_err(|e| format!("pipeline overrides: {e}"))
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CommerceResult {
    pub quick: bool,
    pub build_profile: String,
    /// Per backend (embedded, and kafka when given).
    pub decide: Vec<decide::DecideResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders: Option<orders::OrdersResult>,
    pub errors: Vec<String>,
}

/// Runs both phases; a failed phase is recorded among the errors, not fatal.
pub async fn run(config: &CommerceConfig, suite: &SuiteConfig, backends: &[Backend]) -> CommerceResult {
    let mut result = CommerceResult {
        quick: config.quick,
        build_profile: if cfg!(debug_assertions) { "debug" } else { "release" }.into(),
        ..Default::default()
    };
    for backend in backends {
        tracing::info!(backend = backend.name, orders = config.orders, "commerce: orders decided in the dataflow");
        match decide::run(backend, suite, config).await {
            Ok(r) => {
                tracing::info!(backend = backend.name, orders_per_sec = r.orders_per_sec.round(), "commerce decide measured");
                result.decide.push(r);
            }
            Err(e) => {
                tracing::error!(backend = backend.name, error = format!("{e:#}"), "commerce decide phase failed");
                result.errors.push(format!("decide ({}): {e:#}", backend.name));
            }
        }
    }
    match orders::run(config).await {
        Ok(r) => result.orders = Some(r),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "commerce orders phase failed");
            result.errors.push(format!("orders: {e:#}"));
        }
    }
    result
}

/// Writes `commerce.json` and `commerce.md` into `out`.
pub fn write(result: &CommerceResult, out: &Path) -> anyhow::Result<()> {
    let json = out.join("commerce.json");
    std::fs::write(&json, serde_json::to_vec_pretty(result)?).with_context(|| format!("writing {}", json.display()))?;
    let md = out.join("commerce.md");
    std::fs::write(&md, report::markdown(result)).with_context(|| format!("writing {}", md.display()))?;
    Ok(())
}
