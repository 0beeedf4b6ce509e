//! `shopflow bench-search`: the search suite. On one generated catalog (see `catalog`):
//! indexing rate, freshness under a steady update load, per query class latency (one client)
//! and throughput (N clients) for tantivy in process, through HTTP (the real server), and for
//! PostgreSQL with a GIN `to_tsvector` index; known-item recall@10 with and without a typo for
//! both engines. Writes `OUT/search.json` and `OUT/search.md`.

mod catalog;
mod measure;
mod pg;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use shopflow_ingest::Position;
use shopflow_search::{SearchConfig, SearchIndex, SearchRequest};
use shopflow_views::{ProgressReport, ViewUpdate, Views};

use catalog::{QueryClass, CLASSES};
use measure::Latency;

#[derive(clap::Args)]
pub struct SearchBenchArgs {
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    pub products: usize,
    /// Concurrent clients of the throughput runs.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds of each throughput run (per engine and class).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Sequential queries per class for the one-client latencies.
    #[arg(long, default_value_t = 500)]
    pub samples: usize,
    /// Known items per recall run.
    #[arg(long, default_value_t = 500)]
    pub items: usize,
    /// Catalog updates per second during the freshness run.
    #[arg(long, default_value_t = 2_000)]
    pub update_rate: u64,
    /// Seconds of the freshness run.
    #[arg(long, default_value_t = 10.0)]
    pub freshness_duration: f64,
    /// Skip PostgreSQL (e.g. where it is not installed).
    #[arg(long)]
    pub no_postgres: bool,
    /// How product names are generated (see `catalog`); with `varied`, recall is also measured
    /// on a `uniform` catalog of the same size (tantivy only), to compare with earlier reports.
    #[arg(long, value_enum, default_value_t = catalog::Shape::Varied)]
    pub catalog: catalog::Shape,
}

#[derive(Serialize, Default)]
struct Report {
    products: usize,
    catalog: Option<catalog::Shape>,
    clients: usize,
    machine_cpus: usize,
    indexing: BTreeMap<String, f64>,
    freshness_ms: BTreeMap<String, f64>,
    /// engine → class → numbers.
    queries: BTreeMap<String, BTreeMap<String, Latency>>,
    /// engine → recall@10 with and without a typo.
    recall: BTreeMap<String, BTreeMap<String, f64>>,
    /// Catalog → the share of known items whose query words are in the names of at most 10
    /// products. Above that, the words alone do not tell the item from the others: recall
    /// then rests on how ties happen to break (BM25 favours shorter names). Not a hard
    /// ceiling, a measure of how ambiguous the catalog's names are.
    recall_ceiling: BTreeMap<String, f64>,
}

