//! CPU and memory of the processes a benchmark scenario involves, read from `/proc` (Linux
//! only): CPU from `/proc/PID/stat` (user + system time at the start and the end of the
//! scenario), resident memory from `VmRSS` in `/proc/PID/status`, sampled while it runs. The
//! processes are grouped by role (proxy, bridge, bench, brokers); a group's figures are the
//! sums over its processes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// A process watched under a role.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Its role: `proxy`, `bridge`, `bench`, `brokers`.
    pub group: &'static str,
    /// Its process id.
    pub pid: u32,
}

/// What a group used during a scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU time over wall time, in percent of one core (200 = both cores of this machine).
    pub cpu_pct: f64,
    /// The largest resident set seen, MiB.
    pub rss_peak_mib: f64,
}

/// User + system CPU ticks of `pid`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set of `pid`, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Adds one sample of each group's resident set (the sum over its processes) to `peak`.
fn sample_rss(procs: &[Watched], peak: &mut BTreeMap<&'static str, f64>) {
    let mut now: BTreeMap<&'static str, f64> = BTreeMap::new();
    for p in procs {
        let kib = rss_kib(p.pid).unwrap_or(0);
        *now.entry(p.group).or_default() += kib as f64 / 1024.0;
    }
    for (g, mib) in now {
        let e = peak.entry(g).or_default();
        *e = e.max(mib);
    }
}

/// Samples the watched processes from [`Sampler::start`] until [`Sampler::stop`].
#[derive(Debug)]
pub struct Sampler {
    procs: Vec<Watched>,
    started: Instant,
    ticks_at_start: Vec<Option<u64>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<&'static str, f64>>,
}

impl Sampler {
    /// Starts sampling every `every`.
    pub fn start(procs: &[Watched], every: Duration) -> Self {
        let procs = procs.to_vec();
        let ticks_at_start = procs.iter().map(|p| cpu_ticks(p.pid)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (procs, stop) = (procs.clone(), stop.clone());
            tokio::spawn(async move {
                let mut peak: BTreeMap<&'static str, f64> = BTreeMap::new();
                // Bounded by the scenario's own time limit: `stop` ends it.
                while !stop.load(Ordering::Relaxed) {
                    sample_rss(&procs, &mut peak);
                    tokio::time::sleep(every).await;
                }
                peak
            })
        };
        Self {
            procs,
            started: Instant::now(),
            ticks_at_start,
            stop,
            task,
        }
    }

    /// Stops sampling; each group's usage since the start.
    pub async fn stop(self) -> BTreeMap<&'static str, Usage> {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let mut usage: BTreeMap<&'static str, Usage> = BTreeMap::new();
        for (p, before) in self.procs.iter().zip(&self.ticks_at_start) {
            let used = match (before, cpu_ticks(p.pid)) {
                (Some(b), Some(a)) => a.saturating_sub(*b),
                _ => 0,
            };
            usage.entry(p.group).or_default().cpu_pct += 100.0 * used as f64 / TICKS_PER_SEC / secs;
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut peak) = self.task.await {
            sample_rss(&self.procs, &mut peak);
            for (g, mib) in peak {
                usage.entry(g).or_default().rss_peak_mib = mib;
            }
        }
        usage
    }
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The process ids in `DIR/node*.pid` (the layout of `scripts/kafka/cluster.sh`).
pub fn broker_pids(dir: &std::path::Path) -> std::io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("node")
            && name.ends_with(".pid")
            && let Ok(pid) = std::fs::read_to_string(&path)?.trim().parse()
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Waits (60 s at most) until the brokers, together, use less than half a core over a second:
/// right after the warm-up they are still replicating and flushing what it wrote, and the
/// first scenario would share the cores with that.
pub async fn settle(broker_pids: &[u32]) {
    if broker_pids.is_empty() {
        return;
    }
    let watched: Vec<Watched> = broker_pids
        .iter()
        .map(|&pid| Watched {
            group: "brokers",
            pid,
        })
        .collect();
    let started = Instant::now();
    let mut cpu = f64::NAN;
    while started.elapsed() < Duration::from_secs(60) {
        let sampler = Sampler::start(&watched, Duration::from_millis(250));
        tokio::time::sleep(Duration::from_secs(1)).await;
        cpu = sampler
            .stop()
            .await
            .get("brokers")
            .map_or(0.0, |u| u.cpu_pct);
        if cpu < 50.0 {
            break;
        }
    }
    eprintln!(
        "[{}] brokers at {cpu:.0} % CPU after {:.0} s of waiting for them to settle",
        chrono::Utc::now().format("%H:%M:%S"),
        started.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn measures_this_process() {
        let me = Watched {
            group: "bench",
            pid: std::process::id(),
        };
        let sampler = Sampler::start(&[me], Duration::from_millis(10));
        // Burn some CPU so there is something to count.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let usage = sampler.stop().await;
        let u = usage["bench"];
        assert!(u.cpu_pct > 10.0, "{u:?}");
        assert!(u.rss_peak_mib > 1.0, "{u:?}");
    }
}
