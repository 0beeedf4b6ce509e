//! Snapshots of the per-partition state (postcard), one file per source partition, written atomically
//! (temporary file, fsync, rename) so a crash leaves either the old or the new snapshot.
//! Per-partition files keep restarts independent of the worker count: whichever worker owns
//! a partition after the restart loads its file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::state::{PartitionSnapshot, PartitionState};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot i/o on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("snapshot {path} is corrupt: {source}")]
    Corrupt { path: PathBuf, source: postcard::Error },
}

#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, topic: &str, partition: u32) -> PathBuf {
        self.dir.join(format!("{topic}-{partition}.snap"))
    }

    pub fn load(&self, topic: &str, partition: u32) -> Result<Option<PartitionState>, SnapshotError> {
        let path = self.path(topic, partition);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SnapshotError::Io { path, source }),
        };
        let snapshot: PartitionSnapshot =
            postcard::from_bytes(&bytes).map_err(|source| SnapshotError::Corrupt { path, source })?;
        Ok(Some(PartitionState::from_snapshot(snapshot)))
    }

    pub fn save(&self, topic: &str, partition: u32, state: &PartitionState) -> Result<(), SnapshotError> {
        self.write(topic, partition, &state.to_snapshot())
    }

    /// Writes an already taken snapshot (so the caller can take it, and another thread write it).
    pub fn write(&self, topic: &str, partition: u32, snapshot: &PartitionSnapshot) -> Result<(), SnapshotError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.path(topic, partition);
        let tmp = path.with_extension("snap.tmp");
        // A compact binary encoding: a snapshot of every row of a partition is written every
        // few seconds on a 2-core machine, and JSON encoding competed with the workers.
        let bytes = postcard::to_allocvec(snapshot).expect("snapshots serialise");
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}