pub async fn run(args: SearchBenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let mut report = Report { products: args.products, clients: args.clients, catalog: Some(args.catalog), ..Default::default() };
    report.machine_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("generating {} products ({:?} names)", args.products, args.catalog);
    let catalog = Arc::new(catalog::generate(args.products, 42, args.catalog));

    // Indexing: the catalog view filled, then an index built from it (what a replica does at
    // start), on disk as `up` keeps it.
    let views = Arc::new(Views::new());
    views.apply(catalog.rows.iter().map(|r| ViewUpdate::Product { key: r.product_id.clone(), row: Some(r.clone()) }));
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let index = SearchIndex::open(SearchConfig { dir: Some(dir.path().join("search")), ..Default::default() }, views.clone())?;
    index.sync();
    index.wait_synced().await;
    let took = started.elapsed().as_secs_f64();
    report.indexing.insert("tantivy_docs_per_s".into(), args.products as f64 / took);
    report.indexing.insert("tantivy_build_s".into(), took);
    eprintln!("indexed {} products in {took:.2} s", index.num_docs());

    eprintln!("freshness: {} updates/s for {} s", args.update_rate, args.freshness_duration);
    report.freshness_ms = freshness(&views, &index, &catalog, args.update_rate, args.freshness_duration).await?;

    // Query sets, the same for every engine.
    let sets: Vec<(QueryClass, Vec<String>)> = CLASSES.iter().map(|c| (*c, catalog::queries(&catalog, *c, 1_000, 7 + *c as u64))).collect();
    let duration = Duration::from_secs_f64(args.duration);

    eprintln!("tantivy in process");
    let mut in_process = BTreeMap::new();
    for (class, queries) in &sets {
        let search = {
            let index = index.clone();
            move |q: &str| index.search(&request(q)).map(|r| r.hits.len()).unwrap_or(0)
        };
        in_process.insert(class_name(*class), measure::blocking(&search, queries, args.samples, args.clients, duration));
    }
    // What asking for facet counts costs on the broadest queries.
    if let Some((_, broad)) = sets.iter().find(|(c, _)| *c == QueryClass::Broad) {
        let search = {
            let index = index.clone();
            move |q: &str| index.search(&SearchRequest { facets: true, ..request(q) }).map(|r| r.hits.len()).unwrap_or(0)
        };
        in_process.insert("broad_with_facets".into(), measure::blocking(&search, broad, args.samples, args.clients, duration));
    }
    report.queries.insert("tantivy_in_process".into(), in_process);

    eprintln!("tantivy through http");
    let http = measure::http_server(views.clone()).await?;
    let mut over_http = BTreeMap::new();
    for (class, queries) in &sets {
        over_http.insert(class_name(*class), measure::http(&http, queries, args.samples, args.clients, duration).await?);
    }
    report.queries.insert("tantivy_http".into(), over_http);
    drop(http);

    // Known items: 2–3 words of a name, then the same with one typo.
    let items = known_items(&catalog, args.items);
    report.recall_ceiling.insert(class_name_of(args.catalog), ceiling(&catalog, &items));
    report.recall.insert("tantivy".into(), recall(&items, |q| top_ids(&index, q)));
    if args.catalog == catalog::Shape::Varied {
        // The same measure on the earlier, uniform names, for comparison with earlier reports.
        let uniform = catalog::generate(args.products, 42, catalog::Shape::Uniform);
        let views = Arc::new(Views::new());
        views.apply(uniform.rows.iter().map(|r| ViewUpdate::Product { key: r.product_id.clone(), row: Some(r.clone()) }));
        let index = SearchIndex::open(SearchConfig::default(), views)?;
        index.sync();
        index.wait_synced().await;
        let items = known_items(&uniform, args.items);
        report.recall_ceiling.insert(class_name_of(catalog::Shape::Uniform), ceiling(&uniform, &items));
        report.recall.insert("tantivy_uniform_catalog".into(), recall(&items, |q| top_ids(&index, q)));
    }

    if !args.no_postgres {
        eprintln!("postgresql");
        let postgres = pg::Postgres::start().context("starting PostgreSQL")?;
        let (loaded, indexed) = postgres.load(&catalog.rows).await?;
        report.indexing.insert("postgres_load_s".into(), loaded.as_secs_f64());
        report.indexing.insert("postgres_gin_index_s".into(), indexed.as_secs_f64());
        report.indexing.insert("postgres_docs_per_s".into(), args.products as f64 / (loaded + indexed).as_secs_f64());
        let mut on_pg = BTreeMap::new();
        for (class, queries) in &sets {
            on_pg.insert(class_name(*class), measure::postgres(&postgres, queries, args.samples, args.clients, duration).await?);
        }
        report.queries.insert("postgres".into(), on_pg);
        let client = postgres.connect().await?;
        let statement = pg::Postgres::prepare(&client).await?;
        let mut tops = Vec::new();
        for (_, query, typo) in &items {
            tops.push((query.clone(), pg::Postgres::search(&client, &statement, query).await?));
            tops.push((typo.clone(), pg::Postgres::search(&client, &statement, typo).await?));
        }
        let tops: std::collections::HashMap<String, Vec<String>> = tops.into_iter().collect();
        report.recall.insert("postgres".into(), recall(&items, |q| tops.get(q).cloned().unwrap_or_default()));
    }

    std::fs::write(args.out.join("search.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(args.out.join("search.md"), markdown(&report))?;
    eprintln!("wrote {}", args.out.join("search.md").display());
    Ok(())
}

/// What the HTTP route asks the index for by default: ten hits with snippets, no facets.
fn request(text: &str) -> SearchRequest {
    SearchRequest { text: text.to_owned(), limit: 10, ..Default::default() }
}

fn top_ids(index: &SearchIndex, text: &str) -> Vec<String> {
    index.search(&request(text)).map(|r| r.hits.into_iter().map(|h| h.id).collect()).unwrap_or_default()
}

/// (product id, 2–3 words of its name, the same with one typo), for `count` random products.
fn known_items(catalog: &catalog::Catalog, count: usize) -> Vec<(String, String, String)> {
    let mut rng = StdRng::seed_from_u64(99);
    (0..count)
        .map(|_| {
            let row = &catalog.rows[rng.gen_range(0..catalog.rows.len())];
            let query = catalog::known_item_query(row, &mut rng);
            let typo = catalog::with_typo(&query, &mut rng);
            (row.product_id.to_string(), query, typo)
        })
        .collect()
}

/// The share of items whose exact query words are in at most 10 products' names.
fn ceiling(catalog: &catalog::Catalog, items: &[(String, String, String)]) -> f64 {
    let names = catalog::NameIndex::new(catalog);
    items.iter().filter(|(_, query, _)| names.sharing(query) <= 10).count() as f64 / items.len().max(1) as f64
}

fn class_name_of(shape: catalog::Shape) -> String {
    serde_json::to_value(shape).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn class_name(class: QueryClass) -> String {
    serde_json::to_value(class).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn recall(items: &[(String, String, String)], top: impl Fn(&str) -> Vec<String>) -> BTreeMap<String, f64> {
    let hit = |query: &str, id: &str| top(query).iter().any(|h| h == id);
    let exact = items.iter().filter(|(id, q, _)| hit(q, id)).count() as f64 / items.len().max(1) as f64;
    let typo = items.iter().filter(|(id, _, t)| hit(t, id)).count() as f64 / items.len().max(1) as f64;
    [("recall_at_10".to_owned(), exact), ("recall_at_10_one_typo".to_owned(), typo)].into()
}

/// Updates products at `rate` per second (in batches every 10 ms, each batch one log offset)
/// and measures, per batch, the time from the views applying it until the index reports it
/// applied (committed and the reader reloaded: searchable).
async fn freshness(views: &Arc<Views>, index: &Arc<SearchIndex>, catalog: &catalog::Catalog, rate: u64, seconds: f64) -> anyhow::Result<BTreeMap<String, f64>> {
    let per_batch = (rate / 100).max(1) as usize;
    let batches = (seconds * 100.0) as u64;
    let mut rng = StdRng::seed_from_u64(5);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut waits = Vec::new();
    let base = views.progress.frontier() + 1;
    for batch in 0..batches {
        tick.tick().await;
        let updates: Vec<ViewUpdate> = (0..per_batch)
            .map(|_| {
                let mut row = catalog.rows[rng.gen_range(0..catalog.rows.len())].clone();
                row.price.amount_minor += rng.gen_range(1..100);
                row.stock = rng.gen_range(0..50);
                ViewUpdate::Product { key: row.product_id.clone(), row: Some(row) }
            })
            .collect();
        let started = Instant::now();
        views.apply(updates);
        views.progress.report(ProgressReport { worker: 0, peers: 1, frontier: base + batch, offsets: vec![Position::new("catalog", 0, batch + 1)] });
        let index = index.clone();
        waits.push(tokio::spawn(async move {
            index.applied().wait_for(&[Position::new("catalog", 0, batch)], Duration::from_secs(30)).await.ok()?;
            Some(started.elapsed())
        }));
    }
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    for wait in waits {
        let elapsed = wait.await?.context("an update was not searchable within 30 s")?;
        histogram.record(elapsed.as_micros() as u64)?;
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1_000.0;
    Ok([("p50".to_owned(), ms(0.5)), ("p99".to_owned(), ms(0.99)), ("max".to_owned(), histogram.max() as f64 / 1_000.0), ("updates_per_s".to_owned(), (per_batch * 100) as f64)].into())
}

fn markdown(report: &Report) -> String {
    let mut out = format!("# Search benchmark\n\n{} generated products, {} CPUs, {} concurrent clients for the throughput columns.\n\n", report.products, report.machine_cpus, report.clients);
    out.push_str("## Indexing\n\n");
    for (k, v) in &report.indexing {
        out.push_str(&format!("- {k}: {v:.2}\n"));
    }
    out.push_str("\n## Freshness (update applied to the views → searchable), ms\n\n");
    for (k, v) in &report.freshness_ms {
        out.push_str(&format!("- {k}: {v:.1}\n"));
    }
    out.push_str("\n## Queries\n\n| engine | class | p50 ms (1 client) | p99 ms (1 client) | queries/s (N clients) | p99 ms (N clients) |\n|---|---|---|---|---|---|\n");
    for (engine, classes) in &report.queries {
        for (class, l) in classes {
            out.push_str(&format!("| {engine} | {class} | {:.3} | {:.3} | {:.0} | {:.3} |\n", l.p50_ms, l.p99_ms, l.qps, l.p99_ms_loaded));
        }
    }
    if let (Some(t), Some(p)) = (report.queries.get("tantivy_http"), report.queries.get("postgres")) {
        out.push_str("\n### Ratios (tantivy through HTTP / PostgreSQL, queries/s at N clients)\n\n");
        for (class, l) in t {
            if let Some(pl) = p.get(class) {
                out.push_str(&format!("- {class}: {:.2}×\n", l.qps / pl.qps.max(f64::MIN_POSITIVE)));
            }
        }
    }
    out.push_str("\n## Known-item recall@10\n\n| engine | exact words | one typo |\n|---|---|---|\n");
    for (engine, r) in &report.recall {
        out.push_str(&format!("| {engine} | {:.3} | {:.3} |\n", r["recall_at_10"], r["recall_at_10_one_typo"]));
    }
    out.push_str("\nShare of known items whose query words are in at most 10 names (unambiguous items; not a hard ceiling):\n\n");
    for (catalog, share) in &report.recall_ceiling {
        out.push_str(&format!("- {catalog}: {share:.3}\n"));
    }
    out
}
