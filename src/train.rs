//! `shopflow train`: load interactions (a RecBole `.inter` file or the event log), hold out
//! each user's latest items, fit NMF with a progress bar, evaluate against the popularity
//! baseline, write a new version to the model store and optionally promote it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use shopflow_dataflow::jobs::weights::InteractionWeights;
use shopflow_events::{Envelope, Topic};
use shopflow_ingest::{EventLog, Position};
use shopflow_recommender::dataset::{load_inter, IdMap};
use shopflow_recommender::eval::{self, Interaction, Popularity};
use shopflow_recommender::store::{Evaluation, MetricValues};
use shopflow_recommender::{Interactions, ModelStore, Nmf, TrainedModel};

use crate::settings::Settings;
use crate::LogArgs;

#[derive(Args)]
pub struct TrainArgs {
    /// Train from a RecBole `.inter` file (user_id, item_id, [rating], timestamp).
    #[arg(long, value_name = "PATH.inter", conflicts_with = "from_log", required_unless_present = "from_log")]
    pub from_file: Option<PathBuf>,
    /// Train from the event log: product views, recommendation clicks, cart adds, orders.
    #[arg(long)]
    pub from_log: bool,
    #[command(flatten)]
    pub log: LogArgs,
    /// Number of latent factors.
    #[arg(long, default_value_t = 64)]
    pub rank: usize,
    /// Maximum NMF iterations.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// L2 regularisation strength on both factors (scikit-learn's alpha_W = alpha_H).
    #[arg(long, default_value_t = 0.01)]
    pub alpha: f64,
    /// L1 share of the regularisation (0 = pure L2).
    #[arg(long, default_value_t = 0.0)]
    pub l1_ratio: f64,
    /// Stop once the projected gradient fell to this fraction of its first value.
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Time split: each user's latest N distinct items are held out for evaluation.
    #[arg(long, default_value_t = 10)]
    pub test_per_user: usize,
    /// Cut-off of the ranking metrics (P@k, R@k, NDCG@k, MAP@k).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Matrix values: `binary` (1 per user-item pair) or `weighted` (summed weights or
    /// ratings). Default: binary for files (a rating says "watched"), weighted for the log.
    #[arg(long, value_enum)]
    pub values: Option<Values>,
    /// After evaluating, fit again on all interactions (held-out ones included) and store
    /// that model; the stored metrics are those of the evaluated fit.
    #[arg(long)]
    pub refit_all: bool,
    /// Model store directory (default: <data-dir>/models).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Promote the new model if it beats the popularity baseline on P@k.
    #[arg(long)]
    pub promote: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Values {
    Binary,
    Weighted,
}

/// Interactions with dense ids, one entry per (user, item) pair.
struct Loaded {
    events: Vec<Interaction>,
    users: IdMap,
    items: IdMap,
    source: String,
}

pub async fn run(mut settings: Settings, args: TrainArgs) -> anyhow::Result<()> {
    crate::run::apply_log_args(&mut settings.log, &args.log);
    let store_root = args.store.clone().unwrap_or_else(|| settings.log.data_dir.join("models"));
    let started = Instant::now();
    let raw = match &args.from_file {
        Some(path) => {
            let reading = spinner(format!("reading {}", path.display()));
            let file = load_inter(path).with_context(|| format!("loading {}", path.display()))?;
            reading.finish_and_clear();
            Loaded { events: file.events, users: file.users, items: file.items, source: format!("file:{}", path.display()) }
        }
        None => {
            let log = shopflow_ingest::open(&settings.log).await?;
            let source = format!("log:{}", log.backend());
            // The pipeline's configured weights, so the model learns from the matrix it serves.
            let weights = settings.pipeline.weights;
            let (events, users, items) = tokio::task::spawn_blocking(move || read_log(log, weights)).await??;
            Loaded { events, users, items, source }
        }
    };
    let values = args.values.unwrap_or(if args.from_file.is_some() { Values::Binary } else { Values::Weighted });
    let loaded = Loaded { events: per_pair(&raw.events, values), ..raw };
    if loaded.events.is_empty() {
        bail!("no interactions found in {}", loaded.source);
    }
    tokio::task::spawn_blocking(move || train(&args, loaded, values, &store_root, started)).await?
}

fn train(args: &TrainArgs, data: Loaded, values: Values, store_root: &std::path::Path, started: Instant) -> anyhow::Result<()> {
    let (n_users, n_items) = (data.users.len(), data.items.len());
    let split = eval::split_last_n_per_user(&data.events, args.test_per_user);
    let test = split.test_items();
    let train_items = eval::group_items(&split.train);
    println!(
        "{} interactions ({} users, {} items) from {}; train {}, test {} ({} users, last {} items each)",
        data.events.len(),
        n_users,
        n_items,
        data.source,
        split.train.len(),
        split.test.len(),
        test.len(),
        args.test_per_user
    );

    let params = Nmf::params(args.rank).max_iter(args.iterations).alpha(args.alpha).l1_ratio(args.l1_ratio).tol(args.tol).seed(args.seed);
    let valid = linfa::ParamGuard::check(params.clone()).context("invalid hyperparameters")?;
    let x = matrix(&split.train, n_users, n_items)?;
    let nnz = x.nnz();
    let (model, secs) = fit_with_bar(&params, &x, args.iterations, "fitting")?;

    let evaluating = spinner("evaluating".into());
    let empty = HashSet::new();
    let mut users: Vec<usize> = test.keys().copied().collect();
    users.sort_unstable();
    let nmf_lists: HashMap<usize, Vec<usize>> = users
        .iter()
        .map(|&u| {
            let seen: Vec<usize> = train_items.get(&u).unwrap_or(&empty).iter().copied().collect();
            (u, model.recommend(model.user_factors().row(u), args.k, &seen).into_iter().map(|r| r.0).collect())
        })
        .collect();
    let pop = Popularity::fit(&split.train);
    let pop_lists: HashMap<usize, Vec<usize>> =
        users.iter().map(|&u| (u, pop.recommend(args.k, train_items.get(&u).unwrap_or(&empty)))).collect();
    let evaluation = Evaluation {
        k: args.k,
        split: format!(
            "per user, the latest {} distinct items by first interaction time are held out (users with <= {} items stay in train); {} matrix",
            args.test_per_user,
            args.test_per_user,
            if values == Values::Binary { "binary" } else { "weighted" }
        ),
        model: MetricValues::from(eval::evaluate(&nmf_lists, &test, args.k, n_items)),
        popularity: MetricValues::from(eval::evaluate(&pop_lists, &test, args.k, n_items)),
    };
    evaluating.finish_and_clear();
    print_metrics(&evaluation, secs, &model);

    let (model, secs, nnz, source) = if args.refit_all {
        let all = matrix(&data.events, n_users, n_items)?;
        let nnz = all.nnz();
        let (m, s) = fit_with_bar(&params, &all, args.iterations, "refitting on all interactions")?;
        (m, s, nnz, format!("{} (refit on all {} interactions)", data.source, data.events.len()))
    } else {
        (model, secs, nnz, format!("{} (train split)", data.source))
    };

    let store = ModelStore::open(store_root)?;
    let saving = spinner("saving (similar items, factors, plot)".into());
    let trained = TrainedModel {
        model,
        params: valid,
        item_ids: tokens(&data.items),
        user_ids: Some(tokens(&data.users)),
        data_source: source,
        training_seconds: secs,
        nnz,
        evaluation: evaluation.clone(),
    };
    let version = store.save(&trained)?;
    saving.finish_and_clear();
    println!("wrote model v{version:06} to {} in {:.1}s total", store.version_dir(version).display(), started.elapsed().as_secs_f64());

    if args.promote {
        if evaluation.beats_popularity() {
            store.promote(version)?;
            println!("promoted v{version:06}");
        } else {
            println!(
                "not promoted: P@{} {:.4} does not beat the popularity baseline's {:.4}; `shopflow models promote {version}` overrides",
                evaluation.k, evaluation.model.precision, evaluation.popularity.precision
            );
        }
    }
    Ok(())
}

fn fit_with_bar(params: &shopflow_recommender::NmfParams, x: &Interactions, iterations: usize, what: &str) -> anyhow::Result<(Nmf, f64)> {
    let bar = ProgressBar::new(iterations as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} iterations, {elapsed_precise} (eta {eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    let t = Instant::now();
    let model = params
        .fit_with_progress(x, |it, loss| {
            bar.set_position(it as u64);
            bar.set_message(format!("loss {loss:.4e}"));
        })
        .context("fitting NMF")?;
    let secs = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let stop = if model.converged() { "converged" } else { "iteration limit" };
    println!(
        "{what}: {} iterations ({stop}) in {secs:.2}s, {}x{} matrix, {} non-zeros, loss {:.4e} -> {:.4e}",
        model.n_iter(),
        x.n_users(),
        x.n_items(),
        x.nnz(),
        model.loss_curve()[0],
        model.final_loss()
    );
    Ok((model, secs))
}

fn spinner(message: String) -> ProgressBar {
    let s = ProgressBar::new_spinner();
    s.set_message(message);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

fn print_metrics(e: &Evaluation, secs: f64, model: &Nmf) {
    let k = e.k;
    println!("\n{:<12} {:>8} {:>8} {:>8} {:>8} {:>9}", "", format!("P@{k}"), format!("R@{k}"), format!("NDCG@{k}"), format!("MAP@{k}"), "coverage");
    for (name, m) in [("nmf", &e.model), ("popularity", &e.popularity)] {
        println!("{name:<12} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.4}", m.precision, m.recall, m.ndcg, m.map, m.coverage);
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}x", a / b) } else { "-".into() };
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>9}\n({} test users; rank {}, {} iterations, {secs:.2}s)\n",
        "nmf/pop",
        ratio(e.model.precision, e.popularity.precision),
        ratio(e.model.recall, e.popularity.recall),
        ratio(e.model.ndcg, e.popularity.ndcg),
        ratio(e.model.map, e.popularity.map),
        ratio(e.model.coverage, e.popularity.coverage),
        e.model.users,
        model.rank(),
        model.n_iter(),
    );
}

fn tokens(ids: &IdMap) -> Vec<String> {
    (0..ids.len()).map(|i| ids.token(i).unwrap_or_default().to_owned()).collect()
}

/// One event per (user, item): value 1 (binary) or the summed values (weighted), timestamp of
/// the first interaction — the moment the user found the item — so the time split holds out
/// items a user discovered last and a held-out item never also appears in training.
fn per_pair(events: &[Interaction], values: Values) -> Vec<Interaction> {
    let mut pairs: HashMap<(usize, usize), Interaction> = HashMap::new();
    for e in events {
        pairs
            .entry((e.user, e.item))
            .and_modify(|p| {
                p.value += e.value;
                p.timestamp = p.timestamp.min(e.timestamp);
            })
            .or_insert(*e);
    }
    let mut out: Vec<Interaction> = pairs.into_values().collect();
    if values == Values::Binary {
        out.iter_mut().for_each(|e| e.value = 1.0);
    }
    out.sort_by_key(|e| (e.user, e.timestamp, e.item));
    out
}

fn matrix(events: &[Interaction], n_users: usize, n_items: usize) -> anyhow::Result<Interactions> {
    Interactions::from_triplets(n_users, n_items, events.iter().map(|e| (e.user, e.item, e.value)))
        .context("building the interaction matrix")
}

type LogInteractions = (Vec<Interaction>, IdMap, IdMap);

/// Reads `interactions`, `carts` and `orders` from the start to their current end and turns
/// the events that express interest into weighted (user, product) interactions.
fn read_log(log: Arc<dyn EventLog>, weights: InteractionWeights) -> anyhow::Result<LogInteractions> {
    let topics = [Topic::Interactions, Topic::Carts, Topic::Orders];
    let mut from = Vec::new();
    let mut remaining: HashMap<(String, u32), u64> = HashMap::new();
    for topic in topics {
        let ends = futures::executor::block_on(log.end_offsets(topic.name()))?;
        for (p, end) in ends.into_iter().enumerate() {
            if end > 0 {
                from.push(Position::new(topic.name(), p as u32, 0));
                remaining.insert((topic.name().to_owned(), p as u32), end);
            }
        }
    }
    let total: u64 = remaining.values().sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("reading log [{bar:40}] {pos}/{len} records").expect("static template").progress_chars("=> "),
    );
    let (mut users, mut items) = (IdMap::default(), IdMap::default());
    let mut events = Vec::new();
    let mut seen_ids = HashSet::new();
    let (mut undecodable, mut duplicates) = (0usize, 0usize);
    if !from.is_empty() {
        let mut reader = log.reader(&from)?;
        let mut idle_since = Instant::now();
        while !remaining.is_empty() {
            let batch = reader.poll(4096, Duration::from_millis(500))?;
            if batch.is_empty() {
                // The end offsets were read before we started, so they exist; a log that
                // stops delivering them is broken, not slow.
                if idle_since.elapsed() > Duration::from_secs(30) {
                    bail!("the log stopped delivering records before the end offsets ({} partitions unfinished)", remaining.len());
                }
                continue;
            }
            idle_since = Instant::now();
            for record in batch {
                let key = (record.topic.to_string(), record.partition);
                let Some(&end) = remaining.get(&key) else { continue };
                if record.offset >= end {
                    remaining.remove(&key);
                    continue;
                }
                bar.inc(1);
                if record.offset + 1 >= end {
                    remaining.remove(&key);
                }
                let Some(value) = record.value else { continue };
                let envelope = match Envelope::decode(&value) {
                    Ok(e) => e,
                    Err(_) => {
                        undecodable += 1;
                        continue;
                    }
                };
                if !seen_ids.insert(envelope.id) {
                    duplicates += 1;
                    continue;
                }
                let mut push = |user: &str, product: &str, w: i64| {
                    if w > 0 {
                        events.push(Interaction {
                            user: users.get_or_insert(user),
                            item: items.get_or_insert(product),
                            value: w as f64,
                            timestamp: envelope.ts,
                        });
                    }
                };
                for (user, product, weight) in weights.interactions(&envelope.event) {
                    push(user.as_str(), product.as_str(), weight);
                }
            }
        }
    }
    bar.finish_and_clear();
    if undecodable > 0 || duplicates > 0 {
        tracing::warn!(undecodable, duplicates, "skipped log records");
    }
    println!("read {total} log records: {} interactions of {} users with {} products", events.len(), users.len(), items.len());
    Ok((events, users, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_the_first_time_and_sum_or_binarise_values() {
        let ev = |user, item, value, timestamp| Interaction { user, item, value, timestamp };
        let events = [ev(0, 1, 1.0, 50), ev(0, 1, 5.0, 10), ev(0, 2, 3.0, 20), ev(1, 1, 2.0, 5)];
        // Sorted by (user, first time, item).
        assert_eq!(per_pair(&events, Values::Weighted), vec![ev(0, 1, 6.0, 10), ev(0, 2, 3.0, 20), ev(1, 1, 2.0, 5)]);
        assert_eq!(per_pair(&events, Values::Binary), vec![ev(0, 1, 1.0, 10), ev(0, 2, 1.0, 20), ev(1, 1, 1.0, 5)]);
    }
}
