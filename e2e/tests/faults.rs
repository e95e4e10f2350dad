//! Zero loss under faults, on a cluster of its own (`COURIER_TEST_FAULT_KAFKA_DIR`) with the
//! proxy as a real process: every id answered 2xx must be read back from Kafka. The scenarios
//! share one cluster, so they run one at a time.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use courier_e2e::chaos::{FaultCluster, NetworkCut, ProxyProcess, load, run_load, settle};
use courier_e2e::unique;
use tokio::sync::Mutex;

/// One scenario at a time: they stop and kill the shared fault cluster's brokers.
static SERIAL: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_brokers_stopped_under_load_then_back_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = FaultCluster::from_env();
    let state = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(
        &cluster.bootstrap,
        state.path(),
        &[
            ("COURIER_DELIVERY__ACK_TIMEOUT_MS", "2000"),
            ("COURIER_DLQ__BACKOFF_INITIAL_MS", "500"),
            ("COURIER_DLQ__BACKOFF_FACTOR", "1.5"),
            ("COURIER_DLQ__MAX_ATTEMPTS", "50"),
        ],
    )
    .await;
    let service = unique("outage");
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&proxy.base, &format!("/{service}"), 50, &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in 1..=3 {
        cluster.signal(node, "STOP");
    }
    // Down for longer than the delivery deadline, the store's first retries and the
    // brokers' session timeouts: the cluster is gone for good as far as anyone can tell.
    tokio::time::sleep(Duration::from_secs(30)).await;
    for node in 1..=3 {
        cluster.signal(node, "CONT");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    assert!(
        !report.stored.is_empty(),
        "the outage must have sent events to the store"
    );

    let (left, lost) = settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &report,
        "whole cluster down 30 s",
        0.5,
    )
    .await;
    assert_eq!(left, (0, 0), "store drained after the brokers came back");
    assert_eq!(lost, 0);
}

/// A proxy with default settings on the fault cluster, under load from 3 s before `fault`
/// until 3 s after it returned (at most `secs`); then `after`, then the accounting. Returns
/// the store's (pending, parked) and the lost count.
async fn under_load<Fault, After>(
    prefix: &str,
    scenario: &str,
    secs: u64,
    fault: impl FnOnce(FaultCluster) -> Fault,
    after: impl FnOnce(FaultCluster) -> After,
) -> ((i64, i64), usize)
where
    Fault: Future<Output = ()>,
    After: Future<Output = ()>,
{
    let cluster = FaultCluster::from_env();
    let state = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(&cluster.bootstrap, state.path(), &[]).await;
    let service = unique(prefix);
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&proxy.base, &format!("/{service}"), secs, &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;
    fault(cluster.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    after(cluster.clone()).await;
    settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &report,
        scenario,
        0.5,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_broker_killed_under_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let (_, lost) = under_load(
        "brokerkill",
        "one broker killed",
        15,
        |cluster| async move {
            cluster.signal(2, "KILL");
            tokio::time::sleep(Duration::from_secs(5)).await;
        },
        |cluster| async move { cluster.start_node(2) },
    )
    .await;
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_killed_under_load_and_restarted_loses_nothing_answered() {
    let _serial = SERIAL.lock().await;
    let cluster = FaultCluster::from_env();
    let state = tempfile::tempdir().unwrap();
    // A short ack deadline keeps events flowing through the store too, so the kill lands
    // while some are stored and not yet redelivered.
    let env = [("COURIER_DELIVERY__ACK_TIMEOUT_MS", "20")];
    let mut proxy = ProxyProcess::start(&cluster.bootstrap, state.path(), &env).await;
    let service = unique("proxykill");
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&proxy.base, &format!("/{service}"), 8, &stop);
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.signal_and_wait("-9", Duration::from_secs(10));
    let report = running.await.unwrap();

    // Restarted on the same store: its scheduler resumes what was stored.
    let proxy = ProxyProcess::start(&cluster.bootstrap, state.path(), &[]).await;
    let (_, lost) = settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &report,
        "proxy kill -9",
        0.0,
    )
    .await;
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_exits_zero_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = FaultCluster::from_env();
    let state = tempfile::tempdir().unwrap();
    let mut proxy = ProxyProcess::start(&cluster.bootstrap, state.path(), &[]).await;
    let service = unique("sigterm");
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&proxy.base, &format!("/{service}"), 8, &stop);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = proxy.signal_and_wait("-TERM", Duration::from_secs(60));
    assert!(status.success(), "SIGTERM must end in exit 0, got {status}");
    let report = running.await.unwrap();
    let store = courier_proxy::store::Store::open(&proxy.dlq_url, 4)
        .await
        .unwrap();
    // Stored at shutdown: the next start delivers them.
    let _next = if store.counts().await.unwrap().0 > 0 {
        Some(ProxyProcess::start(&cluster.bootstrap, state.path(), &[]).await)
    } else {
        None
    };
    let (_, lost) = settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &report,
        "SIGTERM",
        0.0,
    )
    .await;
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_active_controller_killed_under_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    // Every node is broker and controller: the quorum leader leads partitions too.
    let leader = &std::sync::OnceLock::new();
    let (_, lost) = under_load(
        "ctrlkill",
        "active controller kill -9",
        20,
        |cluster| async move {
            let node = *leader.get_or_init(|| cluster.quorum_leader());
            cluster.signal(node, "KILL");
            tokio::time::sleep(Duration::from_secs(5)).await;
        },
        |cluster| async move { cluster.start_node(*leader.get().unwrap()) },
    )
    .await;
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_broker_under_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let (left, lost) = under_load(
        "frozen",
        "one broker SIGSTOP 12 s",
        25,
        // SIGSTOP: connections stay open and nothing answers — a hung broker, not a dead one.
        |cluster| async move {
            cluster.signal(1, "STOP");
            tokio::time::sleep(Duration::from_secs(12)).await;
            cluster.signal(1, "CONT");
        },
        |_| async {},
    )
    .await;
    assert_eq!(left, (0, 0), "store drained");
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_cut_off_the_network_under_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let (left, lost) = under_load(
        "netcut",
        "one broker cut off the network 12 s",
        25,
        // Broker 3 loses its client/replication and its controller traffic alike.
        |cluster| async move {
            let (client, controller) = cluster.ports(3);
            let _cut = NetworkCut::ports(&[client, controller]);
            tokio::time::sleep(Duration::from_secs(12)).await;
        },
        |_| async {},
    )
    .await;
    assert_eq!(left, (0, 0), "store drained");
    assert_eq!(lost, 0);
}

