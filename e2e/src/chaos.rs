//! Tools for fault tests: the proxy as a real process (so it can be killed), a bounded load
//! generator that records what each event was answered, the fault cluster's control script,
//! and the accounting by event id that every scenario ends with.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use crate::proxy_process::ProxyProcess;

/// Environment variable naming the directory of the cluster fault tests may break.
pub const FAULT_KAFKA_DIR_ENV: &str = "COURIER_TEST_FAULT_KAFKA_DIR";

/// The cluster that fault tests stop and kill (never the one other tests share).
#[derive(Debug, Clone)]
pub struct FaultCluster {
    dir: PathBuf,
    /// Its bootstrap servers.
    pub bootstrap: String,
}

impl FaultCluster {
    /// The cluster named by `COURIER_TEST_FAULT_KAFKA_DIR`.
    pub fn from_env() -> Self {
        let dir = PathBuf::from(std::env::var(FAULT_KAFKA_DIR_ENV).unwrap_or_else(|_| {
            panic!(
                "{FAULT_KAFKA_DIR_ENV} is not set: run the suite with scripts/test.sh, which \
                 starts a separate three-broker cluster for fault tests"
            )
        }));
        let bootstrap = std::fs::read_to_string(dir.join("bootstrap"))
            .expect("bootstrap file of the fault cluster")
            .trim()
            .to_owned();
        Self { dir, bootstrap }
    }

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka/cluster.sh")
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to broker `node` (1-based).
    pub fn signal(&self, node: u8, signal: &str) {
        self.run(&["kill-node", "--node", &node.to_string(), "--signal", signal]);
    }

    /// Starts broker `node` again and waits (up to 180 s: a restarted controller replays
    /// the metadata log, slow on a loaded machine) until it is up.
    pub fn start_node(&self, node: u8) {
        self.run(&[
            "start-node",
            "--node",
            &node.to_string(),
            "--timeout",
            "180",
        ]);
    }

    /// The client and controller ports of broker `node` (1-based).
    pub fn ports(&self, node: u8) -> (u16, u16) {
        let conf = std::fs::read_to_string(self.dir.join("cluster.conf")).expect("cluster.conf");
        let list = |key: &str| -> Vec<u16> {
            conf.lines()
                .find_map(|l| l.strip_prefix(key))
                .expect("ports in cluster.conf")
                .replace('\\', "")
                .split_whitespace()
                .map(|p| p.parse().expect("a port"))
                .collect()
        };
        let i = usize::from(node) - 1;
        (list("CLIENT_PORTS=")[i], list("CONTROLLER_PORTS=")[i])
    }

    /// The node that leads the metadata quorum (the active controller).
    pub fn quorum_leader(&self) -> u8 {
        let dir = self.dir.display().to_string();
        let out = Command::new(Self::script())
            .args(["run-class", "--dir", &dir])
            .args([
                "org.apache.kafka.tools.MetadataQuorumCommand",
                "--bootstrap-server",
            ])
            .args([&self.bootstrap, "describe", "--status"])
            .stderr(Stdio::null())
            .output()
            .expect("run cluster.sh");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("LeaderId:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no LeaderId in the quorum status: {text}"))
    }

    fn run(&self, args: &[&str]) {
        let dir = self.dir.display().to_string();
        let mut full = vec![args[0], "--dir", &dir];
        full.extend_from_slice(&args[1..]);
        let status = Command::new(Self::script())
            .args(&full)
            .stdout(Stdio::null())
            .status()
            .expect("run cluster.sh");
        assert!(status.success(), "cluster.sh {full:?} failed");
    }
}

/// A network cut on loopback: packets to and from some local TCP ports are dropped
/// (`iptables` rules on `lo` only, tagged so that exactly these are removed when the value
/// is dropped). The host's other interfaces are never touched.
#[derive(Debug)]
pub struct NetworkCut {
    rules: Vec<Vec<String>>,
}

