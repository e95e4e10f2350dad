//! Kafka and the proxy in containers (cargo feature `testcontainers`): a three-broker KRaft
//! cluster (replication factor 3, `min.insync.replicas` 2) on a container network of its own,
//! started from the locally built `courier-kafka` image (`scripts/images/build.sh`), and the
//! `courier-proxy` image on the same network. Needs a Docker API (`DOCKER_HOST`; Podman's,
//! started by `scripts/containers/setup.sh --socket`).
//!
//! Each broker has two client listeners: `EXTERNAL` on a loopback port of the host that the
//! test picked and pinned (Podman reports published ports without a host address, so
//! testcontainers cannot look them up), advertised as `127.0.0.1:PORT` to clients on the
//! host; and `INTERNAL` on the container network, advertised by container name, for the
//! other brokers and for containers such as the proxy. The controllers talk on the network.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use testcontainers_modules::testcontainers::core::{ContainerPort, Mount};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::proxy_process::free_port;

/// Environment variable naming the Kafka image (default [`DEFAULT_KAFKA_IMAGE`]).
pub const KAFKA_IMAGE_ENV: &str = "COURIER_TEST_KAFKA_IMAGE";
/// The image `scripts/images/build.sh kafka` builds.
pub const DEFAULT_KAFKA_IMAGE: &str = "localhost/courier-kafka:4.1.1";
/// Environment variable naming the proxy image (default [`DEFAULT_PROXY_IMAGE`]).
pub const PROXY_IMAGE_ENV: &str = "COURIER_TEST_PROXY_IMAGE";
/// The image `scripts/images/build.sh proxy` builds (tagged `dev` beside its version).
pub const DEFAULT_PROXY_IMAGE: &str = "localhost/courier-proxy:dev";

/// Environment variable with the prefix of every container and network name (default
/// `courier-ct`); `scripts/test.sh` sets one per run and removes what is left under it.
pub const NAME_PREFIX_ENV: &str = "COURIER_TEST_CONTAINER_PREFIX";

/// Brokers in the cluster.
pub const BROKERS: usize = 3;
const EXTERNAL_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
const INTERNAL_PORT: u16 = 19092;
const PROBE_TOPIC: &str = "__courier_ready";

/// `name:tag` split for testcontainers; panics on a reference without a tag.
fn image(reference: &str) -> GenericImage {
    let (name, tag) = reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .unwrap_or_else(|| panic!("image reference {reference} has no tag"));
    GenericImage::new(name, tag)
}

