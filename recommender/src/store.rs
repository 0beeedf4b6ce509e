//! The versioned model store: one directory per trained model, a "current" pointer that the
//! serving side polls, and a promotion history for rollback.
//!
//! ```text
//! data/models/
//!   v000001/                 one trained model (never modified once renamed into place)
//!     metadata.json          format version, hyperparameters, shape, training time, source
//!     metrics.json           P/R/NDCG/MAP@k and coverage for the model and the popularity baseline
//!     items.json             product ids, in factor-row order
//!     item_factors.bin       Hᵀ (items × rank), f64 little endian, see `write_matrix`
//!     users.json             user ids (optional)
//!     user_factors.bin       W (users × rank) (optional)
//!     similar.json           top-k cosine neighbours per item
//!     loss.svg               the loss curve
//!   current.json             {"version": N, "previous": [..]}: the promoted model + rollback stack
//!   history.jsonl            one line per promote/rollback, for people (not read back)
//! ```
//!
//! Atomicity: a version is written into a hidden temporary directory, every file and the
//! directory are fsynced, and the directory is renamed to `vNNNNNN` — a reader sees all of a
//! version or none of it. The pointer is one small file replaced by rename, so a poller never
//! reads half a pointer, and the rollback stack lives in the same file so the two can never
//! disagree after a crash. Concurrent trainers are safe (the rename fails if another one took
//! the version number, and the save retries with the next); concurrent promote/rollback
//! commands are last-writer-wins, which is fine for an operator action.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::eval::Metrics;
use crate::plot::loss_curve_svg;
use crate::serving_model::{FoldInParams, ServingModel, ServingModelError};
use crate::similar::{top_k_cosine, Neighbour};
use crate::{Init, Nmf, NmfValidParams, Solver};

/// Version of the on-disk layout written by this build; loading refuses newer ones.
pub const FORMAT_VERSION: u32 = 1;
/// Neighbours precomputed per item.
pub const SIMILAR_K: usize = 20;
/// Rollback depth kept in the pointer file.
const MAX_PREVIOUS: usize = 64;
const POINTER: &str = "current.json";
const HISTORY: &str = "history.jsonl";
const MATRIX_MAGIC: &[u8; 4] = b"SFMX";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: format version {found} is newer than this build understands ({FORMAT_VERSION})")]
    UnsupportedFormat { path: PathBuf, found: u32 },
    #[error("model version {0} does not exist")]
    NotFound(u64),
    #[error("no model has been promoted")]
    NoCurrent,
    #[error("nothing to roll back to: version {0} is the only one promoted so far")]
    NothingToRollBack(u64),
    #[error("model version {version} is unusable: {source}")]
    Model { version: u64, source: ServingModelError },
    #[error("invalid model to save: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// Top-k metrics of one recommender (the model or the baseline) as stored in `metrics.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricValues {
    pub users: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub coverage: f64,
}

impl From<Metrics> for MetricValues {
    fn from(m: Metrics) -> Self {
        Self { users: m.users, precision: m.precision, recall: m.recall, ndcg: m.ndcg, map: m.map, coverage: m.coverage }
    }
}

/// `metrics.json`: the offline evaluation the promote decision is based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub k: usize,
    /// How train and test were split, in words.
    pub split: String,
    pub model: MetricValues,
    pub popularity: MetricValues,
}