impl NetworkCut {
    /// Drops every packet to or from `ports` on loopback until dropped. Needs root and
    /// `iptables` (installed by `scripts/setup.sh`).
    pub fn ports(ports: &[u16]) -> Self {
        let tag = crate::unique("courier-test-cut-");
        let mut cut = Self { rules: Vec::new() };
        for port in ports {
            for (chain, dir, flag) in [("INPUT", "-i", "--dport"), ("INPUT", "-i", "--sport")] {
                let rule: Vec<String> = [
                    chain,
                    dir,
                    "lo",
                    "-p",
                    "tcp",
                    flag,
                    &port.to_string(),
                    "-m",
                    "comment",
                    "--comment",
                    &tag,
                    "-j",
                    "DROP",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                let status = Command::new("iptables")
                    .arg("-I")
                    .args(&rule)
                    .status()
                    .expect("iptables (installed by scripts/setup.sh; needs root)");
                assert!(status.success(), "iptables -I {rule:?} failed");
                cut.rules.push(rule);
            }
        }
        cut
    }
}

impl Drop for NetworkCut {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(rule).status();
        }
    }
}

/// A binary of the workspace built beside the test binary (`courier-proxy`,
/// `courier-consumer-main`, `courier-consumer-es`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (scripts/test.sh does, via cargo test --workspace)",
        bin.display()
    );
    bin
}

/// Sends `signal` (`-9`, `-TERM`) to `child` and waits (bounded by `within`) for it to exit.
pub fn signal_and_wait(
    child: &mut Child,
    what: &str,
    signal: &str,
    within: Duration,
) -> ExitStatus {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args([signal, &pid]).status();
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {within:?} of {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the load generator saw, by event id.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Events sent.
    pub sent: usize,
    /// Ids answered 200 (in Kafka).
    pub delivered: HashSet<String>,
    /// Ids answered 202 (in the store).
    pub stored: HashSet<String>,
    /// Events refused (4xx/5xx) or without an answer: never promised.
    pub refused: usize,
    /// Why, by answer (`HTTP 503`, `no answer: …`, `per event: …`), in events.
    pub refusals: std::collections::BTreeMap<String, usize>,
}

impl LoadReport {
    fn refuse(&mut self, reason: String, events: usize) {
        self.refused += events;
        *self.refusals.entry(reason).or_default() += events;
    }
}

impl LoadReport {
    /// Every id answered 2xx.
    pub fn accepted(&self) -> HashSet<String> {
        self.delivered.union(&self.stored).cloned().collect()
    }
}

/// Sends batches of `batch` events from `source` to `bases` until `stop` is set, `max_events`
/// were sent or `max_time` passed; `concurrency` requests at a time, worker `w` starting on
/// `bases[w % len]` and moving to the next base when its own does not answer (as a load
/// balancer or the courier-client would). Every id is unique.
pub async fn run_load(
    bases: Vec<String>,
    source: String,
    batch: usize,
    concurrency: usize,
    max_events: usize,
    max_time: Duration,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let deadline = Instant::now() + max_time;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (client, source, next, stop) =
            (client.clone(), source.clone(), next.clone(), stop.clone());
        let bases = bases.clone();
        workers.spawn(async move {
            let mut base = w % bases.len();
            let mut report = LoadReport::default();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= max_events {
                    break;
                }
                let ids: Vec<String> = (start..(start + batch).min(max_events))
                    .map(|i| format!("{source}-{i}"))
                    .collect();
                let events: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"specversion": "1.0", "id": id, "source": source, "type": "chaos", "data": {"id": id}}))
                    .collect();
                report.sent += ids.len();
                let answer = client
                    .post(format!("{}/v1/events", bases[base]))
                    .header("content-type", "application/cloudevents-batch+json")
                    .json(&events)
                    .send()
                    .await;
                let resp = match answer {
                    Ok(resp) => resp,
                    Err(e) => {
                        let kind = if e.is_timeout() { "timeout" } else if e.is_connect() { "connect" } else { "other" };
                        report.refuse(format!("no answer: {kind}"), ids.len());
                        base = (base + 1) % bases.len();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let results = body["results"].as_array().cloned().unwrap_or_default();
                if results.len() != ids.len() {
                    report.refuse(format!("HTTP {}", status.as_u16()), ids.len());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                for (id, r) in ids.into_iter().zip(results) {
                    match r["status"].as_str() {
                        Some("delivered") => {
                            report.delivered.insert(id);
                        }
                        Some("stored") => {
                            report.stored.insert(id);
                        }
                        other => report.refuse(format!("per event: {}", other.unwrap_or("?")), 1),
                    }
                }
            }
            report
        });
    }
    let mut total = LoadReport::default();
    while let Some(done) = workers.join_next().await {
        let r = done.expect("load worker");
        total.sent += r.sent;
        total.refused += r.refused;
        for (reason, n) in r.refusals {
            *total.refusals.entry(reason).or_default() += n;
        }
        total.delivered.extend(r.delivered);
        total.stored.extend(r.stored);
    }
    total
}

