//! Fixtures for Courier's end-to-end tests and benchmarks.
//!
//! The Kafka cluster is started once per test run by `scripts/test.sh` (three replicated
//! brokers on free loopback ports) and handed over through `COURIER_TEST_BOOTSTRAP`; other
//! fixtures (librdkafka's mock cluster, a container, an external cluster) are chosen with
//! `COURIER_TEST_KAFKA` (see [`cluster`]). Each test starts its own proxy in-process on an ephemeral
//! port and uses unique service names, so tests run in parallel without sharing topics.

pub mod bench_dlq;
pub mod bench_goals;
pub mod bench_http;
pub mod bench_measure;
pub mod bench_plans;
pub mod bench_procs;
pub mod bench_produce;
pub mod bench_report;
pub mod bench_sinks;
pub mod bench_targets;
pub mod bench_wrk;
pub mod chaos;
pub mod cluster;
#[cfg(feature = "testcontainers")]
pub mod containers;
#[cfg(feature = "testcontainers")]
pub mod fleet;
pub mod proxy_process;
pub mod sinks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use courier_proxy::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cluster::{BOOTSTRAP_ENV, bootstrap};

/// An HTTP client for tests: 30 s per request, so a hung proxy fails the test instead of
/// hanging it.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A name no other test (or earlier run against the same cluster) uses.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}{}", &id[id.len() - 10..])
}

/// A request to `proxy`'s admin API with bearer `token` as operator `alice`; the status and
/// the JSON body (`null` when the body is not JSON).
pub async fn admin_call(
    proxy: &TestProxy,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = http()
        .request(method, proxy.url(path))
        .bearer_auth(token)
        .header("x-courier-actor", "alice");
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// A proxy running in-process on an ephemeral loopback port.
#[derive(Debug)]
pub struct TestProxy {
    /// Its address.
    pub addr: SocketAddr,
    /// Its configuration (the store is a SQLite file of its own).
    pub config: Config,
    _dlq_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), courier_proxy::server::ServerError>>,
}

impl TestProxy {
    /// Starts a proxy against the test cluster, after `tweak` adjusted its configuration.
    /// Authentication is off, explicitly, for the tests that are about something else;
    /// `tests/auth.rs` turns it on with `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dlq_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.auth.enabled = false;
        config.kafka.bootstrap_servers = bootstrap();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.dlq.url = format!("sqlite:{}", dlq_dir.path().join("dlq.db").display());
        tweak(&mut config);
        config.validate().expect("test configuration is valid");
        let listener = courier_proxy::server::bind(config.listen, config.limits.listen_backlog)
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(courier_proxy::run(
            config.clone(),
            listener,
            shutdown.clone(),
        ));
        Self {
            addr,
            config,
            _dlq_dir: dlq_dir,
            shutdown,
            task,
        }
    }

    /// Waits (at most 30 s) until the proxy serves `/healthz`: its store is open and
    /// migrated. Panics when it does not.
    pub async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let up = http()
                .get(self.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the proxy on {} did not serve within 30 s", self.addr);
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A POST of `body` to `path`: a JSON array as a CloudEvents batch, anything else as one
    /// structured event (for a request that needs more, such as an API key).
    pub fn publish_request(&self, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        let content_type = match body.is_array() {
            true => "application/cloudevents-batch+json",
            false => "application/cloudevents+json",
        };
        http()
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body.to_string())
    }

    /// Sends [`Self::publish_request`]; returns the status and the JSON answer (`null` when
    /// it is not JSON).
    pub async fn publish(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .publish_request(path, body)
            .send()
            .await
            .expect("the proxy answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// [`Self::publish`], again while the topic is not known yet (404), for at most 30 s;
    /// the last answer. A topic just created may not be in the metadata of the broker the
    /// proxy asks yet: brokers learn of a new topic one after the other.
    pub async fn publish_once_known(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.publish(path, body).await;
            if answer.0 != 404 || Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The proxy's store, opened beside it.
    pub async fn dlq(&self) -> courier_proxy::store::Store {
        courier_proxy::store::Store::open(&self.config.dlq.url, 16)
            .await
            .expect("open the proxy's store")
    }

    /// Shuts the proxy down gracefully and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("proxy task panicked")
            .expect("proxy stopped with an error");
    }
}

/// A loopback address where no Kafka listens (a port just bound and let go): a proxy
/// pointed at it sees Kafka down from the start.
pub fn unreachable_kafka() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .to_string()
}

/// A CloudEvent as JSON.
pub fn event_json(id: &str, source: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut e = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": "test.event",
        "data": {"id": id, "n": 1},
    });
    if let (Some(obj), serde_json::Value::Object(extra)) = (e.as_object_mut(), extra) {
        obj.extend(extra);
    }
    e
}

/// A consumer in a fresh group that reads `topics` from the beginning.
pub fn consumer(topics: &[&str]) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("test-reader-"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    consumer
}

/// Reads `topics` until `want` distinct `ce_id`s were seen or `timeout` passed; returns the
/// first record of each id (duplicates are counted in the second value).
pub async fn read_by_id(
    topics: &[&str],
    want: usize,
    timeout: Duration,
) -> (HashMap<String, OwnedMessage>, usize) {
    read_by(topics, want, timeout, |m| header(m, "ce_id")).await
}

/// Like [`read_by_id`], keyed by the event's identity (`ce_source`, `ce_id`).
pub async fn read_by_identity(
    topics: &[&str],
    want: usize,
    timeout: Duration,
) -> (HashMap<(String, String), OwnedMessage>, usize) {
    read_by(topics, want, timeout, |m| {
        Some((header(m, "ce_source")?, header(m, "ce_id")?))
    })
    .await
}

/// Reads `topics` until `want` distinct keys were seen or `timeout` passed; records without a
/// key are passed over.
async fn read_by<K: std::hash::Hash + Eq>(
    topics: &[&str],
    want: usize,
    timeout: Duration,
    key: impl Fn(&OwnedMessage) -> Option<K>,
) -> (HashMap<K, OwnedMessage>, usize) {
    let consumer = consumer(topics);
    let deadline = Instant::now() + timeout;
    let mut seen = HashMap::new();
    let mut duplicates = 0;
    while seen.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left.min(Duration::from_secs(1)), consumer.recv()).await {
            Ok(Ok(m)) => {
                let m = m.detach();
                let Some(k) = key(&m) else {
                    continue;
                };
                if seen.insert(k, m).is_some() {
                    duplicates += 1;
                }
            }
            Ok(Err(e)) => panic!("consumer error: {e}"),
            Err(_) => {}
        }
    }
    (seen, duplicates)
}

/// A header of a record, as text.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
