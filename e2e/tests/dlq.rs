//! The 202 path against the real three-broker cluster: events Kafka does not acknowledge in
//! time are committed to the store and answered 202, and the retry scheduler delivers
//! every one of them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use courier_e2e::chaos::wait_drained;
use courier_e2e::{TestProxy, event_json, http, read_by_id, unique, unreachable_kafka};
use serde_json::{Value, json};

#[path = "../../proxy/tests/common/tmpfs.rs"]
mod tmpfs;
use tmpfs::Tmpfs;

const CE_BATCH: &str = "application/cloudevents-batch+json";

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
    let mut ids = HashSet::new();
    for i in 0..20 {
        let id = format!("single-{i}");
        let (status, v) = proxy
            .publish("/v1/events", &event_json(&id, &source, json!({})))
            .await;
        assert_eq!(status, 202, "{id}");
        assert_eq!(
            (v["status"].as_str(), v["id"].as_str()),
            (Some("stored"), Some(id.as_str()))
        );
        ids.insert(id);
    }
    let batch: Value = (0..200)
        .map(|i| event_json(&format!("batch-{i}"), &source, json!({})))
        .collect();
    let (status, v) = proxy.publish("/v1/events", &batch).await;
    assert_eq!(status, 202);
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

/// A proxy whose Kafka is unreachable from the start, with short timeouts: every event it
/// accepts is stored.
fn kafka_down(c: &mut courier_proxy::config::Config) {
    c.kafka.bootstrap_servers = unreachable_kafka();
    c.kafka.request_timeout_ms = 500;
    c.kafka.message_timeout_ms = 1_000;
    c.delivery.ack_timeout_ms = 500;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_unreachable_events_are_stored_not_refused() {
    let proxy = TestProxy::start(kafka_down).await;
    let started = Instant::now();
    for i in 0..10 {
        let event = event_json(&format!("u-{i}"), "/outage", json!({}));
        let (status, v) = proxy.publish("/v1/events", &event).await;
        assert_eq!(status, 202, "event {i}: {v}");
    }
    let store = proxy.dlq().await;
    let pending = store.list(&Default::default(), 0, 100).await.unwrap();
    let ids: HashSet<&str> = pending.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 10, "every 202 is a row in the store");
    assert!(pending.iter().all(|e| e.topic == "outage.events"));
    eprintln!(
        "10 events stored with Kafka unreachable in {:?}",
        started.elapsed()
    );
    proxy.stop().await;
}

