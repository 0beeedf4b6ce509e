//! Test helpers (feature `testing`): a real Kafka-protocol broker to run tests against.
//!
//! `SHOPFLOW_TEST_KAFKA=host:port` points every test at one shared broker (tests then isolate
//! themselves with [`unique_namespace`]). Without it, each [`kafka_broker`] call starts its own
//! nisshi broker on a free loopback port and kills it when the handle drops.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::KafkaConfig;

const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// A broker address, and the broker process when this handle owns it.
pub struct BrokerHandle {
    addr: String,
    child: Option<Child>,
    log_path: Option<PathBuf>,
}

impl BrokerHandle {
    /// `host:port` to bootstrap from.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A client config for this broker in a fresh namespace.
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig::new(self.addr.clone()).with_namespace(unique_namespace())
    }

    /// Where the owned broker's output goes, for debugging a failed test.
    pub fn log_path(&self) -> Option<&PathBuf> {
        self.log_path.as_ref()
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` signals this exact PID (SIGKILL), never a process name.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A namespace no other test (in this or another process) uses: `t{pid}x{n}x{random}`.
pub fn unique_namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}x{n}x{}", std::process::id(), &random[..8])
}

/// The nisshi binary: `SHOPFLOW_NISSHI`, else where `scripts/broker.sh install` puts it.
pub fn nisshi_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOPFLOW_NISSHI") {
        return PathBuf::from(p);
    }
    let tools = std::env::var_os("SHOPFLOW_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".cache/shopflow/tools")
        });
    tools.join("bin/nisshi")
}

/// A broker for a test. Panics (it is a test helper) if none can be had.
pub fn kafka_broker() -> BrokerHandle {
    match try_kafka_broker() {
        Ok(b) => b,
        Err(e) => panic!("no kafka broker for tests: {e}"),
    }
}

pub fn try_kafka_broker() -> Result<BrokerHandle, String> {
    if let Ok(addr) = std::env::var("SHOPFLOW_TEST_KAFKA") {
        if !addr.is_empty() {
            return Ok(BrokerHandle {
                addr,
                child: None,
                log_path: None,
            });
        }
    }
    let mut last = String::new();
    // The free port can be taken between probing it and the broker binding it; retry then.
    for _ in 0..3 {
        match start_nisshi() {
            Ok(b) => return Ok(b),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local addr: {e}"))
}

fn start_nisshi() -> Result<BrokerHandle, String> {
    let bin = nisshi_path();
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `scripts/broker.sh install` or set SHOPFLOW_NISSHI",
            bin.display()
        ));
    }
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let log_path =
        std::env::temp_dir().join(format!("shopflow-nisshi-{}-{port}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let err_log = log.try_clone().map_err(|e| format!("dup log: {e}"))?;
    let child = Command::new(&bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args([
            "--storage-engine",
            "memory://nisshi/",
            "--group-initial-rebalance-delay",
            "0s",
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let mut handle = BrokerHandle {
        addr: format!("127.0.0.1:{port}"),
        child: Some(child),
        log_path: Some(log_path),
    };
    wait_ready(&mut handle)?;
    tracing::info!(addr = %handle.addr, "started nisshi broker");
    Ok(handle)
}

/// Ready means: the port accepts connections and a metadata request gets an answer.
fn wait_ready(handle: &mut BrokerHandle) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    let sock: SocketAddr = handle
        .addr
        .parse()
        .map_err(|e| format!("address {}: {e}", handle.addr))?;
    let tail = |h: &BrokerHandle| {
        h.log_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| {
                s.chars()
                    .rev()
                    .take(2000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    loop {
        if let Some(child) = handle.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "nisshi exited with {status} during startup:\n{}",
                    tail(handle)
                ));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nisshi not ready after {STARTUP_DEADLINE:?}:\n{}",
                tail(handle)
            ));
        }
        if TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_ok() {
            let probe: Result<BaseConsumer, _> =
                KafkaConfig::new(handle.addr.clone()).client().create();
            if let Ok(c) = probe {
                if c.fetch_metadata(None, Duration::from_secs(2)).is_ok() {
                    return Ok(());
                }
            }
        } else {
            // A refused connection returns at once; pace the probe instead of spinning.
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}
