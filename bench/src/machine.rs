//! Facts about the machine and build a report was measured on, and per-thread CPU time from
//! /proc, which tells which thread (timely worker, log writer, reader, producer) is the
//! bottleneck of a phase without needing a profiler.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct MachineFacts {
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub memory_gib: Option<f64>,
    pub kernel: Option<String>,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub date_utc: String,
    pub unix_time: u64,
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn facts() -> MachineFacts {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned());
    let memory_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let kb: f64 = m
            .lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
    });
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    MachineFacts {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        memory_gib,
        kernel: command("uname", &["-r"]),
        git_commit: command("git", &["rev-parse", "--short", "HEAD"]),
        git_dirty: command("git", &["status", "--porcelain", "--untracked-files=no"])
            .map(|s| !s.is_empty()),
        date_utc: command("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .unwrap_or_else(|| unix_time.to_string()),
        unix_time,
    }
}

/// CPU seconds (user + system) per thread name, summed over threads with the same name.
#[derive(Clone, Debug, Default)]
pub struct ThreadCpu(BTreeMap<String, f64>);

fn clock_ticks() -> f64 {
    command("getconf", &["CLK_TCK"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(100.0)
}

impl ThreadCpu {
    pub fn sample() -> Self {
        let ticks = clock_ticks();
        let mut out = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Self(out);
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // The name sits in parentheses and may contain spaces; the fields after it are fixed.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = normalise(&stat[open + 1..close]);
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
            let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) else {
                continue;
            };
            let secs = (u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0)) / ticks;
            *out.entry(name).or_insert(0.0) += secs;
        }
        Self(out)
    }

    /// CPU seconds each thread group used since `earlier`, largest first (threads that ended
    /// in between are lost, which is why phases sample while their threads still run).
    pub fn since(&self, earlier: &ThreadCpu) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = self
            .0
            .iter()
            .map(|(name, now)| {
                (
                    name.clone(),
                    now - earlier.0.get(name).copied().unwrap_or(0.0),
                )
            })
            .filter(|(_, d)| *d >= 0.01)
            .map(|(n, d)| (n, (d * 100.0).round() / 100.0))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

/// Busy CPU time of the whole machine, of this process and of the Kafka broker the phase
/// talks to: what other processes (builds, tests sharing the machine) took from a phase is the
/// rest. The broker is part of the Kafka backend, not a competitor, so it is counted apart.
#[derive(Clone, Copy, Debug)]
pub struct MachineCpu {
    machine_busy_secs: f64,
    /// Time the hypervisor ran someone else on this VM's CPUs (`/proc/stat`'s steal).
    steal_secs: f64,
    own_secs: f64,
    broker_secs: f64,
    at: std::time::Instant,
}

/// user + system (+ children's, fields 14..=17) CPU seconds of one process from its stat file.
fn process_secs(stat: &str, ticks: f64) -> Option<f64> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let sum: f64 = fields
        .get(11..=14)?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Some(sum / ticks)
}

/// CPU seconds of the nisshi broker processes listening on `address` (HOST:PORT).
fn broker_secs(address: &str, ticks: f64) -> f64 {
    let listener = format!("tcp://{address}");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut total = 0.0;
    for entry in procs.flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_broker = args.first().is_some_and(|a| a.ends_with("nisshi"))
            && args.contains(&listener);
        if !is_broker {
            continue;
        }
        if let Some(secs) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| process_secs(&s, ticks))
        {
            total += secs;
        }
    }
    total
}

impl MachineCpu {
    /// `broker`: the Kafka bootstrap address when the phase runs on Kafka.
    pub fn sample(broker: Option<&str>) -> Option<Self> {
        let ticks = clock_ticks();
        let (busy, steal) = busy_and_steal(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let own = process_secs(&std::fs::read_to_string("/proc/self/stat").ok()?, ticks)?;
        Some(Self {
            machine_busy_secs: busy / ticks,
            steal_secs: steal / ticks,
            own_secs: own,
            broker_secs: broker.map_or(0.0, |b| broker_secs(b, ticks)),
            at: std::time::Instant::now(),
        })
    }

    fn wall_since(&self, earlier: &MachineCpu) -> f64 {
        self.at.duration_since(earlier.at).as_secs_f64()
    }

    /// Cores processes other than this one and the broker kept busy on average since `earlier`.
    pub fn others_since(&self, earlier: &MachineCpu) -> f64 {
        let others = (self.machine_busy_secs - earlier.machine_busy_secs)
            - (self.own_secs - earlier.own_secs)
            - (self.broker_secs - earlier.broker_secs);
        self.cores(earlier, others.max(0.0))
    }

    /// `secs` of CPU since `earlier` as cores busy on average, to two decimals.
    fn cores(&self, earlier: &MachineCpu, secs: f64) -> f64 {
        let wall = self.wall_since(earlier);
        if wall <= 0.0 {
            return 0.0;
        }
        (secs / wall * 100.0).round() / 100.0
    }

    /// Cores the hypervisor took from this VM on average since `earlier`: time no process
    /// here could run, which moves every figure of the phase (it is not "other processes").
    pub fn steal_since(&self, earlier: &MachineCpu) -> f64 {
        self.cores(earlier, self.steal_secs - earlier.steal_secs)
    }

    /// Cores the broker kept busy on average since `earlier`.
    pub fn broker_since(&self, earlier: &MachineCpu) -> f64 {
        self.cores(earlier, self.broker_secs - earlier.broker_secs)
    }
}

/// Busy and stolen ticks of the whole machine from `/proc/stat`'s `cpu` line: user, nice,
/// system, irq and softirq are busy (guest time is inside user); steal apart.
fn busy_and_steal(stat: &str) -> Option<(f64, f64)> {
    let cpu: Vec<f64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = [0, 1, 2, 5, 6].iter().filter_map(|&i| cpu.get(i)).sum();
    Some((busy, cpu.get(7).copied().unwrap_or(0.0)))
}

/// Threads keep their own names (`timely:work-0`, `shopflow-log-writer`) so an imbalance
/// between workers shows; same-named threads (the tokio pool) are summed.
fn normalise(name: &str) -> String {
    name.trim().to_owned()
}

/// Peak resident set size of this process so far, in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kb / 1024.0).round())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_counted_apart_from_the_machine_busy_time() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat = "cpu  100 20 30 4000 50 6 7 800 0 0\ncpu0 50 10 15 2000 25 3 3 400 0 0\n";
        assert_eq!(busy_and_steal(stat), Some((163.0, 800.0)));
        assert_eq!(busy_and_steal("cpu0 1 2 3\n"), None, "only the machine's line counts");
    }
}