/// Two of three brokers frozen: below `min.insync.replicas`, with the third still answering
/// metadata. No acknowledgement can come, and after the first request finds that out, the
/// proxy stores at once instead of holding each request for the ack timeout: intake goes on
/// at the store's pace. Then the brokers come back and every 2xx is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_brokers_frozen_keep_intake_going_and_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = FaultCluster::from_env();
    let state = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(&cluster.bootstrap, state.path(), &[]).await;
    let service = unique("twofrozen");
    let source = format!("/{service}");
    // The topic exists before the fault: creating it needs the brokers.
    let warm = load(&proxy.base, &source, 2, &Arc::new(AtomicBool::new(false)))
        .await
        .unwrap();
    cluster.signal(1, "STOP");
    cluster.signal(2, "STOP");
    let frozen = load(&proxy.base, &source, 20, &Arc::new(AtomicBool::new(false)))
        .await
        .unwrap();
    cluster.signal(1, "CONT");
    cluster.signal(2, "CONT");
    let taken = frozen.accepted().len();
    eprintln!(
        "two brokers frozen 20 s: {taken} of {} events answered 2xx ({} stored)",
        frozen.sent,
        frozen.stored.len()
    );
    // Holding every request for the 5 s ack timeout, 4 workers of 50-event batches take
    // at most 800 events in 20 s; storing at once, many thousands.
    assert!(
        taken >= 2_500,
        "intake stalled while two brokers were frozen: {taken} events in 20 s"
    );
    let (_, lost) = settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &warm,
        "before two brokers froze",
        0.5,
    )
    .await;
    assert_eq!(lost, 0);
    let (left, lost) = settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &frozen,
        "two brokers frozen 20 s",
        0.5,
    )
    .await;
    assert_eq!(left, (0, 0), "store drained after the brokers came back");
    assert_eq!(lost, 0);
}

/// A topic is never created with fewer replicas than the cluster's default because a broker
/// is down: a fresh proxy that has only ever seen two of the three brokers creates a new
/// topic with three replicas (the cluster's `default.replication.factor`), not two; its
/// events are delivered (two in sync meet `min.insync.replicas`) or stored, and all of them
/// are read back once the third broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_topic_gets_all_its_replicas_while_a_broker_is_down() {
    let _serial = SERIAL.lock().await;
    let cluster = FaultCluster::from_env();
    let reader: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .create()
        .unwrap();
    let brokers = |topic: Option<&str>| {
        rdkafka::consumer::Consumer::fetch_metadata(&reader, topic, Duration::from_secs(10))
            .unwrap()
    };
    cluster.signal(3, "KILL");
    // Fenced once its session times out: from then on the cluster lists two brokers.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while brokers(None).brokers().len() > 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        brokers(None).brokers().len(),
        2,
        "the killed broker is fenced"
    );
    let state = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(&cluster.bootstrap, state.path(), &[]).await;
    let service = unique("replicas");
    let report = run_load(
        vec![proxy.base.clone()],
        format!("/{service}"),
        20,
        2,
        200,
        Duration::from_secs(60),
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    cluster.start_node(3);
    let (left, lost) = settle(
        &cluster.bootstrap,
        &proxy.dlq_url,
        &service,
        &report,
        "new topic while a broker is down",
        1.0,
    )
    .await;
    assert_eq!(left, (0, 0), "store drained once the broker was back");
    assert_eq!(lost, 0);
    let topic = format!("{service}.events");
    let metadata = brokers(Some(&topic));
    let partitions = metadata.topics()[0].partitions();
    assert!(!partitions.is_empty());
    for p in partitions {
        assert_eq!(p.replicas().len(), 3, "partition {} of {topic}", p.id());
    }
}
