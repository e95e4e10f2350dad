//! Zero loss with Kafka in containers: a three-broker KRaft cluster (replication factor 3,
//! `min.insync.replicas` 2) from the locally built `courier-kafka` image on a container network
//! of its own, one per scenario, and the proxy under load — as a process on the host, or as
//! the `courier-proxy` image on the cluster's network. Every id answered 2xx must be read back
//! from Kafka, and most of what was sent must have been answered 2xx (a run in which nothing
//! was accepted proves nothing). Each scenario prints its accounting line.
//!
//! Needs the `testcontainers` feature, a Docker API (`DOCKER_HOST`) and the images:
//! `scripts/test.sh` sets all up; by hand: `scripts/setup.sh --containers`,
//! `scripts/images/build.sh kafka proxy`, `export DOCKER_HOST=$(scripts/containers/setup.sh
//! --socket | sed -n 's/^export DOCKER_HOST=//p')`, then
//! `cargo test -p courier-e2e --features testcontainers --test containers -- --nocapture`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use courier_e2e::chaos::{LoadReport, ProxyProcess, load, settle};
use courier_e2e::containers::{KafkaContainers, ProxyContainer};
use courier_e2e::unique;
use tokio::sync::Mutex;

/// One scenario at a time: each runs three JVM brokers, which is what a 2-core machine holds.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The share of sent events that must have been answered 2xx (checked by `settle`).
const MIN_ACCEPTED_SHARE: f64 = 0.8;
/// Events a scenario must at least have sent, so that it exercised something.
const MIN_SENT: usize = 500;

/// Asserts what every scenario promises: enough traffic, most of it accepted, nothing
/// accepted lost, the store drained. Prints the scenario's outcome first.
fn judge(scenario: &str, report: &LoadReport, left: (i64, i64), lost: usize) {
    let accepted = report.accepted().len();
    eprintln!(
        "[containers] {scenario}: sent {}, answered 2xx {accepted} ({} delivered, {} stored), \
         refused {} {:?}, read back {}, lost {lost}, left in store {left:?}",
        report.sent,
        report.delivered.len(),
        report.stored.len(),
        report.refused,
        report.refusals,
        accepted - lost,
    );
    assert!(
        report.sent >= MIN_SENT,
        "{scenario}: only {} events sent",
        report.sent
    );
    assert_eq!(
        lost, 0,
        "{scenario}: events answered 2xx are missing from Kafka"
    );
    assert_eq!(left, (0, 0), "{scenario}: the DLQ store did not drain");
}

/// A proxy process on the host against a fresh container cluster, under load from 3 s before
/// `fault` until 3 s after it returned (at most `secs`); then the accounting and the verdict.
async fn proxy_process_under_fault<Fault>(
    prefix: &str,
    scenario: &str,
    secs: u64,
    proxy_env: &[(&str, &str)],
    fault: impl FnOnce(Arc<KafkaContainers>) -> Fault,
) where
    Fault: Future<Output = ()>,
{
    let cluster = Arc::new(KafkaContainers::start(prefix).await);
    let state = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(&cluster.bootstrap, state.path(), proxy_env).await;
    let service = unique(prefix);
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&proxy.base, &format!("/{service}"), secs, &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;
    fault(cluster.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    let (left, lost) = settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &report,
        scenario,
        MIN_ACCEPTED_SHARE,
    )
    .await;
    judge(scenario, &report, left, lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_container_killed_and_restarted_loses_nothing() {
    let _serial = SERIAL.lock().await;
    proxy_process_under_fault(
        "kill",
        "container: one broker killed and restarted",
        120,
        &[],
        |cluster| async move {
            cluster.kill(2).await;
            tokio::time::sleep(Duration::from_secs(8)).await;
            cluster.restart(2).await;
            cluster.wait_in_sync(Duration::from_secs(180)).await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_container_paused_loses_nothing() {
    let _serial = SERIAL.lock().await;
    proxy_process_under_fault(
        "pause",
        "container: one broker paused 12 s",
        120,
        &[],
        // Paused: its connections stay open and nothing answers — a hung broker.
        |cluster| async move {
            cluster.pause(1).await;
            tokio::time::sleep(Duration::from_secs(12)).await;
            cluster.unpause(1).await;
            cluster.wait_in_sync(Duration::from_secs(180)).await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_container_cluster_stopped_and_started_loses_nothing() {
    let _serial = SERIAL.lock().await;
    proxy_process_under_fault(
        "outage",
        "container: whole cluster stopped 15 s and started",
        240,
        // Down for longer than the delivery deadline and the store's first retries; the
        // store keeps retrying until the cluster is back.
        &[
            ("COURIER_DELIVERY__ACK_TIMEOUT_MS", "2000"),
            ("COURIER_DLQ__BACKOFF_INITIAL_MS", "500"),
            ("COURIER_DLQ__BACKOFF_FACTOR", "1.5"),
            ("COURIER_DLQ__BACKOFF_MAX_MS", "5000"),
            ("COURIER_DLQ__MAX_ATTEMPTS", "100"),
        ],
        |cluster| async move {
            futures::future::join_all((1..=3).map(|n| cluster.stop(n))).await;
            tokio::time::sleep(Duration::from_secs(15)).await;
            futures::future::join_all((1..=3).map(|n| cluster.restart(n))).await;
            cluster.wait_in_sync(Duration::from_secs(240)).await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_as_a_container_on_the_cluster_network_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let scenario = "container: courier-proxy image on the cluster network, one broker killed";
    let cluster = KafkaContainers::start("proxy").await;
    let proxy = ProxyContainer::start(&cluster, &[]).await;
    let service = unique("ctproxy");
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&proxy.base, &format!("/{service}"), 120, &stop);
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.kill(3).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    cluster.restart(3).await;
    cluster.wait_in_sync(Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    let (left, lost) = settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &report,
        scenario,
        MIN_ACCEPTED_SHARE,
    )
    .await;
    judge(scenario, &report, left, lost);
    proxy.stop().await;
}
