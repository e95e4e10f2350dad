//! What a caller controls, against the real three-broker cluster: binary-mode CloudEvents
//! (`ce-*` headers), events without data, the bounds on attribute lengths and on JSON `data`
//! (with the proxy's RSS sampled while a hostile caller pushes on them), and the policy's
//! bounds on the topics a service can have created.

use std::time::Duration;

use courier_e2e::proxy_process::ProxyProcess;
use courier_e2e::{TestProxy, bootstrap, event_json, header, http, read_by_id, unique};
use courier_shared::{CreationLimits, ErrortypeRule};
use rdkafka::message::Message;
use serde_json::{Value, json};

const CE_BATCH: &str = "application/cloudevents-batch+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_events_are_taken_in_with_their_headers_and_body() {
    let proxy = TestProxy::start(|_| {}).await;
    let service = unique("binary");
    let source = format!("/{service}/api");
    let client = http();
    let post = |id: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut request = client
            .post(proxy.url("/v1/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", &source)
            .header("ce-type", "invoice.paid")
            .header("ce-subject", "caf%C3%A9")
            .header("ce-partitionkey", "cust-7")
            .header("ce-region", "eu")
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send()
    };
    let json_data = br#"{"amount": 5}"#.to_vec();
    let binary_data = vec![0u8, 159, 146, 150, 255];
    for (id, ct, body) in [
        ("bin-json", Some("application/json"), json_data.clone()),
        (
            "bin-octets",
            Some("application/octet-stream"),
            binary_data.clone(),
        ),
        ("bin-none", None, Vec::new()),
    ] {
        let resp = post(id, ct, body).await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{id}: {v}");
        assert_eq!(v["id"], id);
        assert_eq!(v["topic"], format!("{service}.events"));
    }
    // Binary mode is validated like structured mode: a bad attribute is a 422 problem.
    let resp = client
        .post(proxy.url("/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-source", &source)
        .header("content-type", "text/plain")
        .body("no type")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["type"], "urn:courier:problem:invalid-event");

    let topic = format!("{service}.events");
    let (seen, _) = read_by_id(&[&topic], 3, Duration::from_secs(30)).await;
    let json_record = &seen["bin-json"];
    assert_eq!(json_record.payload(), Some(&json_data[..]));
    assert_eq!(json_record.key(), Some(&b"cust-7"[..]));
    assert_eq!(header(json_record, "ce_subject").as_deref(), Some("café"));
    assert_eq!(header(json_record, "ce_region").as_deref(), Some("eu"));
    assert_eq!(
        header(json_record, "content-type").as_deref(),
        Some("application/json")
    );
    let octets = &seen["bin-octets"];
    assert_eq!(octets.payload(), Some(&binary_data[..]));
    assert_eq!(
        header(octets, "content-type").as_deref(),
        Some("application/octet-stream")
    );
    // No data: an empty value, not a null one (a tombstone on a compacted topic).
    let none = &seen["bin-none"];
    assert_eq!(none.payload(), Some(&b""[..]));
    assert_eq!(header(none, "content-type"), None);
    proxy.stop().await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// The hostile caller of the December review: ids of 900,000 characters, data nested 100,000
/// deep, and then a long stream of valid events with the longest ids allowed. Every hostile
/// request gets its problem, the valid events are delivered, and the proxy's memory stays
/// within what the dedupe window is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_caller_gets_problems_and_the_proxy_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(
        &bootstrap(),
        dir.path(),
        &[("COURIER_DELIVERY__DEDUPE_MAX_BYTES", "8388608")],
    )
    .await;
    let client = http();
    let service = unique("hostile");
    let source = format!("/{service}");
    let url = format!("{}/v1/events", proxy.base);
    let send = |body: String| {
        client
            .post(&url)
            .header("content-type", CE_BATCH)
            .body(body)
            .send()
    };
    // Warm up (first topic creation, connections), then take the baseline.
    let warm: Vec<Value> = (0..100)
        .map(|i| event_json(&format!("warm-{i}"), &source, json!({})))
        .collect();
    assert_eq!(
        send(serde_json::to_string(&warm).unwrap())
            .await
            .unwrap()
            .status(),
        200
    );
    let before = rss_kib(proxy.pid());

    // 200 of them: 180 MB of ids, which a proxy that kept them would hold for its dedupe window.
    let long_id = "x".repeat(900_000);
    for i in 0..200 {
        let events = vec![event_json(&format!("{long_id}{i}"), &source, json!({}))];
        let resp = send(serde_json::to_string(&events).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 422, "a 900,000-character id");
        let v: Value = resp.json().await.unwrap();
        assert!(
            v["results"][0]["problem"]["detail"]
                .as_str()
                .unwrap()
                .contains("at most 256"),
            "{v}"
        );
    }
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    for i in 0..20 {
        let body = format!(
            r#"[{{"specversion":"1.0","id":"deep-{i}","source":"{source}","type":"t","data":{deep}}}]"#
        );
        let resp = send(body).await.unwrap();
        assert_eq!(resp.status(), 422, "data nested 100,000 deep");
    }
    let long_ok = "y".repeat(240);
    let mut accepted = 0;
    for b in 0..100 {
        let events: Vec<Value> = (0..500)
            .map(|i| event_json(&format!("{long_ok}-{b}-{i}"), &source, json!({})))
            .collect();
        let resp = send(serde_json::to_string(&events).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200, "valid events with long ids");
        accepted += events.len();
    }
    let after = rss_kib(proxy.pid());
    eprintln!(
        "hostile caller: 200 ids of 900,000 characters and 20 data nested 100,000 deep refused, \
         {accepted} valid events with 250-byte ids delivered; proxy RSS {} MiB before, {} MiB after",
        before / 1024,
        after / 1024
    );
    assert_eq!(accepted, 50_000);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let health = client
        .get(format!("{}/healthz", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_bounds_the_topics_a_service_creates() {
    let service = unique("errortypes");
    let limited = unique("creations");
    let proxy = TestProxy::start(|c| {
        c.topics.creation = CreationLimits {
            per_service: 2,
            interval_secs: 3_600,
        };
        c.topics.errortypes = vec![ErrortypeRule {
            service: service.clone(),
            allow: vec!["payment-*".into(), "timeout".into()],
        }];
    })
    .await;
    let client = http();
    let post = |source: String, errortype: &str| {
        let event = event_json(&unique("e"), &source, json!({"errortype": errortype}));
        client
            .post(proxy.url("/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .json(&event)
            .send()
    };
    // Allowed errortypes (normalised before matching) pass; others are refused.
    let ok = post(format!("/{service}"), "Payment Declined")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = post(format!("/{service}"), "anything-else").await.unwrap();
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("errortype `anything-else`"),
        "{problem}"
    );

    // A service without a rule may send any errortype, but has only two new topics an hour.
    for errortype in ["first", "second"] {
        let resp = post(format!("/{limited}"), errortype).await.unwrap();
        assert_eq!(resp.status(), 200, "{errortype}");
    }
    let third = post(format!("/{limited}"), "third").await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let problem: Value = third.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "urn:courier:problem:topic-creation-limited"
    );
    // Existing topics are still written to.
    let again = post(format!("/{limited}"), "first").await.unwrap();
    assert_eq!(again.status(), 200);
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .create()
            .unwrap();
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let created: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| n.starts_with(&format!("{limited}.")))
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
    proxy.stop().await;
}