/// A request to `proxy`'s admin API with the tests' token that must answer 200; its JSON body.
async fn admin_ok(
    proxy: &TestProxy,
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
) -> Value {
    let (status, answer) = courier_e2e::admin_call(proxy, "s3cret", method, &path, body).await;
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

/// A stored row whose headers cannot be read (here: overwritten by hand) is listed with its
/// stored header text instead of headers, and discarding it keeps that text in the audit log:
/// what an operator throws away stays on record whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_stored_event_is_listed_and_its_discard_keeps_the_stored_text() {
    let proxy = TestProxy::start(|c| {
        kafka_down(c);
        c.admin.token = Some("s3cret".into());
    })
    .await;
    for id in ["damaged-1", "intact-1"] {
        let (status, v) = proxy
            .publish("/v1/events", &event_json(id, "/damage", json!({})))
            .await;
        assert_eq!(status, 202, "{id}: {v}");
    }
    let pool = sqlx::SqlitePool::connect(&proxy.config.dlq.url)
        .await
        .unwrap();
    let damaged = sqlx::query(
        "UPDATE dlq_events SET headers = '[[\"ce_id\", not base64' WHERE event_id = 'damaged-1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(damaged.rows_affected(), 1);
    pool.close().await;

    let admin = |method, path: String, body| admin_ok(&proxy, method, path, body);
    let listed = admin(reqwest::Method::GET, "/admin/api/dlq".into(), None).await;
    let events = listed["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{listed}");
    let row = events
        .iter()
        .find(|e| e["event_id"] == "damaged-1")
        .unwrap();
    assert_eq!(row["headers"], json!([]));
    assert_eq!(row["unreadable_headers"], "[[\"ce_id\", not base64");
    let intact = events.iter().find(|e| e["event_id"] == "intact-1").unwrap();
    assert!(intact.get("unreadable_headers").is_none(), "{intact}");
    assert!(!intact["headers"].as_array().unwrap().is_empty());
    let seq = row["seq"].as_i64().unwrap();
    let shown = admin(reqwest::Method::GET, format!("/admin/api/dlq/{seq}"), None).await;
    assert_eq!(shown["unreadable_headers"], row["unreadable_headers"]);

    let discarded = admin(
        reqwest::Method::POST,
        "/admin/api/dlq/discard".into(),
        Some(json!({"seqs": [seq], "reason": "damaged by hand"})),
    )
    .await;
    assert_eq!(discarded["discarded"], 1, "{discarded}");
    let audit = admin(
        reqwest::Method::GET,
        "/admin/api/audit?action=dlq.discard".into(),
        None,
    )
    .await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["after"]["reason"], "damaged by hand", "{audit}");
    assert_eq!(entry["before"]["events"][0]["event_id"], "damaged-1");
    assert_eq!(
        entry["before"]["events"][0]["unreadable_headers"], "[[\"ce_id\", not base64",
        "the audit keeps the stored text: {audit}"
    );
    let left = proxy
        .dlq()
        .await
        .list(&Default::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        ["intact-1"]
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_is_replayed_through_the_admin_api_and_delivered() {
    use rdkafka::admin::{
        AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };
    use rdkafka::client::DefaultClientContext;

    // A topic that takes at most 1 kB: the event below is refused for good (parked at once),
    // until an operator raises the limit and replays it.
    let admin_client: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", courier_e2e::bootstrap())
        .create()
        .unwrap();
    let topic = unique("narrow.");
    let new_topic =
        NewTopic::new(&topic, 1, TopicReplication::Fixed(3)).set("max.message.bytes", "1000");
    let created = admin_client
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let proxy = TestProxy::start(|c| {
        c.delivery.ack_timeout_ms = 1;
        c.kafka.compression = "none".into();
        c.dlq.backoff_initial_ms = 100;
        c.admin.token = Some("s3cret".into());
    })
    .await;
    let client = http();
    let big = event_json("wide-1", "/narrow", json!({"data": "w".repeat(5_000)}));
    let (status, v) = proxy
        .publish(&format!("/v1/topics/{topic}/events"), &big)
        .await;
    assert_eq!(
        status, 202,
        "stored when no acknowledgement came in time: {v}"
    );

    let store = proxy.dlq().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.counts().await.unwrap() != (0, 1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        store.counts().await.unwrap(),
        (0, 1),
        "refused for good: parked, not dropped"
    );

    let list = proxy.url("/admin/api/dlq?state=parked");
    assert_eq!(client.get(&list).send().await.unwrap().status(), 401);
    let wrong = client.get(&list).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let admin = |method, path: String, body| admin_ok(&proxy, method, path, body);
    let v = admin(
        reqwest::Method::GET,
        "/admin/api/dlq?state=parked".into(),
        None,
    )
    .await;
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_id"], "wide-1");
    assert_eq!(events[0]["state"], "parked");
    let seq = events[0]["seq"].as_i64().unwrap();
    let one = admin(reqwest::Method::GET, format!("/admin/api/dlq/{seq}"), None).await;
    assert_eq!(one["topic"], topic.as_str());
    assert!(
        one["last_error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("too large"),
        "{one}"
    );

    let (status, no_reason) = courier_e2e::admin_call(
        &proxy,
        "s3cret",
        reqwest::Method::POST,
        "/admin/api/dlq/discard",
        Some(json!({"seqs": [seq]})),
    )
    .await;
    assert_eq!(status, 400, "discarding needs a reason: {no_reason}");

    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("max.message.bytes", "100000");
    let altered = admin_client
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replayed = admin(
        reqwest::Method::POST,
        "/admin/api/dlq/replay".into(),
        Some(json!({"filter": {"state": "parked"}})),
    )
    .await;
    assert_eq!(replayed["replayed"], 1);
    let audit = admin(
        reqwest::Method::GET,
        "/admin/api/audit?action=dlq.".into(),
        None,
    )
    .await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["action"], "dlq.replay", "{audit}");
    assert_eq!(entry["after"]["seqs"], json!([seq]));
    assert_eq!(wait_drained(&store, Duration::from_secs(60)).await, (0, 0));
    let (seen, _) = read_by_id(&[&topic], 1, Duration::from_secs(30)).await;
    assert!(
        seen.contains_key("wide-1"),
        "the replayed event is in Kafka"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_disk_answers_503_and_keeps_every_202() {
    let disk = Tmpfs::mount("400k");
    let url = format!("sqlite:{}", disk.path().join("dlq.db").display());
    let proxy = TestProxy::start(|c| {
        c.kafka.bootstrap_servers = unreachable_kafka();
        c.kafka.request_timeout_ms = 300;
        c.delivery.ack_timeout_ms = 300;
        c.dlq.url = url.clone();
        c.dlq.reserve_bytes = 128 * 1024;
    })
    .await;
    let client = http();
    let mut accepted = HashSet::new();
    let mut refused_503 = 0;
    for b in 0..400 {
        let events: Vec<Value> = (0..50)
            .map(|i| {
                event_json(
                    &format!("f-{b}-{i}"),
                    "/fulldisk",
                    json!({"pad": "p".repeat(200)}),
                )
            })
            .collect();
        let resp = client
            .post(proxy.url("/v1/events"))
            .header("content-type", CE_BATCH)
            .json(&events)
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            202 => {
                accepted.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            }
            503 => {
                assert!(resp.headers().contains_key("retry-after"));
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v["failed"], 50, "nothing of a refused batch is accepted");
                refused_503 += 1;
                if refused_503 >= 3 {
                    break;
                }
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused_503 >= 3, "the disk never filled up");
    assert!(!accepted.is_empty());
    let health = client.get(proxy.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the proxy still serves");

    let store = courier_proxy::store::Store::open(&url, 4).await.unwrap();
    let mut stored = HashSet::new();
    let mut after = 0;
    loop {
        let page = store.list(&Default::default(), after, 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page.into_iter().map(|e| e.event_id));
    }
    let lost: Vec<_> = accepted.difference(&stored).collect();
    eprintln!(
        "full disk: {} accepted (202), {refused_503} batches refused (503), lost {}",
        accepted.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "answered 202 but not in the store: {lost:?}"
    );
    drop(store);
    proxy.stop().await;

    // Kafka is back, the disk still full: the drain goes on (the store's reserve makes room for
    // its deletes), and every event answered 202 reaches Kafka.
    let up = TestProxy::start(|c| {
        c.dlq.url = url.clone();
        // The reserve holds a round's writes: rounds of 100 events on this tiny disk.
        c.dlq.reserve_bytes = 128 * 1024;
        c.dlq.batch = 100;
        c.dlq.backoff_initial_ms = 100;
    })
    .await;
    assert_eq!(
        wait_drained(&up.dlq().await, Duration::from_secs(120)).await,
        (0, 0),
        "the store drained on a full disk"
    );
    let (seen, duplicates) = read_by_id(
        &["fulldisk.events"],
        accepted.len(),
        Duration::from_secs(60),
    )
    .await;
    let undelivered: Vec<_> = accepted
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    eprintln!(
        "full disk, Kafka back: {} stored events delivered, {duplicates} duplicates, {} undelivered",
        seen.len(),
        undelivered.len()
    );
    assert!(
        undelivered.is_empty(),
        "answered 202, never delivered: {undelivered:?}"
    );
    up.stop().await;
}

/// An event's identity is (source, id): two sources of one service that use the same id,
/// both stored while Kafka is unreachable, are both delivered once it is back — and a resend
/// of either is kept once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sharing_an_id_across_sources_are_all_delivered() {
    let store_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", store_dir.path().join("dlq.db").display());
    let service = unique("same-id");
    let sources: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| format!("/{service}/{s}"))
        .collect();
    let down = TestProxy::start(|c| {
        c.kafka.bootstrap_servers = unreachable_kafka();
        c.kafka.request_timeout_ms = 300;
        c.delivery.ack_timeout_ms = 300;
        c.dlq.url = url.clone();
    })
    .await;
    let mut answered = HashSet::new();
    // Each id from each source, and the whole batch twice: the resend must not add rows.
    let events: Vec<Value> = (0..50)
        .flat_map(|i| {
            sources
                .iter()
                .map(move |s| event_json(&format!("shared-{i}"), s, json!({"from": s})))
        })
        .collect();
    let batch = Value::from(events.clone());
    for _ in 0..2 {
        let (status, v) = down.publish("/v1/events", &batch).await;
        assert_eq!(status, 202, "{v}");
        assert_eq!(v["stored"], events.len());
        answered.extend(events.iter().map(|e| {
            (
                e["source"].as_str().unwrap().to_owned(),
                e["id"].as_str().unwrap().to_owned(),
            )
        }));
    }
    assert_eq!(answered.len(), 150);
    let (pending, parked) = down.dlq().await.counts().await.unwrap();
    assert_eq!((pending, parked), (150, 0), "one row per (source, id)");
    down.stop().await;

    // Kafka is back: a proxy on the same store drains it.
    let up = TestProxy::start(|c| {
        c.dlq.url = url.clone();
        c.dlq.backoff_initial_ms = 100;
    })
    .await;
    assert_eq!(
        wait_drained(&up.dlq().await, Duration::from_secs(90)).await,
        (0, 0),
        "store drained"
    );
    let topic = format!("{service}.events");
    let (seen, duplicates) =
        courier_e2e::read_by_identity(&[&topic], answered.len(), Duration::from_secs(60)).await;
    let lost: Vec<_> = answered.iter().filter(|k| !seen.contains_key(*k)).collect();
    eprintln!(
        "same id, three sources: {} answered 202, {} delivered, {duplicates} duplicates, lost {}",
        answered.len(),
        seen.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "answered 202 but never delivered: {lost:?}"
    );
    up.stop().await;
}
