//! Typed configuration in layers: built-in defaults, then an optional TOML file, then
//! `SHOPFLOW_SECTION__KEY` environment variables, then command-line flags.

use std::path::{Path, PathBuf};

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// Kafka bootstrap servers; without them the embedded log under `data_dir/log` is used.
    pub kafka: Option<String>,
    /// Prefix of every topic name on Kafka, so deployments can share a cluster.
    pub namespace: String,
    /// Partitions of each event topic when shopflow creates it.
    pub partitions: u32,
    /// Root of local state: the embedded log and the pipeline's snapshots.
    pub data_dir: PathBuf,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { kafka: None, namespace: String::new(), partitions: 4, data_dir: PathBuf::from("data") }
    }
}

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
