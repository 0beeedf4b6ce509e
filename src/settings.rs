//! Typed configuration in layers: built-in defaults, then an optional TOML file, then
//! `SHOPFLOW_SECTION__KEY` environment variables, then command-line flags.

use std::path::Path;

use anyhow::Context;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use shopflow_dataflow::pipeline::PipelineConfig;
use shopflow_serving::ServingConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub log: LogSettings,
    pub pipeline: PipelineConfig,
    pub serving: ServingConfig,
    pub analytics: shopflow_analytics::AnalyticsSettings,
    pub payments: shopflow_payments::PaymentsSettings,
}

pub use shopflow_ingest::LogSettings;

impl Settings {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        match file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("shopflow.toml")),
        }
        figment
            .merge(Env::prefixed("SHOPFLOW_").split("__"))
            .extract()
            .context("invalid configuration")
    }
}
