//! SASL_SSL to Kafka (SCRAM-SHA-512 over TLS, the broker's certificate checked against a
//! private CA), configured through plain librdkafka properties: events published through the
//! proxy are delivered and read back over SASL_SSL, and the main server's consumer runtime
//! handles them and writes its dead letters over it; with a wrong password Kafka is unreachable, so `/readyz` says so
//! and events are stored (202), never answered 200, and a proxy with the right password
//! delivers them from the same store.
//!
//! Needs a cluster started with `scripts/kafka/cluster.sh start --sasl-ssl`, named by
//! `COURIER_TEST_SASL_KAFKA_DIR` (scripts/test.sh starts one); without it each test says so
//! and passes without checking anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier_consumer_main::{Consumer, ConsumerConfig, Handler, HandlerError, Received};
use courier_e2e::{TestProxy, event_json, header, http, unique};
use courier_proxy::Config;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Environment variable naming the directory of a cluster started with `--sasl-ssl`.
const SASL_DIR_ENV: &str = "COURIER_TEST_SASL_KAFKA_DIR";

/// The librdkafka properties of a SASL_SSL client of the cluster (`sasl-client.properties`).
/// Panics with instructions when no such cluster was named: a test whose environment is
/// missing fails, it does not pass having done nothing.
fn sasl_properties() -> BTreeMap<String, String> {
    let dir = std::env::var(SASL_DIR_ENV).unwrap_or_else(|_| {
        panic!(
            "{SASL_DIR_ENV} is not set: scripts/test.sh starts a SASL_SSL cluster with \
             `scripts/kafka/cluster.sh start --sasl-ssl --dir DIR` and sets it to DIR"
        )
    });
    let path = std::path::Path::new(&dir).join("sasl-client.properties");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (start the cluster with --sasl-ssl)",
            path.display()
        )
    });
    let props: BTreeMap<String, String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key=value");
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    assert_eq!(props["security.protocol"], "SASL_SSL");
    assert_eq!(props["sasl.mechanism"], "SCRAM-SHA-512");
    props
}

/// Points the proxy at the SASL_SSL listener, the rest of `props` as `kafka.properties`.
fn use_sasl(config: &mut Config, props: &BTreeMap<String, String>) {
    let mut props = props.clone();
    config.kafka.bootstrap_servers = props.remove("bootstrap.servers").expect("bootstrap");
    config.kafka.properties = props;
}

