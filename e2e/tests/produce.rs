//! The produce path against the real three-broker cluster: what the proxy answers 200 for is
//! in Kafka, on the right topic, with the right key and `ce_*` headers; topics are created on
//! the fly from the template; bad input gets a problem and harms nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use courier_e2e::{TestProxy, bootstrap, event_json, header, http, read_by_id, unique};
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::Message;
use serde_json::{Value, json};

const CE_JSON: &str = "application/cloudevents+json";
const CE_BATCH: &str = "application/cloudevents-batch+json";

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    http()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request sent")
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_events_single_and_batched_are_all_in_kafka() {
    let proxy = TestProxy::start(|_| {}).await;
    let service = unique("orders");
    let source = format!("/{service}/api");
    let client = http();
    // id → (partitionkey, where the proxy said it wrote it)
    let mut expected: HashMap<String, (Option<String>, (i32, i64))> = HashMap::new();

    // 2,000 single-event POSTs, 32 at a time.
    let url = proxy.url("/v1/events");
    let singles = futures::stream::iter(0..2_000)
        .map(|i| {
            let (client, url, source) = (client.clone(), url.clone(), source.clone());
            async move {
                let id = format!("s-{i}");
                let key = (i % 3 == 0).then(|| format!("cust-{}", i % 17));
                let body = event_json(&id, &source, json!({"partitionkey": key}));
                let resp = client
                    .post(&url)
                    .header("content-type", CE_JSON)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "single event {id}");
                let v: Value = resp.json().await.unwrap();
                (id, key, v)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for (id, key, v) in singles {
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["status"], "delivered");
        assert_eq!(v["topic"], format!("{service}.events"));
        let at = (
            v["partition"].as_i64().unwrap() as i32,
            v["offset"].as_i64().unwrap(),
        );
        expected.insert(id, (key, at));
    }

    // 8,000 more in 80 batches of 100, 8 batches at a time.
    let batches = futures::stream::iter(0..80)
        .map(|b| {
            let (client, url, source) = (client.clone(), url.clone(), source.clone());
            async move {
                let events: Vec<Value> = (0..100)
                    .map(|i| {
                        let id = format!("b-{b}-{i}");
                        let key = (i % 2 == 0).then(|| format!("cust-{i}"));
                        event_json(&id, &source, json!({"partitionkey": key}))
                    })
                    .collect();
                let resp = client
                    .post(&url)
                    .header("content-type", CE_BATCH)
                    .json(&events)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "batch {b}");
                let v: Value = resp.json().await.unwrap();
                (events, v)
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for (events, v) in batches {
        assert_eq!(v["delivered"], 100);
        for (e, r) in events.iter().zip(v["results"].as_array().unwrap()) {
            assert_eq!(r["id"], e["id"]);
            assert_eq!(r["status"], "delivered");
            let at = (
                r["partition"].as_i64().unwrap() as i32,
                r["offset"].as_i64().unwrap(),
            );
            let key = e["partitionkey"].as_str().map(str::to_owned);
            expected.insert(e["id"].as_str().unwrap().to_owned(), (key, at));
        }
    }
    assert_eq!(expected.len(), 10_000);

    let topic = format!("{service}.events");
    let (seen, duplicates) = read_by_id(&[&topic], 10_000, Duration::from_secs(120)).await;
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} ids answered 200 but not in Kafka, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        duplicates, 0,
        "no retry happened, so no duplicate is expected"
    );
    for (id, (key, (partition, offset))) in &expected {
        let m = &seen[id];
        assert_eq!(m.topic(), topic);
        assert_eq!((m.partition(), m.offset()), (*partition, *offset), "{id}");
        assert_eq!(
            m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            *key,
            "{id}"
        );
        assert_eq!(header(m, "ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(header(m, "ce_source").as_deref(), Some(source.as_str()));
        assert_eq!(header(m, "ce_type").as_deref(), Some("test.event"));
        assert_eq!(header(m, "ce_category").as_deref(), Some("event"));
        assert_eq!(
            header(m, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(header(m, "ce_partitionkey"), *key);
        let data: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(data["id"], id.as_str());
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_event_creates_its_topic_replicated_three_times() {
    let proxy = TestProxy::start(|_| {}).await;
    let service = unique("billing");
    let body = json!({
        "specversion": "1.0", "source": format!("/{service}"), "type": "payment.failed",
        "errortype": "Payment_Declined", "data": {"reason": "insufficient funds"},
    });
    let resp = post(&proxy.url("/v1/events"), CE_JSON, body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let topic = format!("{service}.error.payment-declined");
    assert_eq!(v["topic"], topic.as_str());
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "an assigned id is a UUID"
    );

    let admin = admin();
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    // Created from the default policy's `errors` template (`*.error.*`): 3 partitions, 14 days.
    let t = &metadata.topics()[0];
    assert_eq!(t.partitions().len(), 3);
    for p in t.partitions() {
        assert_eq!(p.replicas().len(), 3, "partition {} replicas", p.id());
    }
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
        .await
        .unwrap();
    let config = configs.into_iter().next().unwrap().unwrap();
    let min_isr = config
        .get("min.insync.replicas")
        .and_then(|e| e.value.clone());
    assert_eq!(min_isr.as_deref(), Some("2"));
    let retention = config.get("retention.ms").and_then(|e| e.value.clone());
    assert_eq!(retention.as_deref(), Some("1209600000"));

    let (seen, _) = read_by_id(&[&topic], 1, Duration::from_secs(60)).await;
    let m = seen.get(&id).expect("the error event is in its topic");
    assert_eq!(header(m, "ce_category").as_deref(), Some("error"));
    assert_eq!(
        header(m, "ce_errortype").as_deref(),
        Some("Payment_Declined")
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_problem_and_harms_nothing() {
    let proxy = TestProxy::start(|c| {
        c.limits.max_body_bytes = 64 * 1024;
        c.limits.max_event_bytes = 16 * 1024;
        c.limits.max_batch_events = 10;
    })
    .await;
    let service = unique("shop");
    let source = format!("/{service}");
    let valid = event_json("ok", &source, json!({})).to_string();
    let big = "x".repeat(20 * 1024);
    let unknown_path = format!("/v1/topics/{service}.no-such-topic/events");
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "/v1/events",
            CE_JSON,
            "{\"specversion\":".into(),
            400,
            "malformed-json",
        ),
        (
            "/v1/events",
            CE_JSON,
            "not json at all".into(),
            400,
            "malformed-json",
        ),
        ("/v1/events", CE_JSON, "".into(), 400, "malformed-json"),
        (
            "/v1/events",
            "text/plain",
            valid.clone(),
            415,
            "unsupported-media-type",
        ),
        (
            "/v1/events",
            "",
            valid.clone(),
            415,
            "unsupported-media-type",
        ),
        (
            "/v1/events",
            CE_JSON,
            json!({"specversion":"1.0","type":"t"}).to_string(),
            422,
            "invalid-event",
        ),
        (
            "/v1/events",
            CE_JSON,
            json!({"specversion":"1.0","source":source,"type":"t","category":"error"}).to_string(),
            422,
            "invalid-event",
        ),
        (
            "/v1/events",
            CE_JSON,
            json!({"specversion":"2.0","source":source,"type":"t"}).to_string(),
            422,
            "invalid-event",
        ),
        ("/v1/events", CE_JSON, "[1]".into(), 422, "invalid-event"),
        (
            "/v1/events",
            CE_JSON,
            json!({"specversion":"1.0","source":"/","type":"t"}).to_string(),
            422,
            "invalid-topic",
        ),
        (
            "/v1/events",
            CE_JSON,
            event_json("big", &source, json!({"data": big})).to_string(),
            413,
            "event-too-large",
        ),
        (
            "/v1/events",
            CE_JSON,
            format!("{{\"pad\":\"{}\"}}", "y".repeat(70 * 1024)),
            413,
            "payload-too-large",
        ),
        ("/v1/events", CE_BATCH, "[]".into(), 400, "empty-batch"),
        ("/v1/events", CE_BATCH, "{}".into(), 422, "invalid-event"),
        (
            "/v1/events",
            CE_BATCH,
            serde_json::to_string(&vec![json!({}); 11]).unwrap(),
            413,
            "too-many-events",
        ),
        (
            "/v1/topics/__consumer_offsets/events",
            CE_JSON,
            valid.clone(),
            422,
            "invalid-topic",
        ),
        (
            "/v1/topics/bad%20name/events",
            CE_JSON,
            valid.clone(),
            422,
            "invalid-topic",
        ),
        (&unknown_path, CE_JSON, valid.clone(), 404, "unknown-topic"),
        (
            // Another service's topic: refused whether or not it exists.
            "/v1/topics/someone-else.events/events",
            CE_JSON,
            valid.clone(),
            403,
            "topic-not-allowed",
        ),
        ("/v1/nothing", CE_JSON, valid.clone(), 404, "not-found"),
    ];
    for (path, content_type, body, status, code) in cases {
        let mut req = http().post(proxy.url(path)).body(body.clone());
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.status(),
            status,
            "{path} {content_type} {}",
            &body[..body.len().min(60)]
        );
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let p: Value = resp.json().await.unwrap();
        assert_eq!(
            p["type"],
            format!("urn:courier:problem:{code}"),
            "{path} {p}"
        );
        assert_eq!(p["status"], status);
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()));

        let ok = post(&proxy.url("/v1/events"), CE_JSON, valid.clone()).await;
        assert_eq!(ok.status(), 200, "a valid event after `{code}`");
    }
    let resp = http().get(proxy.url("/v1/events")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_per_event_and_delivers_the_valid_ones() {
    let proxy = TestProxy::start(|_| {}).await;
    let service = unique("mixed");
    let source = format!("/{service}");
    let body = format!(
        "{}\nnot json\n{}\n{}\n",
        event_json("m-1", &source, json!({})),
        json!({"specversion": "1.0", "source": source}),
        event_json("m-2", &source, json!({"category": "log"})),
    );
    let resp = post(&proxy.url("/v1/events"), "application/x-ndjson", body).await;
    assert_eq!(resp.status(), 207);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["delivered"].as_u64(), v["invalid"].as_u64()),
        (Some(2), Some(2))
    );
    let statuses: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["delivered", "invalid", "invalid", "delivered"]);
    assert_eq!(
        v["results"][1]["problem"]["type"],
        "urn:courier:problem:malformed-json"
    );
    assert_eq!(
        v["results"][2]["problem"]["type"],
        "urn:courier:problem:invalid-event"
    );
    assert_eq!(v["results"][3]["topic"], format!("{service}.logs"));

    let all_bad = post(&proxy.url("/v1/events"), CE_BATCH, "[{}, 5]").await;
    assert_eq!(all_bad.status(), 422);

    let (seen, _) = read_by_id(
        &[&format!("{service}.events"), &format!("{service}.logs")],
        2,
        Duration::from_secs(60),
    )
    .await;
    let ids: HashSet<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(ids, HashSet::from(["m-1", "m-2"]));
    proxy.stop().await;
}

/// A batch is routed event by event, even where consecutive events share a service or a
/// topic (the intake reuses the last event's routing only when the next routes the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_of_a_batch_is_routed_on_its_own() {
    let proxy = TestProxy::start(|_| {}).await;
    let (a, b) = (unique("routa"), unique("routb"));
    let (source_a, source_b) = (format!("/{a}"), format!("/{b}/api"));
    let events = [
        ("r-1", &source_a, json!({})),
        ("r-2", &source_a, json!({})),
        ("r-3", &source_a, json!({"category": "log"})),
        ("r-4", &source_b, json!({})),
        ("r-5", &source_a, json!({"errortype": "Card_Declined"})),
        ("r-6", &source_a, json!({"errortype": "timeout"})),
        ("r-7", &source_a, json!({"errortype": "card-declined"})),
        ("r-8", &source_b, json!({"category": "log"})),
        ("r-9", &source_a, json!({})),
    ];
    let expected = [
        format!("{a}.events"),
        format!("{a}.events"),
        format!("{a}.logs"),
        format!("{b}.events"),
        format!("{a}.error.card-declined"),
        format!("{a}.error.timeout"),
        format!("{a}.error.card-declined"),
        format!("{b}.logs"),
        format!("{a}.events"),
    ];
    let body: Vec<Value> = events
        .iter()
        .map(|(id, source, extra)| event_json(id, source, extra.clone()))
        .collect();
    let resp = post(
        &proxy.url("/v1/events"),
        CE_BATCH,
        Value::Array(body).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let results = v["results"].as_array().unwrap();
    let answered: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["topic"].as_str().unwrap()))
        .collect();
    let wanted: Vec<(&str, &str)> = events
        .iter()
        .zip(&expected)
        .map(|((id, _, _), topic)| (*id, topic.as_str()))
        .collect();
    assert_eq!(answered, wanted);

    let topics: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let (seen, _) = read_by_id(&topics, events.len(), Duration::from_secs(60)).await;
    for (id, topic) in wanted {
        let m = seen.get(id).unwrap_or_else(|| panic!("{id} is in Kafka"));
        assert_eq!(m.topic(), topic, "{id}");
        assert_eq!(header(m, "ce_id").as_deref(), Some(id));
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_topics_must_exist() {
    let proxy = TestProxy::start(|_| {}).await;
    // Under the default policy a service owns the topics named `{service}.…`.
    let topic = unique("explicit.topic_");
    let url = proxy.url(&format!("/v1/topics/{topic}/events"));
    let body = event_json("x-1", "/explicit", json!({})).to_string();
    assert_eq!(post(&url, CE_JSON, body).await.status(), 404);

    let new_topic = NewTopic::new(&topic, 2, TopicReplication::Fixed(3));
    let admin = admin();
    let created = admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created[0].is_ok());
    wait_for_topic(&admin, &topic).await;
    // The broker the proxy asks may learn of the topic a moment after the one asked above.
    let (status, v) = proxy
        .publish_once_known(
            &format!("/v1/topics/{topic}/events"),
            &event_json("x-1", "/explicit", json!({})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["topic"], topic.as_str());
    let (seen, _) = read_by_id(&[&topic], 1, Duration::from_secs(60)).await;
    assert!(seen.contains_key("x-1"));
    proxy.stop().await;
}

/// Waits until the cluster's metadata lists `topic` with leaders (bounded: 20 s).
async fn wait_for_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) {
    for _ in 0..40 {
        let m = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .unwrap();
        if m.topics()
            .iter()
            .any(|t| t.error().is_none() && t.partitions().iter().all(|p| p.leader() >= 0))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("topic {topic} did not appear in the metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_kafka_refuses_for_good_is_422_and_not_written() {
    // The topic takes at most 1 kB per record batch; the proxy's own limit is higher, so the
    // refusal comes from the broker, through the delivery report.
    let topic = unique("small.");
    let admin = admin();
    let new_topic =
        NewTopic::new(&topic, 1, TopicReplication::Fixed(3)).set("max.message.bytes", "1000");
    let created = admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    wait_for_topic(&admin, &topic).await;
    let proxy = TestProxy::start(|c| c.kafka.compression = "none".into()).await;
    let url = proxy.url(&format!("/v1/topics/{topic}/events"));
    let big = event_json("big-1", "/small", json!({"data": "z".repeat(5_000)}));
    let resp = post(&url, CE_JSON, big.to_string()).await;
    assert_eq!(resp.status(), 422);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:courier:problem:kafka-rejected");

    let ok = post(
        &url,
        CE_JSON,
        event_json("small-1", "/small", json!({})).to_string(),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let (seen, _) = read_by_id(&[&topic], 2, Duration::from_secs(5)).await;
    assert!(seen.contains_key("small-1"));
    assert!(
        !seen.contains_key("big-1"),
        "a refused event must not be in Kafka"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledgement_within_the_deadline_is_503_never_2xx() {
    // Kafka is up, but the proxy may wait only 1 ms: no acknowledgement can come that fast
    // (the producer lingers 20 ms), so every event meets the ack deadline.
    let proxy = TestProxy::start(|c| {
        c.delivery.ack_timeout_ms = 1;
        c.dlq.enabled = false;
    })
    .await;
    let source = format!("/{}", unique("slow"));
    // The first event creates the topic; its outcome is a 503 as well.
    for i in 0..5 {
        let resp = post(
            &proxy.url("/v1/events"),
            CE_JSON,
            event_json(&format!("t-{i}"), &source, json!({})).to_string(),
        )
        .await;
        assert_eq!(resp.status(), 503, "event {i}");
        assert_eq!(resp.headers()["retry-after"], "1");
        let p: Value = resp.json().await.unwrap();
        assert_eq!(p["type"], "urn:courier:problem:kafka-unavailable");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_unreachable_is_503_with_retry_after_never_2xx() {
    // A port nothing listens on: a loopback listener bound and dropped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = TestProxy::start(|c| {
        c.kafka.bootstrap_servers = dead.to_string();
        c.kafka.request_timeout_ms = 1_000;
        c.kafka.message_timeout_ms = 2_000;
        c.delivery.ack_timeout_ms = 1_500;
        c.dlq.enabled = false;
    })
    .await;
    let body = event_json("d-1", "/down", json!({})).to_string();
    let resp = post(&proxy.url("/v1/events"), CE_JSON, body).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["type"], "urn:courier:problem:kafka-unavailable");

    let batch = serde_json::to_string(&vec![event_json("d-2", "/down", json!({}))]).unwrap();
    let resp = post(&proxy.url("/v1/events"), CE_BATCH, batch).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));

    let ready = http().get(proxy.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health = http().get(proxy.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_kafka_answers() {
    let proxy = TestProxy::start(|_| {}).await;
    let resp = http().get(proxy.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["brokers"], 3);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_event_gets_its_first_outcome_not_a_second_copy() {
    let proxy = TestProxy::start(|_| {}).await;
    let service = unique("retrying");
    let source = format!("/{service}");
    let body = event_json("same-id", &source, json!({})).to_string();
    let first: Value = post(&proxy.url("/v1/events"), CE_JSON, body.clone())
        .await
        .json()
        .await
        .unwrap();
    for _ in 0..3 {
        let again = post(&proxy.url("/v1/events"), CE_JSON, body.clone()).await;
        assert_eq!(again.status(), 200);
        let again: Value = again.json().await.unwrap();
        assert_eq!(
            (&again["partition"], &again["offset"]),
            (&first["partition"], &first["offset"])
        );
        assert_eq!(again["duplicate"], true);
    }
    assert!(first.get("duplicate").is_none(), "{first}");
    // In a batch too, next to a new event.
    let batch = serde_json::to_string(&vec![
        event_json("same-id", &source, json!({})),
        event_json("other-id", &source, json!({})),
    ])
    .unwrap();
    let v: Value = post(&proxy.url("/v1/events"), CE_BATCH, batch)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["results"][0]["offset"], first["offset"]);
    assert_eq!(v["results"][0]["duplicate"], true);
    assert_eq!(v["delivered"], 2);
    // Resends are counted as duplicates, not as deliveries.
    let metrics = http()
        .get(proxy.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |outcome: &str| {
        let labels =
            format!("{{service=\"{service}\",topic=\"{service}.events\",outcome=\"{outcome}\"}}");
        metrics
            .lines()
            .find(|l| l.starts_with("courier_events_total") && l.contains(&labels))
            .and_then(|l| l.rsplit(' ').next())
            .map(|n| n.parse::<f64>().unwrap())
    };
    assert_eq!(count("duplicate"), Some(4.0), "{metrics}");
    assert_eq!(count("delivered"), Some(2.0), "{metrics}");

    // The same id from another source is another event.
    let other = event_json("same-id", &format!("{source}-b"), json!({})).to_string();
    let o: Value = post(&proxy.url("/v1/events"), CE_JSON, other)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(o["topic"], format!("{service}-b.events"));

    let topic = format!("{service}.events");
    // Asks for one more id than exists, so it reads the topic to the end (10 s).
    let (seen, duplicates) = read_by_id(&[&topic], 3, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(duplicates, 0, "a resent event is not written twice");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_intake_queue_answers_429_with_retry_after_and_accepts_nothing_of_it() {
    // Room for one batch of 10 at a time, and no patience: concurrent batches find the
    // queue full while the first waits for its acknowledgements (the producer lingers 20 ms).
    let proxy = TestProxy::start(|c| {
        c.delivery.queue_capacity = 10;
        c.delivery.enqueue_wait_ms = 1;
        c.limits.max_batch_events = 10;
    })
    .await;
    let source = format!("/{}", unique("busy"));
    let url = proxy.url("/v1/events");
    let sends = (0..16).map(|b| {
        let (url, source) = (url.clone(), source.clone());
        async move {
            let events: Vec<Value> = (0..10)
                .map(|i| event_json(&format!("q-{b}-{i}"), &source, json!({})))
                .collect();
            let resp = post(&url, CE_BATCH, serde_json::to_string(&events).unwrap()).await;
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            let v: Value = resp.json().await.unwrap();
            (status, retry_after, v)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let overloaded: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(
        !overloaded.is_empty(),
        "some batch must meet the full queue"
    );
    for (_, retry_after, v) in &overloaded {
        assert!(retry_after);
        assert_eq!(v["failed"], 10, "nothing of a refused batch is accepted");
        assert_eq!(
            v["results"][0]["problem"]["type"],
            "urn:courier:problem:overloaded"
        );
    }
    assert!(answers.iter().all(|(s, _, _)| *s == 200 || *s == 429));
    let after = post(
        &url,
        CE_JSON,
        event_json("q-after", &source, json!({})).to_string(),
    )
    .await;
    assert_eq!(after.status(), 200, "the queue frees up again");
    proxy.stop().await;
}
