//! Every request limit answers its documented status, and the proxy serves the next valid
//! request: slow bodies (408), slow heads (connection closed), too many or too large header
//! fields (431), per-service event rates (429 with `Retry-After`), and the connection limit
//! (more connections wait until one closes).

use std::time::{Duration, Instant};

use courier_e2e::{TestProxy, event_json, http, unique};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CE_JSON: &str = "application/cloudevents+json";

async fn start() -> TestProxy {
    TestProxy::start(|c| {
        c.limits.body_read_timeout_ms = 500;
        c.limits.header_read_timeout_ms = 1_000;
        c.limits.max_headers = 32;
        c.limits.max_header_bytes = 8 * 1024;
        c.limits.max_connections = 4;
        c.limits.service_events_per_sec = 5;
    })
    .await
}

/// Sends raw bytes and reads what comes back until the server closes or `wait` passes.
async fn raw(proxy: &TestProxy, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn a_valid_request_is_served(proxy: &TestProxy, service: &str) {
    let resp = http()
        .post(proxy.url("/v1/events"))
        .header("content-type", CE_JSON)
        .body(event_json(&unique("ok-"), &format!("/{service}"), json!({})).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the next valid request is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_slow_heads_are_cut_off() {
    let proxy = start().await;
    let service = unique("limits");
    a_valid_request_is_served(&proxy, &service).await;

    // A body announced as 200 bytes of which 10 arrive: 408 once the body timeout passes.
    let started = Instant::now();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: {CE_JSON}\r\ncontent-length: 200\r\n\r\n{{\"specver"
    );
    let answer = raw(&proxy, head.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("urn:courier:problem:request-timeout"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Half a request line, then nothing: the connection is closed after the head timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /v1/ev").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the head timeout and a margin: {:?}",
        started.elapsed()
    );
    a_valid_request_is_served(&proxy, &service).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_large_header_fields_get_431() {
    let proxy = start().await;
    let service = unique("headers");
    let many: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw(
        &proxy,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let large = "v".repeat(12 * 1024);
    let answer = raw(
        &proxy,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-large: {large}\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    a_valid_request_is_served(&proxy, &service).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let proxy = start().await;
    let busy = unique("busy");
    let calm = unique("calm");
    // The first event creates the topic; a second later the bucket is full again.
    a_valid_request_is_served(&proxy, &busy).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let batch: Vec<Value> = (0..8)
        .map(|i| event_json(&format!("r-{i}"), &format!("/{busy}"), json!({})))
        .collect();
    let resp = http()
        .post(proxy.url("/v1/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(serde_json::to_string(&batch).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 207);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["delivered"], 5,
        "a burst of the per-second rate passes: {v}"
    );
    assert_eq!(v["failed"], 3, "{v}");
    for r in &v["results"].as_array().unwrap()[5..] {
        assert_eq!(r["code"], 429);
        assert_eq!(r["problem"]["type"], "urn:courier:problem:rate-limited");
    }

    // Eight single events at once: the bucket refills at 5/s, so some are refused.
    let singles = futures::future::join_all((0..8).map(|i| {
        let body = event_json(&format!("s-{i}"), &format!("/{busy}"), json!({})).to_string();
        let url = proxy.url("/v1/events");
        async move {
            http()
                .post(url)
                .header("content-type", CE_JSON)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    }))
    .await;
    let refused: Vec<_> = singles.iter().filter(|r| r.status() == 429).collect();
    assert!(refused.len() >= 3, "{} of 8 refused", refused.len());
    for r in refused {
        assert_eq!(r.headers()["retry-after"], "1");
    }
    a_valid_request_is_served(&proxy, &calm).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    a_valid_request_is_served(&proxy, &busy).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_one() {
    let proxy = TestProxy::start(|c| {
        c.limits.max_connections = 2;
        c.limits.header_read_timeout_ms = 30_000;
    })
    .await;
    let service = unique("conns");
    a_valid_request_is_served(&proxy, &service).await;
    // Two idle connections hold both slots (give the proxy a moment to accept them).
    let first = TcpStream::connect(proxy.addr).await.unwrap();
    let _second = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    assert!(
        client.get(proxy.url("/healthz")).send().await.is_err(),
        "a third connection is not served while two are open"
    );
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = false;
    while !served && Instant::now() < deadline {
        served = http()
            .get(proxy.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
    }
    assert!(served, "served once a connection closed");
    proxy.stop().await;
}
