//! `shopflow import catalog FILE`: products from CSV or JSON Lines, published through the
//! HTTP write path of a running server (so they are validated, logged and answered like any
//! other write). Every write carries an `Idempotency-Key` derived from its content, and every
//! product id comes from the file (or from the row's content), so running the same import again
//! changes nothing. Bad rows are reported with their line number and skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shopflow_events::Id;

#[derive(Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    what: ImportCommand,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Products (with their categories, brands and optionally stock) from a file.
    Catalog(CatalogArgs),
}

#[derive(Args)]
pub struct CatalogArgs {
    /// The file: CSV with a header row, or JSON Lines (one object per line).
    file: PathBuf,
    /// `csv` or `jsonl`; by default from the file's extension.
    #[arg(long)]
    format: Option<Format>,
    /// Which column holds which field, e.g. `--map name=title --map price=price_eur`. Fields:
    /// id, name, description, category (a path: `Kitchen > Kettles`), brand, price (major
    /// units, `19.99`), currency, sku, stock. Unmapped fields use the column of their own name.
    #[arg(long = "map", value_parser = parse_mapping)]
    mappings: Vec<(String, String)>,
    /// The server to write to.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin's access token (`POST /api/v1/auth/login`), sent as `Authorization: Bearer`.
    #[arg(long, env = "SHOPFLOW_ACCESS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Currency when the file has none.
    #[arg(long, default_value = "EUR")]
    currency: String,
    #[arg(long, default_value = "import")]
    supplier: String,
    /// Warehouse stock is received into (it must exist).
    #[arg(long, default_value = "wh-import")]
    warehouse: String,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

const FIELDS: [&str; 9] = ["id", "name", "description", "category", "brand", "price", "currency", "sku", "stock"];

fn parse_mapping(text: &str) -> Result<(String, String), String> {
    let (field, column) = text.split_once('=').ok_or("expected FIELD=COLUMN")?;
    if !FIELDS.contains(&field) {
        return Err(format!("unknown field {field:?} (one of {})", FIELDS.join(", ")));
    }
    Ok((field.to_owned(), column.to_owned()))
}

/// One product as the API takes it, with what it needs created first.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    pub id: Id,
    pub name: String,
    pub description: String,
    /// Category id (a slug of the path) and its name (the path).
    pub category: (Id, String),
    pub brand: (Id, String),
    pub price_minor: i64,
    pub currency: String,
    pub sku: String,
    pub stock: Option<u32>,
}

/// A row of the file by column name, and the line it started on.
pub type Row = (usize, HashMap<String, String>);
/// A line that could not be used, and why.
pub type Skipped = (usize, String);

pub fn read_rows(file: &std::path::Path, format: Format) -> anyhow::Result<(Vec<Row>, Vec<Skipped>)> {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_path(file)?;
            let headers = reader.headers()?.clone();
            for record in reader.records() {
                match record {
                    Ok(record) => {
                        let line = record.position().map_or(0, |p| p.line() as usize);
                        rows.push((line, headers.iter().zip(record.iter()).map(|(h, v)| (h.trim().to_owned(), v.to_owned())).collect()));
                    }
                    Err(e) => bad.push((e.position().map_or(0, |p| p.line() as usize), e.to_string())),
                }
            }
        }
        Format::Jsonl => {
            let reader = std::io::BufReader::new(std::fs::File::open(file)?);
            for (i, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<serde_json::Map<String, Value>>(&line) {
                    Ok(object) => rows.push((
                        i + 1,
                        object
                            .into_iter()
                            .filter_map(|(k, v)| match v {
                                Value::String(s) => Some((k, s)),
                                Value::Number(n) => Some((k, n.to_string())),
                                Value::Null => None,
                                other => Some((k, other.to_string())),
                            })
                            .collect(),
                    )),
                    Err(e) => bad.push((i + 1, format!("not a JSON object: {e}"))),
                }
            }
        }
    }
    Ok((rows, bad))
}

