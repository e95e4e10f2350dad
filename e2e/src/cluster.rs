//! Which Kafka cluster the tests run against, chosen by `COURIER_TEST_KAFKA`:
//!
//! - `local` (the default): the local JVM KRaft brokers `scripts/test.sh` starts (three, or
//!   one with `COURIER_TEST_BROKERS=1`), handed over in `COURIER_TEST_BOOTSTRAP`;
//! - `external`: any running cluster named by `COURIER_TEST_BOOTSTRAP`;
//! - `mock`: librdkafka's in-process mock cluster (three brokers), started once per test
//!   binary — fast, no JVM, but it does not serve the proxy's topic administration like
//!   real brokers (events to auto-created topics are stored, not delivered), so most
//!   end-to-end tests need real brokers;
//! - `testcontainers`: three Kafka brokers in containers (replication factor 3,
//!   `min.insync.replicas` 2) on a container network of their own, started once per test
//!   binary from the locally built `courier-kafka` image (cargo feature `testcontainers`,
//!   needs a Docker API such as Podman's; see [`crate::containers`]).
//!
//! The fault tests always break a local cluster of their own (`COURIER_TEST_FAULT_KAFKA_DIR`).

use std::sync::OnceLock;

/// Environment variable choosing the cluster fixture.
pub const KAFKA_ENV: &str = "COURIER_TEST_KAFKA";

/// Environment variable holding the bootstrap address of a `local` or `external` cluster.
pub const BOOTSTRAP_ENV: &str = "COURIER_TEST_BOOTSTRAP";

/// The test cluster's bootstrap servers, starting the cluster first when the fixture is
/// in-process (`mock`) or a container (`testcontainers`). Panics with instructions when
/// nothing names a cluster.
pub fn bootstrap() -> String {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP
        .get_or_init(|| {
            let kind = std::env::var(KAFKA_ENV).unwrap_or_else(|_| "local".into());
            match kind.as_str() {
                "local" | "external" => from_env(),
                "mock" => keep_alive(start_mock),
                "testcontainers" => keep_alive(start_container),
                other => {
                    panic!("{KAFKA_ENV}={other}: expected local, external, mock or testcontainers")
                }
            }
        })
        .clone()
}

fn from_env() -> String {
    std::env::var(BOOTSTRAP_ENV).unwrap_or_else(|_| {
        panic!(
            "{BOOTSTRAP_ENV} is not set: run the suite with `scripts/test.sh`, which starts a \
             three-broker Kafka cluster, point {BOOTSTRAP_ENV} at a running cluster, or set \
             {KAFKA_ENV}=mock"
        )
    })
}

/// Runs `start` on a thread of its own that then keeps what it started alive for the rest
/// of the process (neither fixture may be dropped while tests run); its bootstrap address.
fn keep_alive(start: fn(std::sync::mpsc::Sender<String>)) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kafka-fixture".into())
        .spawn(move || start(tx))
        .expect("fixture thread");
    rx.recv_timeout(std::time::Duration::from_secs(300))
        .expect("the Kafka fixture did not start within 300 s")
}

fn start_mock(tx: std::sync::mpsc::Sender<String>) {
    let cluster = rdkafka::mocking::MockCluster::new(3).expect("librdkafka mock cluster");
    tx.send(cluster.bootstrap_servers())
        .expect("fixture handed over");
    loop {
        std::thread::park();
    }
}

#[cfg(feature = "testcontainers")]
fn start_container(tx: std::sync::mpsc::Sender<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let cluster = crate::containers::KafkaContainers::start("shared").await;
        cluster.remove_when_process_exits();
        tx.send(cluster.bootstrap.clone())
            .expect("fixture handed over");
        // Kept until the process ends; a watcher then removes the containers and network.
        std::future::pending::<()>().await;
    });
}

#[cfg(not(feature = "testcontainers"))]
fn start_container(_tx: std::sync::mpsc::Sender<String>) {
    panic!(
        "{KAFKA_ENV}=testcontainers needs the `testcontainers` feature: \
         cargo test -p courier-e2e --features testcontainers"
    );
}