fn image_from_env(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Panics with instructions unless a Docker API is configured: a missing engine is a failure,
/// not a skipped test.
fn require_engine() {
    let socket = std::env::var("DOCKER_HOST").unwrap_or_default();
    let path = socket
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock");
    assert!(
        !socket.is_empty() || std::path::Path::new(path).exists(),
        "no container engine: set DOCKER_HOST=unix:///run/podman/podman.sock after \
         `scripts/containers/setup.sh --socket` (scripts/test.sh does both)"
    );
}

/// A Kafka cluster id (16 random bytes, URL-safe base64 without padding, as
/// `kafka-storage random-uuid` prints them).
fn cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = String::new();
    for b in bytes {
        bits = (bits << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    // Kafka refuses ids that start with '-'.
    if out.starts_with('-') {
        out.replace_range(0..1, "A");
    }
    out
}

/// Three Kafka brokers in containers on a network of their own; removed when dropped.
pub struct KafkaContainers {
    brokers: Vec<ContainerAsync<GenericImage>>,
    /// The container network's name.
    pub network: String,
    /// Bootstrap servers for clients on the host: `127.0.0.1:PORT,…`.
    pub bootstrap: String,
    /// Bootstrap servers for containers on [`Self::network`]: `NAME:19092,…`.
    pub internal_bootstrap: String,
}

impl std::fmt::Debug for KafkaContainers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaContainers")
            .field("network", &self.network)
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl KafkaContainers {
    /// Starts the three brokers (image from `COURIER_TEST_KAFKA_IMAGE`) on a new network
    /// named after `prefix` (under `COURIER_TEST_CONTAINER_PREFIX`), and waits (up to 240 s)
    /// until a probe topic with replication factor 3 has all three replicas in sync. Panics
    /// when that fails.
    pub async fn start(prefix: &str) -> Self {
        require_engine();
        let reference = image_from_env(KAFKA_IMAGE_ENV, DEFAULT_KAFKA_IMAGE);
        let run = std::env::var(NAME_PREFIX_ENV).unwrap_or_else(|_| "courier-ct".into());
        let prefix = crate::unique(&format!("{run}-{prefix}-"));
        let network = format!("{prefix}-net");
        let names: Vec<String> = (1..=BROKERS)
            .map(|i| format!("{prefix}-kafka-{i}"))
            .collect();
        let ports: Vec<u16> = (0..BROKERS)
            .map(|_| free_port().expect("a free loopback port"))
            .collect();
        let voters = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{}@{n}:{CONTROLLER_PORT}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let id = cluster_id();
        let mut starting = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let env = broker_env(i + 1, name, ports[i], &voters, &id);
            let mut request = image(&reference)
                .with_network(network.clone())
                .with_container_name(name.clone())
                .with_hostname(name.clone())
                .with_mapped_port(ports[i], ContainerPort::Tcp(EXTERNAL_PORT))
                .with_startup_timeout(Duration::from_secs(120));
            for (key, value) in env {
                request = request.with_env_var(key, value);
            }
            // All at once: a broker of a three-voter quorum waits for the others.
            starting.push(tokio::spawn(async move { request.start().await }));
        }
        let mut brokers = Vec::new();
        for (i, start) in starting.into_iter().enumerate() {
            let container = start.await.expect("start task").unwrap_or_else(|e| {
                panic!(
                    "broker {} from {reference} did not start: {e} (build the image with \
                     scripts/images/build.sh kafka; is the Docker API at DOCKER_HOST up?)",
                    i + 1
                )
            });
            brokers.push(container);
        }
        let cluster = Self {
            brokers,
            network,
            bootstrap: ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
            internal_bootstrap: names
                .iter()
                .map(|n| format!("{n}:{INTERNAL_PORT}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        cluster.wait_in_sync(Duration::from_secs(240)).await;
        cluster
    }

    /// For a cluster kept for the whole test process (never dropped, so never removed by
    /// testcontainers): a detached watcher removes the brokers and the network through the
    /// Docker API's unix socket once this process has exited.
    pub fn remove_when_process_exits(&self) {
        let socket = std::env::var("DOCKER_HOST").unwrap_or_default();
        let Some(socket) = socket.strip_prefix("unix://") else {
            eprintln!("DOCKER_HOST is not a unix socket: the containers outlive the tests");
            return;
        };
        let script = r#"sock=$1 net=$2; shift 2
            while kill -0 "$0" 2>/dev/null; do sleep 2; done
            for id in "$@"; do
              curl -s -o /dev/null -X DELETE --unix-socket "$sock" "http://d/containers/$id?force=true&v=true"
            done
            curl -s -o /dev/null -X DELETE --unix-socket "$sock" "http://d/networks/$net""#;
        let spawned = std::process::Command::new("sh")
            .args(["-c", script, &std::process::id().to_string(), socket])
            .arg(&self.network)
            .args(self.brokers.iter().map(|b| b.id().to_owned()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("no watcher for the Kafka containers ({e}): they outlive the tests");
        }
    }

    fn broker(&self, node: usize) -> &ContainerAsync<GenericImage> {
        assert!((1..=BROKERS).contains(&node), "no broker {node}");
        &self.brokers[node - 1]
    }

    /// Kills broker `node` (1-based): SIGKILL, no clean shutdown.
    pub async fn kill(&self, node: usize) {
        self.broker(node)
            .stop_with_timeout(Some(0))
            .await
            .unwrap_or_else(|e| panic!("killing broker {node}: {e}"));
    }

    /// Stops broker `node` cleanly (SIGTERM, SIGKILL after 30 s).
    pub async fn stop(&self, node: usize) {
        self.broker(node)
            .stop_with_timeout(Some(30))
            .await
            .unwrap_or_else(|e| panic!("stopping broker {node}: {e}"));
    }

    /// Starts a stopped or killed broker `node` again, with its data.
    pub async fn restart(&self, node: usize) {
        self.broker(node)
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting broker {node} again: {e}"));
    }

    /// Freezes broker `node` (its processes stop; its ports stay open and answer nothing).
    pub async fn pause(&self, node: usize) {
        self.broker(node)
            .pause()
            .await
            .unwrap_or_else(|e| panic!("pausing broker {node}: {e}"));
    }

    /// Thaws a paused broker `node`.
    pub async fn unpause(&self, node: usize) {
        self.broker(node)
            .unpause()
            .await
            .unwrap_or_else(|e| panic!("unpausing broker {node}: {e}"));
    }

    /// Waits until all three brokers are registered and a replication-factor-3 probe topic
    /// has all three replicas in its ISR; panics after `within`.
    pub async fn wait_in_sync(&self, within: Duration) {
        let bootstrap = self.bootstrap.clone();
        let deadline = Instant::now() + within;
        let mut last = String::from("not checked yet");
        while Instant::now() < deadline {
            match in_sync(&bootstrap).await {
                Ok(()) => return,
                Err(why) => last = why,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("the container cluster at {bootstrap} was not in sync within {within:?}: {last}");
    }
}

/// The environment of broker `node`: KRaft combined mode, the two client listeners, and the
/// zero-loss settings of `scripts/kafka/cluster.sh`'s three-broker clusters.
fn broker_env(
    node: usize,
    name: &str,
    host_port: u16,
    voters: &str,
    cluster_id: &str,
) -> Vec<(String, String)> {
    let settings = [
        ("NODE_ID", node.to_string()),
        ("PROCESS_ROLES", "broker,controller".into()),
        ("CONTROLLER_QUORUM_VOTERS", voters.into()),
        (
            "LISTENERS",
            format!(
                "EXTERNAL://0.0.0.0:{EXTERNAL_PORT},INTERNAL://0.0.0.0:{INTERNAL_PORT},\
                 CONTROLLER://0.0.0.0:{CONTROLLER_PORT}"
            ),
        ),
        (
            "ADVERTISED_LISTENERS",
            format!("EXTERNAL://127.0.0.1:{host_port},INTERNAL://{name}:{INTERNAL_PORT}"),
        ),
        (
            "LISTENER_SECURITY_PROTOCOL_MAP",
            "EXTERNAL:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
        ),
        ("INTER_BROKER_LISTENER_NAME", "INTERNAL".into()),
        ("CONTROLLER_LISTENER_NAMES", "CONTROLLER".into()),
        ("NUM_PARTITIONS", "3".into()),
        ("DEFAULT_REPLICATION_FACTOR", "3".into()),
        ("MIN_INSYNC_REPLICAS", "2".into()),
        ("OFFSETS_TOPIC_REPLICATION_FACTOR", "3".into()),
        ("OFFSETS_TOPIC_NUM_PARTITIONS", "5".into()),
        ("TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3".into()),
        ("TRANSACTION_STATE_LOG_MIN_ISR", "2".into()),
        ("TRANSACTION_STATE_LOG_NUM_PARTITIONS", "5".into()),
        (
            "SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
            "3".into(),
        ),
        ("SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "2".into()),
        ("SHARE_COORDINATOR_STATE_TOPIC_NUM_PARTITIONS", "5".into()),
        ("GROUP_INITIAL_REBALANCE_DELAY_MS", "0".into()),
        // Tests create their topics; a typo must not create one.
        ("AUTO_CREATE_TOPICS_ENABLE", "false".into()),
        ("NUM_NETWORK_THREADS", "2".into()),
        ("NUM_IO_THREADS", "4".into()),
    ];
    let mut env: Vec<(String, String)> = settings
        .into_iter()
        .map(|(k, v)| (format!("KAFKA_CFG_{k}"), v))
        .collect();
    env.push(("KAFKA_CLUSTER_ID".into(), cluster_id.into()));
    env
}

/// One readiness check: the probe topic exists with replication factor 3 (made if missing)
/// and every partition has three in-sync replicas, seen by a client on the host.
async fn in_sync(bootstrap: &str) -> Result<(), String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "5000");
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| e.to_string())?;
    let topic = NewTopic::new(PROBE_TOPIC, 1, TopicReplication::Fixed(3));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match tokio::time::timeout(
        Duration::from_secs(15),
        admin.create_topics([&topic], &options),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("create {PROBE_TOPIC}: {e}")),
        Err(_) => return Err(format!("create {PROBE_TOPIC}: no answer in 15 s")),
    }
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
        let metadata = consumer
            .fetch_metadata(Some(PROBE_TOPIC), Duration::from_secs(5))
            .map_err(|e| format!("metadata from {bootstrap}: {e}"))?;
        if metadata.brokers().len() != BROKERS {
            return Err(format!("{} brokers registered", metadata.brokers().len()));
        }
        let topic = metadata
            .topics()
            .first()
            .ok_or_else(|| "no probe topic in the metadata".to_owned())?;
        let partitions = topic.partitions();
        if partitions.is_empty() || partitions.iter().any(|p| p.isr().len() != BROKERS) {
            return Err(format!(
                "ISR of {PROBE_TOPIC}: {:?}",
                partitions.iter().map(|p| p.isr().len()).collect::<Vec<_>>()
            ));
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The `courier-proxy` image running on a cluster's network, its HTTP port pinned to a
/// loopback port of the host, its store in a host directory (so a test can open it).
pub struct ProxyContainer {
    container: ContainerAsync<GenericImage>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The store's URL as seen from the host.
    pub dlq_url: String,
    _state: tempfile::TempDir,
}

impl std::fmt::Debug for ProxyContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyContainer")
            .field("id", &self.container.id())
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ProxyContainer {
    /// Starts the proxy image (`COURIER_TEST_PROXY_IMAGE`) on `cluster`'s network with the
    /// `COURIER_*` settings in `env` (authentication off unless `env` turns it on), and waits
    /// (up to 60 s) until it answers `/readyz`.
    pub async fn start(cluster: &KafkaContainers, env: &[(&str, &str)]) -> Self {
        let reference = image_from_env(PROXY_IMAGE_ENV, DEFAULT_PROXY_IMAGE);
        let state = tempfile::tempdir().expect("temp dir");
        // The image runs as the unprivileged user courier; the directory is the test's own.
        std::fs::set_permissions(
            state.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod the proxy's state directory");
        let port = free_port().expect("a free loopback port");
        let mut request = image(&reference)
            .with_network(cluster.network.clone())
            .with_container_name(format!("{}-proxy", cluster.network))
            .with_mapped_port(port, ContainerPort::Tcp(8080))
            .with_mount(Mount::bind_mount(
                state.path().display().to_string(),
                "/var/lib/courier",
            ))
            .with_env_var(
                "COURIER_KAFKA__BOOTSTRAP_SERVERS",
                cluster.internal_bootstrap.clone(),
            )
            .with_env_var("COURIER_AUTH__ENABLED", "false")
            .with_env_var("RUST_LOG", "info")
            .with_startup_timeout(Duration::from_secs(60));
        for (key, value) in env {
            request = request.with_env_var(*key, *value);
        }
        let container = request.start().await.unwrap_or_else(|e| {
            panic!(
                "proxy container from {reference} did not start: {e} (build it with \
                 scripts/images/build.sh proxy)"
            )
        });
        let proxy = Self {
            container,
            base: format!("http://127.0.0.1:{port}"),
            dlq_url: format!("sqlite:{}", state.path().join("dlq.db").display()),
            _state: state,
        };
        proxy.wait_ready(Duration::from_secs(60)).await;
        proxy
    }

    async fn wait_ready(&self, within: Duration) {
        let http = crate::http();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut logs = self.container.stdout_to_vec().await.unwrap_or_default();
        logs.extend(self.container.stderr_to_vec().await.unwrap_or_default());
        let logs = String::from_utf8_lossy(&logs);
        let tail: Vec<&str> = logs.lines().rev().take(20).collect();
        panic!(
            "proxy container at {} not ready within {within:?}; its last log lines (newest first):\n{}",
            self.base,
            tail.join("\n")
        );
    }

    /// Stops the proxy with SIGTERM (its shutdown drains and stores what is left) and waits
    /// for it to exit, up to 60 s.
    pub async fn stop(&self) {
        self.container
            .stop_with_timeout(Some(60))
            .await
            .expect("stopping the proxy container");
    }
}
