//! Zero loss with Kafka in containers: a three-broker KRaft cluster (replication factor 3,
//! `min.insync.replicas` 2) from the locally built `courier-kafka` image on a container network
//! of its own, one per scenario, and the proxy under load — as a process on the host, or as
//! the `courier-proxy` image on the cluster's network. Every id answered 2xx must be read back
//! from Kafka, and most of what was sent must have been answered 2xx (a run in which nothing
//! was accepted proves nothing). Each scenario prints its accounting line. The last scenario
//! plays the Helm chart (`deploy/helm/courier`) with `podman kube play` on the cluster's
//! network: two proxy pods sharing PostgreSQL, one of them killed under load.
//!
//! Needs the `testcontainers` feature, a Docker API (`DOCKER_HOST`), the images and helm:
//! `scripts/test.sh` sets all up; by hand: `scripts/setup.sh --test`,
//! `scripts/images/build.sh kafka proxy consumer-main postgres`, `export DOCKER_HOST=$(scripts/containers/setup.sh
//! --socket | sed -n 's/^export DOCKER_HOST=//p')`, then
//! `cargo test -p courier-e2e --features testcontainers --test containers -- --nocapture`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use courier_e2e::chaos::{LoadReport, ProxyProcess, account, load, run_load, settle};
use courier_e2e::containers::{KafkaContainers, ProxyContainer};
use courier_e2e::fleet::KubePlayFleet;
use courier_e2e::unique;
use serde_json::json;
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
    assert_eq!(left, (0, 0), "{scenario}: the store did not drain");
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

/// The chart's one-host rendering played by Podman on the cluster's network: two proxy pods
/// (sharing the chart's PostgreSQL) take load from workers that move to the other proxy when
/// theirs stops answering; one pod is killed (SIGKILL, then removed, as with a lost node) while
/// it holds events in the shared store; the survivor alone then takes a second load. The
/// survivor's retry scheduler delivers what the dead one had claimed once the claims' lease
/// runs out; every id answered 2xx is then read back from Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_pod_of_the_kube_play_fleet_killed_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let scenario = "kube play fleet: two proxy pods sharing PostgreSQL, one killed";
    let cluster = KafkaContainers::start("fleet").await;
    let fleet = KubePlayFleet::start(
        &cluster,
        2,
        json!({"proxy": {"config": {
            // The load generator has no API key.
            "auth": {"enabled": false},
            // A short ack deadline sends part of the load through the shared store, so the
            // kill lands while the dead proxy holds stored events (and claims on them)...
            "delivery": {"ack_timeout_ms": 20},
            // ...which come free after the lease: 2 × 5 s + 5 s.
            "dlq": {"ack_timeout_ms": 5000},
        }}}),
    )
    .await;
    // The liveness probes, as Podman runs them (its health checks), and the security context
    // as it applied it.
    let consumer = fleet.container("consumer-main", "consumer");
    for container in [fleet.proxy_container(0), fleet.proxy_container(1), consumer] {
        fleet
            .health_check(&container)
            .await
            .unwrap_or_else(|e| panic!("{container}'s liveness probe: {e}"));
        let security = fleet.security(&container).await;
        assert_eq!(
            security, "user=65532:65532 readonly=true caps=[] opts=[no-new-privileges]",
            "{container}'s security context as Podman applied it"
        );
    }

    let [first, survivor] = [fleet.proxies[0].clone(), fleet.proxies[1].clone()];
    let service = unique("fleet");
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(run_load(
        vec![first.clone(), survivor.clone()],
        format!("/{service}"),
        50,
        4,
        200_000,
        Duration::from_secs(60),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (stored_before_kill, _) = fleet.store_counts(&first).await.unwrap_or((-1, -1));
    fleet.kill_proxy(0).await;
    eprintln!(
        "[fleet] killed pod {} (store pending just before: {stored_before_kill})",
        fleet.proxy_pod(0)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();

    // The survivor alone: every event answered 2xx.
    let after = run_load(
        vec![survivor.clone()],
        format!("/{service}-after"),
        50,
        2,
        1_000,
        Duration::from_secs(30),
        Arc::new(AtomicBool::new(false)),
    )
    .await;

    let left = fleet
        .wait_drained(&survivor, Duration::from_secs(120))
        .await;
    let (lost, duplicates) = account(
        scenario,
        &cluster.bootstrap,
        &format!("{service}.events"),
        &report,
        Duration::from_secs(120),
    )
    .await;
    let (lost_after, _) = account(
        "kube play fleet: the survivor alone",
        &cluster.bootstrap,
        &format!("{service}-after.events"),
        &after,
        Duration::from_secs(120),
    )
    .await;
    judge(scenario, &report, left, lost);
    assert!(
        report.accepted().len() >= 100,
        "{scenario}: too little accepted to prove anything"
    );
    assert!(
        duplicates <= 2 * report.stored.len(),
        "{scenario}: {duplicates} duplicates for {} stored events",
        report.stored.len()
    );
    assert_eq!(
        (after.refused, after.accepted().len()),
        (0, 1_000),
        "the survivor alone takes every event: {:?}",
        after.refusals
    );
    assert_eq!(lost_after, 0, "the survivor lost events answered 2xx");

    let kinds: Vec<String> = fleet
        .rendered_kinds
        .iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect();
    eprintln!(
        "[fleet] exercised by podman kube play: {} (the one-host rendering), the credentials \
         as an existing secret, the security context, the liveness probes run as Podman's \
         health checks, the proxies' /readyz on their host ports; only on a real cluster: \
         Service load balancing, HorizontalPodAutoscaler, PodDisruptionBudget, the chart's own \
         Secret, probes acted upon, the preStop sleep and grace period (Podman stops after 10 s)",
        kinds.join(", ")
    );
    eprintln!("[fleet] scenario took {:.0?}", started.elapsed());
}
