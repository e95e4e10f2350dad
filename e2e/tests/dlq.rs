//! The 202 path against the real three-broker cluster: events Kafka does not acknowledge in
//! time are committed to the DLQ store and answered 202, and the retry scheduler delivers
//! every one of them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use courier_e2e::{TestProxy, event_json, read_by_id, unique};
use serde_json::{Value, json};

const CE_JSON: &str = "application/cloudevents+json";
const CE_BATCH: &str = "application/cloudevents-batch+json";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Waits until the store holds nothing pending (bounded).
async fn wait_drained(store: &courier_proxy::dlq::DlqStore, within: Duration) -> (i64, i64) {
    let deadline = Instant::now() + within;
    loop {
        let counts = store.counts().await.unwrap();
        if counts.0 == 0 || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_events_are_stored_answered_202_and_delivered_later() {
    // The proxy waits only 1 ms for an acknowledgement, so every event meets the deadline
    // and is stored; the scheduler (30 s ack timeout) then delivers them.
    let proxy = TestProxy::start(|c| {
        c.delivery.ack_timeout_ms = 1;
        c.dlq.backoff_initial_ms = 100;
    })
    .await;
    let service = unique("late");
    let source = format!("/{service}");
    let client = http();
    let mut ids = HashSet::new();
    for i in 0..20 {
        let id = format!("single-{i}");
        let resp = client
            .post(proxy.url("/v1/events"))
            .header("content-type", CE_JSON)
            .body(event_json(&id, &source, json!({})).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{id}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            (v["status"].as_str(), v["id"].as_str()),
            (Some("stored"), Some(id.as_str()))
        );
        ids.insert(id);
    }
    let batch: Vec<Value> = (0..200)
        .map(|i| event_json(&format!("batch-{i}"), &source, json!({})))
        .collect();
    let resp = client
        .post(proxy.url("/v1/events"))
        .header("content-type", CE_BATCH)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["stored"], 200);
    ids.extend((0..200).map(|i| format!("batch-{i}")));

    let store = proxy.dlq().await;
    assert_eq!(
        wait_drained(&store, Duration::from_secs(90)).await,
        (0, 0),
        "store drained"
    );
    let topic = format!("{service}.events");
    let (seen, duplicates) = read_by_id(&[&topic], ids.len(), Duration::from_secs(60)).await;
    let missing: Vec<_> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "answered 202 but not in Kafka: {missing:?}"
    );
    eprintln!(
        "stored-then-delivered: {} events, {duplicates} duplicates",
        ids.len()
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_unreachable_events_are_stored_not_refused() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = TestProxy::start(|c| {
        c.kafka.bootstrap_servers = dead.to_string();
        c.kafka.request_timeout_ms = 500;
        c.kafka.message_timeout_ms = 1_000;
        c.delivery.ack_timeout_ms = 500;
    })
    .await;
    let client = http();
    let started = Instant::now();
    for i in 0..10 {
        let resp = client
            .post(proxy.url("/v1/events"))
            .header("content-type", CE_JSON)
            .body(event_json(&format!("u-{i}"), "/outage", json!({})).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "event {i}");
    }
    let store = proxy.dlq().await;
    let pending = store.list(None, 0, 100).await.unwrap();
    let ids: HashSet<&str> = pending.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 10, "every 202 is a row in the store");
    assert!(pending.iter().all(|e| e.topic == "outage.events"));
    eprintln!(
        "10 events stored with Kafka unreachable in {:?}",
        started.elapsed()
    );
    proxy.stop().await;
}
