//! Trained models in the running system: the adapter from the recommender crate's
//! [`ServingModel`] to serving's [`Recommender`] seam, the watcher that swaps in whatever the
//! model store's pointer says is promoted, and `shopflow models list|promote|rollback`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use shopflow_recommender::{ModelStore, ServingModel};
use shopflow_serving::ModelSlot;

use crate::settings::Settings;

pub use shopflow_recommender::adapter::ModelAdapter;

/// What one look at the store found.
enum Poll {
    Unchanged,
    /// Nothing promoted (yet).
    NoModel,
    Loaded(u64, ServingModel),
    Failed(u64, String),
}

/// Blocking: reads the pointer and, if it names a version other than `loaded`, loads it.
fn poll_store(root: &Path, loaded: Option<u64>) -> Poll {
    let store = match ModelStore::open(root) {
        Ok(s) => s,
        Err(e) => return Poll::Failed(0, e.to_string()),
    };
    match store.current() {
        Ok(None) => Poll::NoModel,
        Ok(Some(v)) if Some(v) == loaded => Poll::Unchanged,
        Ok(Some(v)) => match store.load(v) {
            Ok(model) => Poll::Loaded(v, model),
            Err(e) => Poll::Failed(v, e.to_string()),
        },
        Err(e) => Poll::Failed(0, e.to_string()),
    }
}

/// Loads the promoted model now and again whenever the store's pointer changes (checked every
/// `every`), installing it in `slot`. Loading runs on the blocking pool; a model that fails to
/// load is reported once and the previous one keeps serving. A withdrawn pointer also keeps
/// the current model: serving something is better than nothing, and rollback is explicit.
pub fn spawn_model_watcher(store_root: PathBuf, slot: Arc<ModelSlot>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut loaded: Option<u64> = None;
        let mut reported: Option<String> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let root = store_root.clone();
            let poll = match tokio::task::spawn_blocking(move || poll_store(&root, loaded)).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "model store poll panicked");
                    continue;
                }
            };
            match poll {
                Poll::Unchanged | Poll::NoModel => {}
                Poll::Loaded(version, model) => {
                    let items = model.n_items();
                    slot.set(Some(Box::new(ModelAdapter::new(model))));
                    tracing::info!(version, items, previous = ?loaded, "recommendation model loaded");
                    loaded = Some(version);
                    reported = None;
                }
                Poll::Failed(version, error) => {
                    // Once per distinct failure, not once a second.
                    if reported.as_deref() != Some(error.as_str()) {
                        tracing::warn!(version, %error, serving = ?loaded, "could not load the promoted model, keeping the current one");
                        reported = Some(error);
                    }
                }
            }
        }
    })
}

#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
    /// Model store directory (default: <data-dir>/models).
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    /// Local state directory (the store defaults to its `models` folder).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Every stored model with its metrics; `*` marks the promoted one.
    List,
    /// Makes VERSION (e.g. `3` or `v000003`) the model the serving layer uses.
    Promote {
        #[arg(value_parser = parse_version)]
        version: u64,
    },
    /// Goes back to the model promoted before the current one.
    Rollback,
}

fn parse_version(s: &str) -> Result<u64, String> {
    s.trim_start_matches('v').parse().map_err(|_| format!("{s:?} is not a model version (e.g. 3 or v000003)"))
}

pub fn cli(mut settings: Settings, args: ModelsArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.data_dir {
        settings.log.data_dir = dir.clone();
    }
    let root = args.store.unwrap_or_else(|| settings.log.data_dir.join("models"));
    let store = ModelStore::open(&root).with_context(|| format!("opening the model store {}", root.display()))?;
    match args.command {
        ModelsCommand::List => list(&store),
        ModelsCommand::Promote { version } => {
            store.promote(version)?;
            println!("promoted v{version:06}");
            Ok(())
        }
        ModelsCommand::Rollback => {
            let version = store.rollback()?;
            println!("rolled back to v{version:06}");
            Ok(())
        }
    }
}