/// A SASL_SSL consumer in a fresh group reading `topic` from the beginning.
fn sasl_consumer(props: &BTreeMap<String, String>, topic: &str) -> StreamConsumer {
    let mut c = ClientConfig::new();
    for (k, v) in props {
        c.set(k, v);
    }
    let consumer: StreamConsumer = c
        .set("group.id", unique("sasl-reader-"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Reads `topic` over SASL_SSL until every id in `want` was seen or `timeout` passed.
async fn read_ids(
    props: &BTreeMap<String, String>,
    topic: &str,
    want: &HashSet<String>,
    timeout: Duration,
) -> HashMap<String, OwnedMessage> {
    let consumer = sasl_consumer(props, topic);
    let deadline = Instant::now() + timeout;
    let mut seen = HashMap::new();
    while !want.iter().all(|id| seen.contains_key(id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left.min(Duration::from_secs(1)), consumer.recv()).await {
            Ok(Ok(m)) => {
                let m = m.detach();
                if let Some(id) = header(&m, "ce_id") {
                    seen.insert(id, m);
                }
            }
            // The topic may not exist yet: the proxy creates it on its first delivery.
            Ok(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {}
            Ok(Err(e)) => panic!("SASL_SSL consumer error: {e}"),
            Err(_) => {}
        }
    }
    seen
}

async fn post(proxy: &TestProxy, content_type: &str, body: String) -> (u16, Value) {
    let resp = http()
        .post(proxy.url("/v1/events"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_over_sasl_ssl() {
    let props = sasl_properties();
    let proxy = TestProxy::start(|c| use_sasl(c, &props)).await;
    let svc = unique("sasl");
    let topic = format!("{svc}.events");

    let (status, body) = post(
        &proxy,
        "application/cloudevents+json",
        event_json("one", &format!("/{svc}"), json!({"partitionkey": "k"})).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["topic"], topic.as_str());
    let batch: Vec<Value> = (0..5)
        .map(|i| event_json(&format!("b{i}"), &format!("/{svc}"), json!({})))
        .collect();
    let (status, body) = post(
        &proxy,
        "application/cloudevents-batch+json",
        Value::from(batch).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let ready = http().get(proxy.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let want: HashSet<String> = ["one", "b0", "b1", "b2", "b3", "b4"]
        .map(String::from)
        .into();
    let seen = read_ids(&props, &topic, &want, Duration::from_secs(60)).await;
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), want);
    let one = &seen["one"];
    assert_eq!(one.key(), Some(&b"k"[..]));
    let data: Value = serde_json::from_slice(one.payload().unwrap()).unwrap();
    assert_eq!(data["id"], "one");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stores_events_and_the_right_one_delivers_them() {
    let props = sasl_properties();
    let store = tempfile::tempdir().unwrap();
    let dlq_url = format!("sqlite:{}", store.path().join("dlq.db").display());
    let mut wrong = props.clone();
    wrong.insert("sasl.password".into(), "not-the-password".into());
    let proxy = TestProxy::start(|c| {
        use_sasl(c, &wrong);
        c.dlq.url = dlq_url.clone();
        c.delivery.ack_timeout_ms = 2000;
    })
    .await;

    // Kafka refuses the credentials: not ready, and the problem says why.
    let ready = http().get(proxy.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let problem: Value = ready.json().await.unwrap();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("kafka-unavailable"),
        "{problem}"
    );

    // Nothing is answered 200; each event is durable in the store (202).
    let svc = unique("saslwrong");
    let topic = format!("{svc}.events");
    let ids: Vec<String> = (0..3).map(|i| format!("w{i}")).collect();
    for id in &ids {
        let (status, body) = post(
            &proxy,
            "application/cloudevents+json",
            event_json(id, &format!("/{svc}"), json!({})).to_string(),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "stored", "{body}");
    }
    let (pending, parked) = proxy.dlq().await.counts().await.unwrap();
    assert_eq!((pending, parked), (3, 0));
    proxy.stop().await;

    // The same store behind a proxy with the right password: the retry scheduler delivers.
    let proxy = TestProxy::start(|c| {
        use_sasl(c, &props);
        c.dlq.url = dlq_url.clone();
        c.dlq.backoff_initial_ms = 100;
    })
    .await;
    let want: HashSet<String> = ids.into_iter().collect();
    let seen = read_ids(&props, &topic, &want, Duration::from_secs(90)).await;
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), want);
    proxy.stop().await;
}

/// Records the ids it handled; refuses `poison` events for good.
#[derive(Debug, Default, Clone)]
struct Seen(Arc<Mutex<HashSet<String>>>);

impl Handler for Seen {
    type Payload = Value;

    async fn handle(&self, e: Received<Value>) -> Result<(), HandlerError> {
        if e.data["poison"] == true {
            return Err(HandlerError::fatal("poison"));
        }
        self.0.lock().unwrap().insert(e.event.id.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_consumer_reads_over_sasl_ssl() {
    let props = sasl_properties();
    let proxy = TestProxy::start(|c| use_sasl(c, &props)).await;
    let svc = unique("saslmain");
    let mut batch: Vec<Value> = (0..4)
        .map(|i| event_json(&format!("m{i}"), &format!("/{svc}"), json!({})))
        .collect();
    let mut poison = event_json("poison", &format!("/{svc}"), json!({}));
    poison["data"] = json!({"poison": true});
    batch.push(poison);
    let (status, body) = post(
        &proxy,
        "application/cloudevents-batch+json",
        Value::from(batch).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let mut config = ConsumerConfig::default();
    let mut kafka_props = props.clone();
    config.kafka.bootstrap_servers = kafka_props.remove("bootstrap.servers").unwrap();
    config.kafka.properties = kafka_props;
    config.kafka.group_id = unique("sasl-main-");
    config.kafka.metadata_refresh_ms = 1000;
    let seen = Seen::default();
    let runtime = Consumer::builder(config)
        .route(&format!(r"^{svc}\..*"), seen.clone())
        .unwrap()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runtime.run(shutdown.clone()));
    let want: HashSet<String> = (0..4).map(|i| format!("m{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline && *seen.0.lock().unwrap() != want {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The dead-letter topic is written over SASL_SSL too (the group's properties).
    let dead = read_ids(
        &props,
        &format!("{svc}.events.dlt"),
        &HashSet::from(["poison".to_owned()]),
        Duration::from_secs(90),
    )
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*seen.0.lock().unwrap(), want);
    assert!(
        dead.contains_key("poison"),
        "the poison event was not dead-lettered"
    );
    proxy.stop().await;
}