/// Reads `topic` and counts, for the accepted ids, which are there and how often; returns the
/// lost count and the duplicates among the accepted ids.
pub async fn account(
    scenario: &str,
    bootstrap: &str,
    topic: &str,
    report: &LoadReport,
    within: Duration,
) -> (usize, usize) {
    let accepted = report.accepted();
    let consumer: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("chaos-reader-"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    rdkafka::consumer::Consumer::subscribe(&consumer, &[topic]).expect("subscribe");
    let mut counts: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + within;
    while accepted.iter().any(|id| !counts.contains_key(id)) && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            let m = m.detach();
            if let Some(id) = crate::header(&m, "ce_id") {
                *counts.entry(id).or_default() += 1;
            }
        }
    }
    let lost = accepted
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .count();
    // Of this load's events only: the topic may hold another load's too.
    let duplicates: usize = accepted
        .iter()
        .filter_map(|id| counts.get(id))
        .map(|n| n - 1)
        .sum();
    println!(
        "{scenario}: sent {}, 2xx {}, stored {}, delivered {}, lost {lost}, duplicates {duplicates}",
        report.sent,
        accepted.len(),
        report.stored.len(),
        accepted.len() - lost,
    );
    (lost, duplicates)
}

/// Load on `base` for `secs` seconds at most (or until `stop`), in batches of 50 events from 4
/// workers, every id unique under `source`.
pub fn load(
    base: &str,
    source: &str,
    secs: u64,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<LoadReport> {
    tokio::spawn(run_load(
        vec![base.to_owned()],
        source.to_owned(),
        50,
        4,
        200_000,
        Duration::from_secs(secs),
        stop.clone(),
    ))
}

/// Waits (at most 120 s) for the store at `dlq_url` to drain, then accounts for every 2xx
/// id of the scenario in `{service}.events` on `bootstrap`; returns the store's (pending,
/// parked) and the lost count. A scenario also asserts that it did something: at least
/// `min_share` of the events sent were answered 2xx (0 where the proxy itself goes away,
/// which refuses everything after), never fewer than 100, and duplicates stay within two per
/// stored event (an event stored after a late acknowledgement, and one redelivered again
/// after a lost lease).
pub async fn settle(
    bootstrap: &str,
    dlq_url: &str,
    service: &str,
    report: &LoadReport,
    scenario: &str,
    min_share: f64,
) -> ((i64, i64), usize) {
    let store = courier_proxy::store::Store::open(dlq_url, 4)
        .await
        .expect("open the proxy's store");
    let left = wait_drained(&store, Duration::from_secs(120)).await;
    let topic = format!("{service}.events");
    let (lost, duplicates) = account(
        scenario,
        bootstrap,
        &topic,
        report,
        Duration::from_secs(120),
    )
    .await;
    let accepted = report.accepted().len();
    assert!(
        accepted >= 100 && accepted as f64 >= min_share * report.sent as f64,
        "{scenario}: only {accepted} of {} events answered 2xx (refusals: {:?})",
        report.sent,
        report.refusals
    );
    assert!(
        duplicates <= 2 * report.stored.len(),
        "{scenario}: {duplicates} duplicates for {} stored events",
        report.stored.len()
    );
    (left, lost)
}

/// Waits (at most `within`) until `store` holds no pending event; returns (pending, parked).
pub async fn wait_drained(store: &courier_proxy::store::Store, within: Duration) -> (i64, i64) {
    let deadline = Instant::now() + within;
    loop {
        let counts = store.counts().await.expect("store counts");
        if counts.0 == 0 || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
