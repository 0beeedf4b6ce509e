//! Append-only JSON Lines files that survive crashes: the gateway's ledger and the notifier's
//! outbox. An append is one write of whole lines and an fsync; only then is it acknowledged.
//! So at open, an unterminated last line is a write cut short by a crash, never acknowledged,
//! and is cut off; any other line that does not parse is corruption and an error.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::PaymentsError;

pub(crate) struct JsonlFile {
    path: PathBuf,
    file: File,
    /// Bytes known good: a failed append is cut back to here.
    len: u64,
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
        Ok((Self { path: path.to_path_buf(), file, len: good }, entries))
    }

    /// Appends the items as lines and fsyncs them. On failure nothing counts as written (the
    /// file is cut back), so the caller may try again.
    pub fn append<T: Serialize>(&mut self, items: &[T]) -> Result<(), PaymentsError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for item in items {
            serde_json::to_writer(&mut bytes, item).expect("our lines always serialise");
            bytes.push(b'\n');
        }
        let written = self.file.write_all(&bytes).and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            let _ = self.file.set_len(self.len);
            return Err(PaymentsError::Io { what: "append to", path: self.path.clone(), source });
        }
        self.len += bytes.len() as u64;
        Ok(())
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
