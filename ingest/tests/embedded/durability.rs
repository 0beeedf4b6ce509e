//! Embedded-only guarantees: data outlives the process, acknowledged appends survive SIGKILL,
//! and explicit compaction.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::executor::block_on;
use shopflow_ingest::{EmbeddedLog, EventLog, LogError, OutRecord, Position, TopicSpec};

use super::{on, read_exactly, rec};

const CHILD_DIR_ENV: &str = "SHOPFLOW_TEST_CHILD_LOG_DIR";

#[test]
fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        block_on(log.ensure_topic(&TopicSpec::new("users", 2))).unwrap();
        block_on(log.ensure_topic(&TopicSpec::new("sessions", 1).compacted())).unwrap();
        block_on(
            log.append(
                (0..10)
                    .map(|i| on("users", i % 2, "k", &format!("v{i}")))
                    .collect(),
            ),
        )
        .unwrap();
    }
    let log = EmbeddedLog::open(dir.path()).unwrap();
    assert_eq!(block_on(log.partitions("users")).unwrap(), 2);
    assert_eq!(block_on(log.partitions("sessions")).unwrap(), 1);
    assert_eq!(block_on(log.end_offsets("users")).unwrap(), vec![5, 5]);
    let pos = block_on(log.append(vec![on("users", 0, "k", "after")])).unwrap();
    assert_eq!(pos[0].offset, 5, "offsets continue after reopen");
    let got = read_exactly(
        &mut *log.reader(&[Position::new("users", 0, 0)]).unwrap(),
        6,
    );
    let values: Vec<_> = got
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(values, ["v0", "v2", "v4", "v6", "v8", "after"]);
}

#[test]
fn a_second_open_of_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = EmbeddedLog::open(dir.path()).unwrap();
    assert!(matches!(
        EmbeddedLog::open(dir.path()),
        Err(LogError::Storage(_))
    ));
}

/// Runs only as the child of `acked_appends_survive_sigkill` (it sets the env var); as a plain
/// test it does nothing.
#[test]
fn sigkill_child_entry() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let log = EmbeddedLog::open(std::path::Path::new(&dir)).unwrap();
    block_on(log.ensure_topic(&TopicSpec::new("orders", 2))).unwrap();
    for b in 0.. {
        let batch = (0..50)
            .map(|i| rec("orders", &format!("k{i}"), &format!("{b}-{i}")))
            .collect();
        let positions = block_on(log.append(batch)).unwrap();
        let mut out = String::new();
        for (i, p) in positions.iter().enumerate() {
            out.push_str(&format!("ACK {} {} {b}-{i}\n", p.partition, p.offset));
        }
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes()).unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn acked_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "embedded_durability::sigkill_child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let parts: Vec<&str> = rest.split(' ').collect();
        acked.insert(
            (parts[0].parse().unwrap(), parts[1].parse().unwrap()),
            parts[2].to_string(),
        );
        if acked.len() >= 2000 {
            // Kill mid-stream: the child is appending its next batch right now.
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        acked.len() >= 2000,
        "child acked only {} records",
        acked.len()
    );

    let log = EmbeddedLog::open(dir.path()).unwrap();
    let ends = block_on(log.end_offsets("orders")).unwrap();
    let total: u64 = ends.iter().sum();
    assert!(
        total as usize >= acked.len(),
        "{total} records survived, {} were acked",
        acked.len()
    );
    let from = [Position::new("orders", 0, 0), Position::new("orders", 1, 0)];
    let got = read_exactly(&mut *log.reader(&from).unwrap(), total as usize);
    let stored: BTreeMap<(u32, u64), String> = got
        .into_iter()
        .map(|r| {
            (
                (r.partition, r.offset),
                String::from_utf8(r.value.unwrap()).unwrap(),
            )
        })
        .collect();
    for (pos, value) in &acked {
        assert_eq!(stored.get(pos), Some(value), "acked record at {pos:?}");
    }
}

#[test]
fn compaction_keeps_the_latest_record_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    block_on(log.ensure_topic(&TopicSpec::new("stock", 1).compacted())).unwrap();
    block_on(log.ensure_topic(&TopicSpec::new("plain", 1))).unwrap();
    let tomb = |k: &str| OutRecord {
        topic: "stock".into(),
        partition: None,
        key: k.into(),
        value: None,
    };
    let records = vec![
        rec("stock", "a", "1"),
        rec("stock", "b", "1"),
        rec("stock", "a", "2"),
        tomb("b"),
        rec("stock", "c", "1"),
    ];
    block_on(log.append(records)).unwrap();

    // Young tombstones stay so that lagging readers still see the delete.
    let stats = block_on(log.compact("stock")).unwrap();
    assert_eq!((stats.removed, stats.retained), (2, 3));
    let got = read_exactly(
        &mut *log.reader(&[Position::new("stock", 0, 0)]).unwrap(),
        3,
    );
    let seen: Vec<_> = got
        .iter()
        .map(|r| (r.offset, r.key.clone(), r.value.clone()))
        .collect();
    let expected = vec![
        (2, b"a".to_vec(), Some(b"2".to_vec())),
        (3, b"b".to_vec(), None),
        (4, b"c".to_vec(), Some(b"1".to_vec())),
    ];
    assert_eq!(seen, expected);

    let stats = block_on(log.compact_with("stock", Duration::ZERO)).unwrap();
    assert_eq!((stats.removed, stats.retained), (1, 2));
    assert_eq!(
        block_on(log.end_offsets("stock")).unwrap(),
        vec![5],
        "the end never moves back"
    );
    let pos = block_on(log.append(vec![rec("stock", "d", "1")])).unwrap();
    assert_eq!(pos[0].offset, 5);
    let got = read_exactly(
        &mut *log.reader(&[Position::new("stock", 0, 0)]).unwrap(),
        3,
    );
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![2, 4, 5]
    );

    assert!(matches!(
        block_on(log.compact("plain")),
        Err(LogError::Invalid(_))
    ));
    assert!(matches!(
        block_on(log.compact("nope")),
        Err(LogError::UnknownTopic(_))
    ));
}