/// `Kitchen > Electric Kettles` → `kitchen-electric-kettles`: ids are short visible ASCII.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() || out.len() > 100 {
        // Nothing ASCII to go by (or too long): a digest keeps it stable and unique.
        format!("h-{}", &hex(&Sha256::digest(text.as_bytes()))[..16])
    } else {
        out.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a price in major units (`19.99`, `19,99`, `1 299.00`, `€19.99`) to minor units.
fn price_minor(text: &str) -> Option<i64> {
    let cleaned: String = text.chars().filter(|c| c.is_ascii_digit() || *c == '.' || *c == ',').collect();
    let cleaned = cleaned.replace(',', ".");
    let (whole, fraction) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 2 || fraction.contains('.') {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(fraction)
}

/// One row to a product, or why not.
pub fn product(row: &HashMap<String, String>, mapping: &BTreeMap<String, String>, currency: &str) -> Result<Product, String> {
    let get = |field: &str| -> Option<&str> {
        let column = mapping.get(field).map_or(field, String::as_str);
        row.get(column).map(|v| v.trim()).filter(|v| !v.is_empty())
    };
    let name = get("name").ok_or("no name")?.to_owned();
    let price = get("price").ok_or("no price")?;
    let price_minor = price_minor(price).ok_or_else(|| format!("price {price:?} is not a number like 19.99"))?;
    let category = get("category").ok_or("no category")?;
    let brand = get("brand").ok_or("no brand")?;
    let stock = match get("stock") {
        Some(s) => Some(s.parse::<u32>().map_err(|_| format!("stock {s:?} is not a whole number"))?),
        None => None,
    };
    let description = get("description").unwrap_or_default().to_owned();
    let sku = get("sku").unwrap_or_default().to_owned();
    // The file's id, or one derived from what identifies the product, so a re-run names it again.
    let id = match get("id") {
        Some(id) => Id::new(id).map_err(|e| format!("id: {}", e.message))?,
        None => Id::from(format!("imp-{}", &hex(&Sha256::digest(format!("{name}\u{0}{brand}\u{0}{sku}").as_bytes()))[..20]).as_str()),
    };
    Ok(Product {
        id,
        name,
        description,
        category: (Id::from(slug(category).as_str()), category.to_owned()),
        brand: (Id::from(slug(brand).as_str()), brand.to_owned()),
        price_minor,
        currency: get("currency").unwrap_or(currency).to_uppercase(),
        sku,
        stock,
    })
}

/// The key a write is sent under: a digest of what it writes, so the same row sent again is
/// the same request (answered with the first answer, never applied twice).
fn idempotency_key(path: &str, body: &Value) -> String {
    format!("import-{}", &hex(&Sha256::digest(format!("{path}\u{0}{body}").as_bytes()))[..40])
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let ImportCommand::Catalog(args) = args.what;
    let format = match args.format {
        Some(f) => f,
        None => match args.file.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            _ => bail!("cannot tell the format of {} from its name: pass --format csv|jsonl", args.file.display()),
        },
    };
    let mapping: BTreeMap<String, String> = args.mappings.iter().cloned().collect();
    let (rows, mut bad) = read_rows(&args.file, format).with_context(|| format!("reading {}", args.file.display()))?;
    let total = rows.len() + bad.len();
    let mut products = Vec::new();
    for (line, row) in &rows {
        match product(row, &mapping, &args.currency) {
            Ok(p) => products.push((*line, p)),
            Err(reason) => bad.push((*line, reason)),
        }
    }
    let client = reqwest::Client::new();
    let writer = Writer { client: &client, base: args.url.trim_end_matches('/').to_owned(), token: args.token.clone() };
    // Categories, brands and the supplier first (each once), so names join at once.
    let mut named: Vec<(&str, Value)> = vec![("/api/v1/suppliers", json!({"id": args.supplier, "name": args.supplier}))];
    let mut seen = HashSet::new();
    for (_, p) in &products {
        if seen.insert(("c", p.category.0.clone())) {
            named.push(("/api/v1/categories", json!({"id": p.category.0, "name": p.category.1})));
        }
        if seen.insert(("b", p.brand.0.clone())) {
            named.push(("/api/v1/brands", json!({"id": p.brand.0, "name": p.brand.1})));
        }
    }
    for (path, body) in &named {
        writer.post(path, body).await.map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    }
    let bar = indicatif::ProgressBar::new(products.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} products {per_sec} eta {eta}")?);
    use futures::StreamExt;
    let results: Vec<(usize, Result<(), String>)> = futures::stream::iter(products.iter().map(|(line, p)| {
        let writer = &writer;
        let bar = &bar;
        let (supplier, warehouse) = (&args.supplier, &args.warehouse);
        async move {
            let body = json!({
                "product_id": p.id, "name": p.name, "description": p.description,
                "price": {"amount_minor": p.price_minor, "currency": p.currency}, "sku": p.sku,
                "category_id": p.category.0, "brand_id": p.brand.0, "supplier_id": supplier,
            });
            let mut result = writer.post("/api/v1/products", &body).await;
            if let (Ok(()), Some(quantity)) = (&result, p.stock.filter(|q| *q > 0)) {
                let receipt = json!({"product_id": p.id, "warehouse_id": warehouse, "quantity": quantity});
                result = writer.post("/api/v1/stock/receipts", &receipt).await;
            }
            bar.inc(1);
            (*line, result)
        }
    }))
    .buffer_unordered(args.concurrency.max(1))
    .collect()
    .await;
    bar.finish();
    let written = results.iter().filter(|(_, r)| r.is_ok()).count();
    bad.extend(results.into_iter().filter_map(|(line, r)| r.err().map(|e| (line, e))));
    bad.sort();
    for (line, reason) in &bad {
        eprintln!("line {line}: skipped: {reason}");
    }
    println!("imported {written} of {total} rows; {} skipped", bad.len());
    if written == 0 && !bad.is_empty() {
        bail!("nothing imported");
    }
    Ok(())
}

struct Writer<'a> {
    client: &'a reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Writer<'_> {
    /// One idempotent write; a 4xx is the row's fault (reported), anything else is retried a
    /// few times under the same key (safe: the key makes it one write).
    async fn post(&self, path: &str, body: &Value) -> Result<(), String> {
        let key = idempotency_key(path, body);
        let mut last = String::new();
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            let mut request = self.client.post(format!("{}{path}", self.base)).header("idempotency-key", &key).json(body);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or_default();
                    return Err(format!("{status}: {}", body["error"]["message"].as_str().unwrap_or("refused")));
                }
                Ok(response) => last = format!("{}", response.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("gave up after retries: {last}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn prices_in_major_units_become_minor_units() {
        assert_eq!(price_minor("19.99"), Some(1999));
        assert_eq!(price_minor("19,9"), Some(1990));
        assert_eq!(price_minor("€ 1299"), Some(129_900));
        assert_eq!(price_minor(".5"), Some(50));
        for bad in ["", "abc", "1.999", "1.2.3"] {
            assert_eq!(price_minor(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_row_maps_through_the_column_mapping_and_ids_are_stable() {
        let mapping: BTreeMap<String, String> = [("name".to_owned(), "title".to_owned())].into();
        let r = row(&[("title", "Electric Kettle"), ("price", "29.99"), ("category", "Kitchen > Kettles"), ("brand", "Acmé Co"), ("stock", "4")]);
        let p = product(&r, &mapping, "eur").unwrap();
        assert_eq!(p.name, "Electric Kettle");
        assert_eq!((p.price_minor, p.currency.as_str(), p.stock), (2999, "EUR", Some(4)));
        assert_eq!(p.category, (Id::from("kitchen-kettles"), "Kitchen > Kettles".to_owned()));
        assert_eq!(p.brand.0.as_str(), "acm-co");
        assert_eq!(product(&r, &mapping, "EUR").unwrap().id, p.id, "the same row names the same product");
        assert!(p.id.as_str().starts_with("imp-"));
        assert_eq!(product(&row(&[("title", "x"), ("price", "1"), ("category", "c"), ("brand", "b"), ("id", "sku-1")]), &mapping, "EUR").unwrap().id.as_str(), "sku-1");
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        let none = BTreeMap::new();
        assert_eq!(product(&row(&[("price", "1")]), &none, "EUR").unwrap_err(), "no name");
        let r = row(&[("name", "n"), ("price", "free"), ("category", "c"), ("brand", "b")]);
        assert!(product(&r, &none, "EUR").unwrap_err().contains("price"));
        let r = row(&[("name", "n"), ("price", "1"), ("category", "c"), ("brand", "b"), ("stock", "-2")]);
        assert!(product(&r, &none, "EUR").unwrap_err().contains("stock"));
    }

    #[test]
    fn files_are_read_with_line_numbers_and_broken_lines_reported() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("c.csv");
        std::fs::write(&csv, "name,price,category,brand\nKettle,1.00,Kitchen,Acme\n\"Lamp, desk\",2.50,Home,Lumo\nshort,row\n").unwrap();
        let (rows, bad) = read_rows(&csv, Format::Csv).unwrap();
        assert_eq!(rows.iter().map(|(l, r)| (*l, r["name"].clone())).collect::<Vec<_>>(), [(2, "Kettle".to_owned()), (3, "Lamp, desk".to_owned())]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 4);
        let jsonl = dir.path().join("c.jsonl");
        std::fs::write(&jsonl, "{\"name\":\"Kettle\",\"price\":1.5}\n\nnot json\n").unwrap();
        let (rows, bad) = read_rows(&jsonl, Format::Jsonl).unwrap();
        assert_eq!((rows[0].0, rows[0].1["price"].as_str()), (1, "1.5"));
        assert_eq!(bad[0].0, 3);
    }
}