fn list(store: &ModelStore) -> anyhow::Result<()> {
    let models = store.list()?;
    if models.is_empty() {
        println!("no models in {}", store.root().display());
        return Ok(());
    }
    println!(
        "  {:<8} {:<24} {:>5} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}  source",
        "version", "created", "rank", "users", "items", "P@k", "pop P@k", "NDCG@k", "train s"
    );
    for m in models {
        let mark = if m.current { "*" } else { " " };
        match (&m.metadata, &m.evaluation) {
            (Some(meta), Some(e)) => println!(
                "{mark} v{:06}  {:<24} {:>5} {:>7} {:>7} {:>8.4} {:>8.4} {:>8.4} {:>8.2}  {}",
                m.version,
                meta.created_at,
                meta.shape.rank,
                meta.shape.users,
                meta.shape.items,
                e.model.precision,
                e.popularity.precision,
                e.model.ndcg,
                meta.training.seconds,
                meta.data_source
            ),
            _ => println!("{mark} v{:06}  unreadable: {}", m.version, m.problem.as_deref().unwrap_or("missing files")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use linfa::prelude::*;
    use shopflow_recommender::store::{Evaluation, MetricValues};
    use shopflow_recommender::{Interactions, Nmf, TrainedModel};

    use super::*;
    use shopflow_events::Id;
    use shopflow_serving::Recommender;

    /// Two taste groups: users 0..10 like items 0..6, users 10..20 like items 6..12.
    fn trained() -> TrainedModel {
        let triplets = (0..20usize).flat_map(|u| {
            let base = if u < 10 { 0 } else { 6 };
            (0..6).filter(move |i| (u + i) % 4 != 0).map(move |i| (u, base + i, 1.0))
        });
        let x = Interactions::from_triplets(20, 12, triplets).unwrap();
        let params = linfa::ParamGuard::check(Nmf::params(2).max_iter(100)).unwrap();
        let model = params.fit(&DatasetBase::new(x.clone(), ())).unwrap();
        let m = MetricValues { users: 20, precision: 0.5, recall: 0.5, ndcg: 0.5, map: 0.5, coverage: 0.5 };
        TrainedModel {
            model,
            params,
            item_ids: (0..12).map(|i| format!("prod-{i}")).collect(),
            user_ids: None,
            data_source: "test".into(),
            training_seconds: 0.0,
            nnz: x.nnz(),
            evaluation: Evaluation { k: 5, split: "test".into(), model: m, popularity: m },
        }
    }

    #[test]
    fn adapter_speaks_ids_and_honours_skip() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        let v = store.save(&trained()).unwrap();
        let adapter = ModelAdapter::new(store.load(v).unwrap());
        assert_eq!(adapter.version(), "v000001");
        let clicks = [(Id::from("prod-7"), 1.0), (Id::from("prod-8"), 1.0), (Id::from("unknown"), 1.0)];
        let recs = adapter.recommend(&clicks, 3, &|_| false);
        assert_eq!(recs.len(), 3);
        assert!(recs.iter().all(|(p, _)| ["prod-6", "prod-9", "prod-10", "prod-11"].contains(&p.as_str())), "{recs:?}");
        let skipped = adapter.recommend(&clicks, 3, &|p| p == &recs[0].0);
        assert!(skipped.iter().all(|(p, _)| p != &recs[0].0));
        let similar = adapter.similar(&Id::from("prod-1"), 3, &|_| false).unwrap();
        assert!(similar.iter().all(|(p, _)| p.as_str()[5..].parse::<usize>().unwrap() < 6), "{similar:?}");
        assert!(adapter.similar(&Id::from("nope"), 3, &|_| false).is_none());
    }

    async fn wait_for_version(slot: &ModelSlot, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if slot.get().map(|m| m.version()).as_deref() == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "the watcher never installed {want}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn watcher_follows_promote_and_rollback_and_keeps_in_flight_models() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("models");
        let store = ModelStore::open(&root).unwrap();
        let t = trained();
        for _ in 0..3 {
            store.save(&t).unwrap();
        }
        let slot = Arc::new(ModelSlot::new());
        let watcher = spawn_model_watcher(root.clone(), slot.clone(), Duration::from_millis(20));
        // Nothing promoted: nothing served.
        assert!(slot.get().is_none());
        store.promote(1).unwrap();
        wait_for_version(&slot, "v000001").await;
        store.promote(2).unwrap();
        wait_for_version(&slot, "v000002").await;
        // A request that took the old model keeps it while the slot moves on.
        let held = slot.get().unwrap();
        store.rollback().unwrap();
        wait_for_version(&slot, "v000001").await;
        assert_eq!(held.version(), "v000002");
        store.promote(3).unwrap();
        wait_for_version(&slot, "v000003").await;
        watcher.abort();
    }

    #[test]
    fn a_promoted_version_that_became_unreadable_is_reported_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        let t = trained();
        store.save(&t).unwrap();
        store.save(&t).unwrap();
        assert!(matches!(poll_store(dir.path(), None), Poll::NoModel));
        store.promote(1).unwrap();
        assert!(matches!(poll_store(dir.path(), None), Poll::Loaded(1, _)));
        assert!(matches!(poll_store(dir.path(), Some(1)), Poll::Unchanged));
        store.promote(2).unwrap();
        // Damaged after promotion (promote itself refuses a damaged version).
        std::fs::remove_file(store.version_dir(2).join("item_factors.bin")).unwrap();
        assert!(matches!(poll_store(dir.path(), Some(1)), Poll::Failed(2, _)));
        std::fs::write(store.pointer_path(), b"{").unwrap();
        assert!(matches!(poll_store(dir.path(), Some(1)), Poll::Failed(..)));
    }

    #[test]
    fn versions_parse_with_or_without_the_prefix() {
        assert_eq!(parse_version("3"), Ok(3));
        assert_eq!(parse_version("v000012"), Ok(12));
        assert!(parse_version("latest").is_err());
    }
}