impl Evaluation {
    /// Whether the model beats the popularity baseline on precision@k.
    pub fn beats_popularity(&self) -> bool {
        self.model.precision > self.popularity.precision
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub rank: usize,
    pub max_iter: usize,
    pub tol: f64,
    pub l1_ratio: f64,
    pub alpha_w: f64,
    pub alpha_h: f64,
    pub seed: u64,
    pub solver: String,
    pub init: String,
    pub fold_in_max_sweeps: usize,
    pub fold_in_tol: f64,
}

impl From<&NmfValidParams> for Hyperparameters {
    fn from(p: &NmfValidParams) -> Self {
        Self {
            rank: p.rank(),
            max_iter: p.max_iter(),
            tol: p.tol(),
            l1_ratio: p.l1_ratio(),
            alpha_w: p.alpha_w(),
            alpha_h: p.alpha_h(),
            seed: p.seed(),
            solver: match p.solver() {
                Solver::CoordinateDescent => "cd",
                Solver::MultiplicativeUpdate => "mu",
            }
            .to_owned(),
            init: match p.init() {
                Init::Nndsvd => "nndsvd",
                Init::NndsvdA => "nndsvda",
                Init::Random => "random",
            }
            .to_owned(),
            fold_in_max_sweeps: p.fold_in_max_sweeps(),
            fold_in_tol: p.fold_in_tol(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    pub users: usize,
    pub items: usize,
    pub rank: usize,
    /// Non-zeros of the training matrix.
    pub nnz: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub seconds: f64,
    pub iterations: usize,
    pub converged: bool,
    pub initial_loss: f64,
    pub final_loss: f64,
}

/// `metadata.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub format_version: u32,
    pub version: u64,
    /// UTC, RFC 3339.
    pub created_at: String,
    pub created_at_ms: i64,
    pub data_source: String,
    pub hyperparameters: Hyperparameters,
    pub shape: Shape,
    pub training: TrainingInfo,
    pub fold_in: FoldInParams,
    pub similar_k: usize,
    pub has_user_factors: bool,
}

/// A freshly trained model and what is known about it, ready for [`ModelStore::save`].
#[derive(Debug, Clone)]
pub struct TrainedModel {
    pub model: Nmf,
    pub params: NmfValidParams,
    /// Product id of each item column.
    pub item_ids: Vec<String>,
    /// User id of each user row; `Some` stores the user factors too.
    pub user_ids: Option<Vec<String>>,
    /// Where the training data came from, e.g. `file:ml-100k.inter` or `log:embedded`.
    pub data_source: String,
    pub training_seconds: f64,
    /// Non-zeros of the training matrix.
    pub nnz: usize,
    pub evaluation: Evaluation,
}

/// One entry of [`ModelStore::list`]. A version whose files cannot be read is still listed,
/// with `problem` saying why.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub version: u64,
    pub path: PathBuf,
    pub current: bool,
    pub metadata: Option<ModelMetadata>,
    pub evaluation: Option<Evaluation>,
    pub problem: Option<String>,
}

/// `current.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pointer {
    version: u64,
    /// Previously promoted versions, oldest first; rollback pops the last.
    previous: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

impl ModelStore {
    /// Opens (creating if needed) the store at `root`, by default `data/models`.
    pub fn open(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        Ok(Self { root: root.to_owned() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn version_dir(&self, version: u64) -> PathBuf {
        self.root.join(format!("v{version:06}"))
    }

    /// The pointer file the serving side polls.
    pub fn pointer_path(&self) -> PathBuf {
        self.root.join(POINTER)
    }

    /// Stored versions, ascending.
    pub fn versions(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(v) = parse_version_dir(name) {
                if entry.path().is_dir() {
                    out.push(v);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Writes a new version and returns its number. Nothing is visible until the final
    /// rename; a failure leaves no partial version behind.
    pub fn save(&self, trained: &TrainedModel) -> Result<u64> {
        let m = &trained.model;
        if trained.item_ids.len() != m.n_items() {
            return Err(StoreError::Invalid(format!("{} item ids for {} items", trained.item_ids.len(), m.n_items())));
        }
        if let Some(users) = &trained.user_ids {
            if users.len() != m.n_users() {
                return Err(StoreError::Invalid(format!("{} user ids for {} users", users.len(), m.n_users())));
            }
        }
        let tmp = self.root.join(format!(".tmp-{}-{}", std::process::id(), now_nanos()));
        let result = self.save_into(&tmp, trained);
        if result.is_err() {
            // Best effort: a leftover hidden temp dir is harmless (never listed or loaded).
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn save_into(&self, tmp: &Path, t: &TrainedModel) -> Result<u64> {
        fs::create_dir(tmp).map_err(io_err(tmp))?;
        let m = &t.model;
        let ht = m.item_factors_t();
        let similar = top_k_cosine(ht.view(), SIMILAR_K);
        write_json(&tmp.join("items.json"), &t.item_ids)?;
        write_matrix(&tmp.join("item_factors.bin"), ht)?;
        if let Some(users) = &t.user_ids {
            write_json(&tmp.join("users.json"), users)?;
            write_matrix(&tmp.join("user_factors.bin"), m.user_factors())?;
        }
        // Compact: this is the one large JSON file (items × k pairs).
        let path = tmp.join("similar.json");
        let bytes = serde_json::to_vec(&SimilarFile { k: SIMILAR_K, neighbours: similar })
            .map_err(|source| StoreError::Json { path: path.clone(), source })?;
        write_file(&path, &bytes)?;
        write_json(&tmp.join("metrics.json"), &t.evaluation)?;
        let created_ms = now_millis();
        let mut meta = ModelMetadata {
            format_version: FORMAT_VERSION,
            version: 0,
            created_at: rfc3339(created_ms),
            created_at_ms: created_ms,
            data_source: t.data_source.clone(),
            hyperparameters: (&t.params).into(),
            shape: Shape { users: m.n_users(), items: m.n_items(), rank: m.rank(), nnz: t.nnz },
            training: TrainingInfo {
                seconds: t.training_seconds,
                iterations: m.n_iter(),
                converged: m.converged(),
                initial_loss: m.loss_curve().first().copied().unwrap_or(f64::NAN),
                final_loss: m.final_loss(),
            },
            fold_in: FoldInParams::from_params(&t.params, m.n_users(), m.n_items()),
            similar_k: SIMILAR_K,
            has_user_factors: t.user_ids.is_some(),
        };
        // Another trainer may take the number between our scan and our rename; the rename
        // then fails and we try the next one (metadata carries the number, so rewrite it).
        let first = self.versions()?.last().copied().unwrap_or(0) + 1;
        for version in first..first + 1000 {
            meta.version = version;
            let title = format!("v{version:06}: rank {}, {} iterations", m.rank(), m.n_iter());
            write_file(&tmp.join("loss.svg"), loss_curve_svg(m.loss_curve(), &title).as_bytes())?;
            write_json(&tmp.join("metadata.json"), &meta)?;
            sync_dir(tmp)?;
            let dest = self.version_dir(version);
            if !dest.exists() {
                match fs::rename(tmp, &dest) {
                    Ok(()) => {
                        sync_dir(&self.root)?;
                        tracing::info!(version, dir = %dest.display(), "model saved");
                        return Ok(version);
                    }
                    Err(e) if dest.exists() => tracing::debug!(version, error = %e, "version taken, trying the next"),
                    Err(e) => return Err(StoreError::Io { path: dest, source: e }),
                }
            }
        }
        Err(StoreError::Invalid("could not allocate a version number".into()))
    }

    /// Every stored version with its metadata and metrics.
    pub fn list(&self) -> Result<Vec<ModelInfo>> {
        let current = self.current().ok().flatten();
        Ok(self
            .versions()?
            .into_iter()
            .map(|version| {
                let path = self.version_dir(version);
                let metadata = self.metadata(version);
                let evaluation = read_json::<Evaluation>(&path.join("metrics.json"));
                let problem = match (&metadata, &evaluation) {
                    (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
                    _ => None,
                };
                ModelInfo {
                    version,
                    path,
                    current: current == Some(version),
                    metadata: metadata.ok(),
                    evaluation: evaluation.ok(),
                    problem,
                }
            })
            .collect())
    }

    /// The metadata of one version, checked against the directory it is in.
    pub fn metadata(&self, version: u64) -> Result<ModelMetadata> {
        let dir = self.version_dir(version);
        if !dir.is_dir() {
            return Err(StoreError::NotFound(version));
        }
        let path = dir.join("metadata.json");
        let meta: ModelMetadata = read_json(&path)?;
        if meta.format_version > FORMAT_VERSION {
            return Err(StoreError::UnsupportedFormat { path, found: meta.format_version });
        }
        if meta.version != version {
            return Err(StoreError::Corrupt { path, reason: format!("says version {}", meta.version) });
        }
        Ok(meta)
    }

    /// The metrics of one version.
    pub fn evaluation(&self, version: u64) -> Result<Evaluation> {
        read_json(&self.version_dir(version).join("metrics.json"))
    }

    /// Loads one version for serving. Every part is validated; a damaged version is an error.
    pub fn load(&self, version: u64) -> Result<ServingModel> {
        let meta = self.metadata(version)?;
        let dir = self.version_dir(version);
        let items: Vec<String> = read_json(&dir.join("items.json"))?;
        let factors_path = dir.join("item_factors.bin");
        let (rows, cols, data) = read_matrix(&factors_path)?;
        if rows != items.len() || cols != meta.shape.rank || rows != meta.shape.items {
            return Err(StoreError::Corrupt {
                path: factors_path,
                reason: format!(
                    "{rows} x {cols} factors, metadata says {} items x rank {} and items.json has {}",
                    meta.shape.items,
                    meta.shape.rank,
                    items.len()
                ),
            });
        }
        let similar: SimilarFile = read_json(&dir.join("similar.json"))?;
        ServingModel::from_parts(version, items, cols, data, meta.fold_in, similar.neighbours)
            .map_err(|source| StoreError::Model { version, source })
    }

    /// The promoted version, if any.
    pub fn current(&self) -> Result<Option<u64>> {
        Ok(self.pointer()?.map(|p| p.version))
    }

    fn pointer(&self) -> Result<Option<Pointer>> {
        let path = self.pointer_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| StoreError::Json { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Makes `version` the served model. It is fully loaded first, so a damaged version is
    /// refused rather than promoted. Promoting the current version changes nothing.
    pub fn promote(&self, version: u64) -> Result<()> {
        self.load(version)?;
        let old = self.pointer()?;
        if old.as_ref().map(|p| p.version) == Some(version) {
            return Ok(());
        }
        let mut previous = old.as_ref().map(|p| p.previous.clone()).unwrap_or_default();
        if let Some(p) = &old {
            previous.push(p.version);
        }
        if previous.len() > MAX_PREVIOUS {
            previous.drain(..previous.len() - MAX_PREVIOUS);
        }
        self.write_pointer(&Pointer { version, previous })?;
        self.log_history("promote", version, old.map(|p| p.version));
        tracing::info!(version, "model promoted");
        Ok(())
    }

    /// Goes back to the version promoted before the current one and returns it.
    pub fn rollback(&self) -> Result<u64> {
        let old = self.pointer()?.ok_or(StoreError::NoCurrent)?;
        let mut previous = old.previous.clone();
        let target = previous.pop().ok_or(StoreError::NothingToRollBack(old.version))?;
        self.load(target)?;
        self.write_pointer(&Pointer { version: target, previous })?;
        self.log_history("rollback", target, Some(old.version));
        tracing::info!(from = old.version, to = target, "model rolled back");
        Ok(target)
    }

    fn write_pointer(&self, p: &Pointer) -> Result<()> {
        let path = self.pointer_path();
        let tmp = self.root.join(format!(".{POINTER}.{}-{}", std::process::id(), now_nanos()));
        let bytes = serde_json::to_vec(p).map_err(|source| StoreError::Json { path: path.clone(), source })?;
        write_file(&tmp, &bytes)?;
        if let Err(source) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Io { path, source });
        }
        sync_dir(&self.root)
    }

    /// Audit trail only; failing to append must not undo a promotion that already happened.
    fn log_history(&self, action: &str, version: u64, from: Option<u64>) {
        let path = self.root.join(HISTORY);
        let line = serde_json::json!({ "at": rfc3339(now_millis()), "action": action, "version": version, "from": from });
        let res = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "could not append to the promotion history");
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SimilarFile {
    k: usize,
    neighbours: Vec<Vec<Neighbour>>,
}

fn parse_version_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json { path: path.to_owned(), source })?;
    write_file(path, &bytes)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path: path.to_owned(), source })
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Makes the renames/creations inside `dir` durable. Directories can be opened read-only
    // and fsynced on Unix; elsewhere this is a no-op.
    #[cfg(unix)]
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Dense f64 matrix file: magic `SFMX`, u32 format version, u64 rows, u64 cols (all little
/// endian), rows × cols f64 row-major, then a u64 FNV-1a hash of the data bytes so that a
/// flipped or truncated byte is detected instead of served.
fn write_matrix(path: &Path, m: &Array2<f64>) -> Result<()> {
    let (rows, cols) = m.dim();
    let mut buf = Vec::with_capacity(24 + rows * cols * 8 + 8);
    buf.extend_from_slice(MATRIX_MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf.extend_from_slice(&(rows as u64).to_le_bytes());
    buf.extend_from_slice(&(cols as u64).to_le_bytes());
    for v in m.iter() {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    let hash = fnv1a(&buf[24..]);
    buf.extend_from_slice(&hash.to_le_bytes());
    write_file(path, &buf)
}

fn read_matrix(path: &Path) -> Result<(usize, usize, Vec<f64>)> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let corrupt = |reason: String| StoreError::Corrupt { path: path.to_owned(), reason };
    if bytes.len() < 32 || &bytes[..4] != MATRIX_MAGIC {
        return Err(corrupt("not a matrix file".into()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let format = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if format > FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat { path: path.to_owned(), found: format });
    }
    let (rows, cols) = (u64_at(8), u64_at(16));
    let expected = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(8))
        .and_then(|n| n.checked_add(32))
        .ok_or_else(|| corrupt(format!("impossible shape {rows} x {cols}")))?;
    if bytes.len() as u64 != expected {
        return Err(corrupt(format!("{} bytes, a {rows} x {cols} matrix needs {expected}", bytes.len())));
    }
    let end = bytes.len() - 8;
    if fnv1a(&bytes[24..end]) != u64_at(end) {
        return Err(corrupt("checksum mismatch".into()));
    }
    let data = bytes[24..end].chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    Ok((rows as usize, cols as usize, data))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (civil-from-days, H. Hinnant),
/// to avoid a date-time dependency for one timestamp.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", sod / 3600, sod % 3600 / 60, sod % 60, ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use linfa::prelude::*;
    use ndarray::Array2;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::Interactions;

    fn trained(seed: u64, rank: usize) -> TrainedModel {
        let mut rng = StdRng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((40, 25), |(u, i)| {
            if (i % 3 == u % 3 && rng.gen::<f64>() < 0.7) || rng.gen::<f64>() < 0.05 {
                1.0
            } else {
                0.0
            }
        });
        let data = Interactions::new(sprs::CsMat::csr_from_dense(x.view(), 0.0)).unwrap();
        let params = linfa::ParamGuard::check(Nmf::params(rank).max_iter(50).alpha(0.001)).unwrap();
        let model = params.fit(&DatasetBase::new(data.clone(), ())).unwrap();
        let m = MetricValues { users: 40, precision: 0.3, recall: 0.2, ndcg: 0.25, map: 0.1, coverage: 0.5 };
        TrainedModel {
            model,
            params,
            item_ids: (0..25).map(|i| format!("item-{i}")).collect(),
            user_ids: Some((0..40).map(|u| format!("user-{u}")).collect()),
            data_source: "test".into(),
            training_seconds: 0.01,
            nnz: data.nnz(),
            evaluation: Evaluation {
                k: 10,
                split: "test".into(),
                model: m,
                popularity: MetricValues { precision: 0.1, ..m },
            },
        }
    }

    fn store() -> (tempfile::TempDir, ModelStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(&dir.path().join("models")).unwrap();
        (dir, store)
    }

    #[test]
    fn save_and_load_round_trip() {
        let (_d, store) = store();
        let t = trained(1, 4);
        let v = store.save(&t).unwrap();
        assert_eq!(v, 1);
        assert_eq!(store.save(&t).unwrap(), 2);
        let dir = store.version_dir(1);
        for f in ["metadata.json", "metrics.json", "items.json", "item_factors.bin", "users.json", "user_factors.bin", "similar.json", "loss.svg"] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        // No temp dirs left behind.
        assert!(fs::read_dir(store.root()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".tmp")));

        let loaded = store.load(1).unwrap();
        let fresh = ServingModel::from_nmf(1, &t.model, &t.params, t.item_ids.clone(), SIMILAR_K).unwrap();
        assert_eq!(loaded.item_ids(), fresh.item_ids());
        assert_eq!(loaded.item_factors_t(), fresh.item_factors_t(), "f64 factors are stored bit for bit");
        assert_eq!(loaded.fold_in_params(), fresh.fold_in_params());
        assert_eq!(loaded.similar_table(), fresh.similar_table());
        let clicks = [("item-0", 1.0), ("item-3", 1.0)];
        assert_eq!(loaded.recommend(&clicks, 5, |_| false), fresh.recommend(&clicks, 5, |_| false));

        let meta = store.metadata(1).unwrap();
        assert_eq!(meta.version, 1);
        assert_eq!(meta.shape, Shape { users: 40, items: 25, rank: 4, nnz: t.nnz });
        assert_eq!(meta.hyperparameters.rank, 4);
        assert!(meta.created_at.ends_with('Z'));
        assert_eq!(store.evaluation(1).unwrap(), t.evaluation);
        let (rows, cols, w) = read_matrix(&dir.join("user_factors.bin")).unwrap();
        assert_eq!((rows, cols), (40, 4));
        assert_eq!(w, t.model.user_factors().iter().copied().collect::<Vec<_>>());
    }

    #[test]
    fn promote_and_rollback_follow_the_promotion_history() {
        let (_d, store) = store();
        assert_eq!(store.current().unwrap(), None);
        assert!(matches!(store.rollback(), Err(StoreError::NoCurrent)));
        assert!(matches!(store.promote(1), Err(StoreError::NotFound(1))));
        let t = trained(2, 3);
        for _ in 0..3 {
            store.save(&t).unwrap();
        }
        store.promote(1).unwrap();
        assert!(matches!(store.rollback(), Err(StoreError::NothingToRollBack(1))));
        store.promote(3).unwrap();
        store.promote(3).unwrap(); // no-op: does not push 3 onto its own history
        store.promote(2).unwrap();
        assert_eq!(store.current().unwrap(), Some(2));
        assert_eq!(store.rollback().unwrap(), 3);
        assert_eq!(store.current().unwrap(), Some(3));
        assert_eq!(store.rollback().unwrap(), 1);
        assert_eq!(store.current().unwrap(), Some(1));
        assert!(matches!(store.rollback(), Err(StoreError::NothingToRollBack(1))));
        let list = store.list().unwrap();
        assert_eq!(list.iter().map(|m| (m.version, m.current)).collect::<Vec<_>>(), vec![(1, true), (2, false), (3, false)]);
        assert!(list.iter().all(|m| m.problem.is_none() && m.metadata.is_some() && m.evaluation.is_some()));
        let history = fs::read_to_string(store.root().join(HISTORY)).unwrap();
        assert_eq!(history.lines().count(), 5);
        // The pointer is never left half-written: it is always valid JSON with a version.
        let p: Pointer = serde_json::from_slice(&fs::read(store.pointer_path()).unwrap()).unwrap();
        assert_eq!(p, Pointer { version: 1, previous: vec![] });
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let (_d, store) = store();
        let t = trained(3, 3);
        for _ in 0..5 {
            store.save(&t).unwrap();
        }
        let dir = |v| store.version_dir(v);
        fs::write(dir(1).join("metadata.json"), b"{\"format_version\": 1, \"vers").unwrap();
        assert!(matches!(store.load(1), Err(StoreError::Json { .. })));
        assert!(matches!(store.promote(1), Err(StoreError::Json { .. })), "a corrupt model is never promoted");
        // Metadata that claims another version.
        let meta = fs::read_to_string(dir(2).join("metadata.json")).unwrap().replace("\"version\": 2", "\"version\": 9");
        fs::write(dir(2).join("metadata.json"), meta).unwrap();
        assert!(matches!(store.load(2), Err(StoreError::Corrupt { .. })));
        // A flipped byte in the factors, and a truncated factor file.
        let mut bytes = fs::read(dir(3).join("item_factors.bin")).unwrap();
        bytes[40] ^= 0x10;
        fs::write(dir(3).join("item_factors.bin"), &bytes).unwrap();
        assert!(matches!(store.load(3), Err(StoreError::Corrupt { .. })));
        fs::write(dir(3).join("item_factors.bin"), &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(store.load(3), Err(StoreError::Corrupt { .. })));
        // items.json that disagrees with the factors.
        fs::write(dir(4).join("items.json"), b"[\"a\", \"b\"]").unwrap();
        assert!(matches!(store.load(4), Err(StoreError::Corrupt { .. })));
        // A newer format.
        let meta = fs::read_to_string(dir(5).join("metadata.json")).unwrap().replace("\"format_version\": 1", "\"format_version\": 99");
        fs::write(dir(5).join("metadata.json"), meta).unwrap();
        assert!(matches!(store.load(5), Err(StoreError::UnsupportedFormat { found: 99, .. })));
        // list still lists them all, each with its problem.
        let list = store.list().unwrap();
        assert_eq!(list.len(), 5);
        assert!(list[0].problem.is_some() && list[1].problem.is_some() && list[4].problem.is_some());
        // A garbage pointer is an error for current(), not a panic or a silent None.
        fs::write(store.pointer_path(), b"garbage").unwrap();
        assert!(matches!(store.current(), Err(StoreError::Json { .. })));
        // Stray entries in the root are ignored.
        fs::create_dir(store.root().join("vx")).unwrap();
        fs::write(store.root().join("v000777"), b"a file, not a dir").unwrap();
        assert_eq!(store.versions().unwrap(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn concurrent_saves_get_distinct_versions() {
        let (_d, store) = store();
        let t = trained(5, 2);
        let mut got: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| store.save(&t).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3, 4]);
        for v in got {
            assert_eq!(store.metadata(v).unwrap().version, v);
            store.load(v).unwrap();
        }
    }

    #[test]
    fn mismatched_ids_are_refused_on_save() {
        let (_d, store) = store();
        let mut t = trained(4, 2);
        t.item_ids.pop();
        assert!(matches!(store.save(&t), Err(StoreError::Invalid(_))));
        assert!(store.versions().unwrap().is_empty());
    }

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
    }
}
