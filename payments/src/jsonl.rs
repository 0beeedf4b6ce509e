//! Append-only JSON Lines files that survive crashes: the gateway's ledger and the notifier's
//! outbox. An append is one write of whole lines and an fsync; only then is it acknowledged.
//! So at open, an unterminated last line is a write cut short by a crash, never acknowledged,
//! and is cut off; any other line that does not parse is corruption and an error.
//!
//! Writers that answer many callers at once (the gateway) write under their own lock and make
//! the write durable outside it with [`Syncer::sync_to`]: group commit, one fsync for every
//! write made while the previous fsync ran, instead of one fsync per write under the lock.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::PaymentsError;

pub(crate) struct JsonlFile {
    path: PathBuf,
    file: File,
    /// Its `written` is the end of the bytes known good: a failed write is cut back to there.
    syncer: Arc<Syncer>,
}

/// Makes what a [`JsonlFile`] wrote durable, callable without the writer's lock.
pub(crate) struct Syncer {
    path: PathBuf,
    file: File,
    /// End of the bytes written so far (stored by the one writer, read by syncing callers).
    written: AtomicU64,
    /// End of the bytes known durable; held while an fsync runs, so callers that arrive
    /// meanwhile wait for it and then find their bytes covered, or share the next one.
    synced: Mutex<u64>,
    /// fsyncs made (the gateway's stats: how many writes each one covered).
    syncs: AtomicU64,
}

impl Syncer {
    /// Returns once every byte before `end` is durable.
    pub fn sync_to(&self, end: u64) -> Result<(), PaymentsError> {
        let mut synced = self.synced.lock();
        if *synced >= end {
            return Ok(());
        }
        // Everything written by now is covered by this fsync, not only the caller's bytes.
        let target = self.written.load(Ordering::Acquire);
        self.file
            .sync_data()
            .map_err(|source| PaymentsError::Io { what: "sync", path: self.path.clone(), source })?;
        *synced = target;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl JsonlFile {
    /// Opens (creating it and its directory if needed) and reads back every line.
    pub fn open<T: DeserializeOwned>(path: &Path) -> Result<(Self, Vec<T>), PaymentsError> {
        let io = |what| move |source| PaymentsError::Io { what, path: path.to_path_buf(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
        let created = !path.exists();
        let (entries, good) = read_lines(path)?;
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io("open"))?;
        if file.metadata().map_err(io("stat"))?.len() > good {
            tracing::warn!(path = %path.display(), keep = good, "file ends in a torn line (a write cut short by a crash); cutting it off");
            file.set_len(good).map_err(io("truncate"))?;
            file.sync_all().map_err(io("sync"))?;
        }
        if created {
            // The new file's directory entry must survive a crash too.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync the directory of"))?;
        }
        let syncer = Arc::new(Syncer {
            path: path.to_path_buf(),
            file: file.try_clone().map_err(io("open"))?,
            written: AtomicU64::new(good),
            synced: Mutex::new(good),
            syncs: AtomicU64::new(0),
        });
        Ok((Self { path: path.to_path_buf(), file, syncer }, entries))
    }

    /// Appends the items as lines and fsyncs them. On failure nothing counts as written (the
    /// file is cut back), so the caller may try again.
    pub fn append<T: Serialize>(&mut self, items: &[T]) -> Result<(), PaymentsError> {
        let end = self.write(items)?;
        self.syncer.sync_to(end)
    }

    /// Writes the items as lines without waiting for them to be durable; returns the end
    /// offset to pass to [`Syncer::sync_to`] before acknowledging them. On failure nothing
    /// counts as written (the file is cut back).
    pub fn write<T: Serialize>(&mut self, items: &[T]) -> Result<u64, PaymentsError> {
        let len = self.written();
        if items.is_empty() {
            return Ok(len);
        }
        let mut bytes = Vec::new();
        for item in items {
            serde_json::to_writer(&mut bytes, item).expect("our lines always serialise");
            bytes.push(b'\n');
        }
        if let Err(source) = self.file.write_all(&bytes) {
            let _ = self.file.set_len(len);
            return Err(PaymentsError::Io { what: "append to", path: self.path.clone(), source });
        }
        let end = len + bytes.len() as u64;
        self.syncer.written.store(end, Ordering::Release);
        Ok(end)
    }

    /// End of the bytes written so far.
    pub fn written(&self) -> u64 {
        self.syncer.written.load(Ordering::Acquire)
    }

    pub fn syncer(&self) -> Arc<Syncer> {
        self.syncer.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Every complete line of a file (none if it does not exist), and the length they take.
pub(crate) fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, u64), PaymentsError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(PaymentsError::Io { what: "read", path: path.to_path_buf(), source }),
    };
    let good = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut entries = Vec::new();
    for (i, line) in bytes[..good].split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry = serde_json::from_slice(line)
            .map_err(|e| PaymentsError::Corrupt { path: path.to_path_buf(), line: i + 1, reason: e.to_string() })?;
        entries.push(entry);
    }
    Ok((entries, good as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_off_and_appends_continue_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/f.jsonl");
        let (mut f, old) = JsonlFile::open::<u32>(&path).unwrap();
        assert!(old.is_empty());
        f.append(&[1u32, 2]).unwrap();
        drop(f);
        // A crash in the middle of a write.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"3").unwrap();
        let (mut f, old) = JsonlFile::open::<u32>(&path).unwrap();
        assert_eq!(old, [1, 2]);
        f.append(&[4u32]).unwrap();
        let (all, _) = read_lines::<u32>(&path).unwrap();
        assert_eq!(all, [1, 2, 4]);
    }

    #[test]
    fn one_fsync_covers_every_write_made_before_it_and_no_write_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let (mut file, _) = JsonlFile::open::<u32>(&path).unwrap();
        let syncer = file.syncer();
        let first = file.write(&[1u32]).unwrap();
        let second = file.write(&[2u32]).unwrap();
        syncer.sync_to(first).unwrap();
        assert_eq!(syncer.syncs(), 1);
        // The second writer finds its line covered by the first writer's fsync.
        syncer.sync_to(second).unwrap();
        assert_eq!(syncer.syncs(), 1);
        // A line written after that fsync needs one of its own.
        let third = file.write(&[3u32]).unwrap();
        syncer.sync_to(third).unwrap();
        assert_eq!(syncer.syncs(), 2);
        assert_eq!(read_lines::<u32>(&path).unwrap().0, [1, 2, 3]);
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, b"1\nnope\n3\n").unwrap();
        match JsonlFile::open::<u32>(&path) {
            Err(PaymentsError::Corrupt { line: 2, .. }) => {}
            other => panic!("expected corruption at line 2, got {:?}", other.map(|(_, v)| v)),
        }
    }
}
