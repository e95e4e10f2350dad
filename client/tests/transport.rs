//! The client against a scripted stand-in for the proxy (the real proxy and Kafka are in
//! `e2e/tests/client.rs`): what is resent, when, where to, and what is final.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use courier::{Client, DeliveryStatus, Error, Event, FullBuffer};
use serde_json::{Value, json};

type Script = dyn Fn(usize, &[Value]) -> Response + Send + Sync;

/// A stand-in proxy that records every batch and answers the n-th with `script(n, events)`.
struct Fake {
    requests: Mutex<Vec<Vec<Value>>>,
    script: Box<Script>,
    /// Requests wait here until it has permits (for a proxy that does not answer yet).
    gate: tokio::sync::Semaphore,
}

impl Fake {
    async fn start(
        script: impl Fn(usize, &[Value]) -> Response + Send + Sync + 'static,
    ) -> (Arc<Self>, String) {
        let fake = Arc::new(Self {
            requests: Mutex::new(Vec::new()),
            script: Box::new(script),
            gate: tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS),
        });
        let app = Router::new()
            .route("/v1/events", post(answer))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (fake, url)
    }

    fn requests(&self) -> Vec<Vec<Value>> {
        self.requests.lock().unwrap().clone()
    }

    fn ids(&self, request: usize) -> Vec<String> {
        self.requests()[request]
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn answer(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    assert_eq!(
        headers["content-type"], "application/cloudevents-batch+json",
        "batches are sent as CloudEvents JSON batches"
    );
    let events: Vec<Value> = serde_json::from_str(&body).unwrap();
    let n = {
        let mut requests = fake.requests.lock().unwrap();
        requests.push(events.clone());
        requests.len() - 1
    };
    let _pass = fake.gate.acquire().await.unwrap();
    (fake.script)(n, &events)
}

fn delivered(i: usize, e: &Value) -> Value {
    json!({"index": i, "id": e["id"], "status": "delivered", "code": 200,
           "topic": "shop.events", "partition": 1, "offset": i})
}

fn failed(i: usize, e: &Value, code: u16) -> Value {
    json!({"index": i, "id": e["id"], "status": "failed", "code": code,
           "problem": {"type": "urn:courier:problem:overloaded", "detail": "busy"}})
}

fn batch(status: u16, results: Vec<Value>, retry_after: Option<&str>) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"results": results})),
    )
        .into_response();
    if let Some(s) = retry_after {
        r.headers_mut().insert("retry-after", s.parse().unwrap());
    }
    r
}

fn all_delivered(events: &[Value]) -> Response {
    let results = events
        .iter()
        .enumerate()
        .map(|(i, e)| delivered(i, e))
        .collect();
    batch(200, results, None)
}

fn client(urls: &[&str]) -> courier::ClientBuilder {
    Client::builder("shop")
        .proxies(urls.iter().copied())
        .linger(Duration::from_millis(20))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

#[tokio::test]
async fn a_503_is_retried_with_the_same_ids_after_retry_after() {
    let (fake, url) = Fake::start(|n, events| {
        if n == 0 {
            let results = events
                .iter()
                .enumerate()
                .map(|(i, e)| failed(i, e, 503))
                .collect();
            batch(503, results, Some("1"))
        } else {
            all_delivered(events)
        }
    })
    .await;
    let client = client(&[&url]).build().unwrap();
    let started = Instant::now();
    let (a, b) = tokio::join!(
        client.publish_and_wait(Event::new("order.created").id("a")),
        client.publish_and_wait(Event::new("order.created"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(a.id, "a");
    assert_eq!(a.topic, "shop.events");
    assert!(matches!(
        a.status,
        DeliveryStatus::Delivered { partition: 1, .. }
    ));
    assert!(matches!(b.status, DeliveryStatus::Delivered { .. }));
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.ids(0), fake.ids(1), "the resend carries the same ids");
    let sent = &fake.requests()[0][1];
    assert_eq!(sent["source"], "/shop");
    assert_eq!(sent["specversion"], "1.0");
    assert!(sent["time"].is_string());
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.resent), (2, 2));
}

#[tokio::test]
async fn invalid_events_are_final_and_only_failed_ones_are_resent() {
    let (fake, url) = Fake::start(|n, events| {
        if n == 0 {
            let invalid = json!({"index": 0, "id": events[0]["id"], "status": "invalid",
                "code": 422, "problem": {"type": "urn:courier:problem:invalid-event",
                "detail": "attribute `source` is invalid"}});
            batch(207, vec![invalid, failed(1, &events[1], 429)], Some("0"))
        } else {
            all_delivered(events)
        }
    })
    .await;
    let client = client(&[&url]).build().unwrap();
    let (bad, good) = tokio::join!(
        client.publish_and_wait(Event::new("t").id("bad")),
        client.publish_and_wait(Event::new("t").id("good"))
    );
    match bad {
        Err(Error::Refused { status, problem }) => {
            assert_eq!(status, 422);
            assert!(problem.contains("invalid-event"), "{problem}");
        }
        other => panic!("expected a final refusal, got {other:?}"),
    }
    assert_eq!(good.unwrap().id, "good");
    assert_eq!(fake.ids(0), ["bad", "good"]);
    assert_eq!(fake.ids(1), ["good"], "the refused event is never resent");
    client.flush().await;
    assert_eq!(fake.requests().len(), 2);
    let stats = client.stats();
    assert_eq!((stats.refused, stats.delivered, stats.resent), (1, 1, 1));
}

#[tokio::test]
async fn a_proxy_that_does_not_answer_is_failed_over() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (fake, url) = Fake::start(|_, events| all_delivered(events)).await;
    // A long backoff: failing over must not wait for it.
    let client = client(&[&dead_url, &url])
        .backoff(Duration::from_secs(30), Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    for i in 0..50 {
        client
            .publish(Event::new("t").id(format!("e{i}")))
            .await
            .unwrap();
    }
    assert!(client.flush_timeout(Duration::from_secs(10)).await);
    assert!(started.elapsed() < Duration::from_secs(10));
    let received: usize = fake.requests().iter().map(Vec::len).sum();
    assert_eq!(received, 50);
    assert_eq!(client.stats().delivered, 50);
}

#[tokio::test]
async fn a_full_buffer_errors_or_waits_as_configured() {
    let (fake, url) = Fake::start(|_, events| all_delivered(events)).await;
    // Hold every answer back: events stay in the buffer.
    let held = fake
        .gate
        .forget_permits(tokio::sync::Semaphore::MAX_PERMITS);
    let failing = client(&[&url])
        .buffer_capacity(3)
        .on_full(FullBuffer::Error)
        .build()
        .unwrap();
    for _ in 0..3 {
        failing.publish(Event::new("t")).await.unwrap();
    }
    assert_eq!(
        failing.publish(Event::new("t")).await,
        Err(Error::BufferFull { capacity: 3 })
    );
    assert_eq!(
        failing.try_publish(Event::new("t")),
        Err(Error::BufferFull { capacity: 3 })
    );
    assert_eq!(failing.stats().buffer_full, 2);

    let waiting = client(&[&url])
        .buffer_capacity(3)
        .on_full(FullBuffer::Wait)
        .build()
        .unwrap();
    for _ in 0..3 {
        waiting.publish(Event::new("t")).await.unwrap();
    }
    let fourth = tokio::spawn({
        let waiting = waiting.clone();
        async move { waiting.publish(Event::new("t").id("fourth")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fourth.is_finished(),
        "publish waits while the buffer is full"
    );
    assert_eq!(waiting.buffered(), 3);
    fake.gate.add_permits(held);
    tokio::time::timeout(Duration::from_secs(10), fourth)
        .await
        .expect("room once the proxy answered")
        .unwrap()
        .unwrap();
    assert!(waiting.flush_timeout(Duration::from_secs(10)).await);
    assert!(failing.flush_timeout(Duration::from_secs(10)).await);
    assert_eq!(waiting.stats().delivered, 4);
    assert_eq!(waiting.buffered(), 0);
    let all: Vec<Value> = fake.requests().concat();
    assert!(all.iter().any(|e| e["id"] == "fourth"));
}

#[tokio::test]
async fn shutdown_sends_what_is_buffered_and_then_refuses() {
    let (fake, url) = Fake::start(|_, events| all_delivered(events)).await;
    let client = client(&[&url])
        .linger(Duration::from_secs(60))
        .build()
        .unwrap();
    for i in 0..5 {
        client
            .publish(Event::new("t").id(format!("s{i}")))
            .await
            .unwrap();
    }
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), client.shutdown())
        .await
        .expect("shutdown does not wait for the linger");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(fake.ids(0), ["s0", "s1", "s2", "s3", "s4"]);
    assert_eq!(client.stats().delivered, 5);
    assert_eq!(client.publish(Event::new("t")).await, Err(Error::Closed));
}

#[tokio::test]
async fn batches_respect_count_and_byte_limits() {
    let (fake, url) = Fake::start(|_, events| all_delivered(events)).await;
    let client = client(&[&url])
        .max_batch_events(10)
        .max_batch_bytes(4096)
        .build()
        .unwrap();
    for i in 0..35 {
        client
            .publish(Event::new("t").id(format!("n{i}")))
            .await
            .unwrap();
    }
    let big = "x".repeat(3000);
    for i in 0..3 {
        client
            .publish(Event::new("t").id(format!("big{i}")).data(&big))
            .await
            .unwrap();
    }
    assert!(client.flush_timeout(Duration::from_secs(10)).await);
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.len() <= 10));
    for r in &requests {
        let bytes: usize = r.iter().map(|e| e.to_string().len() + 1).sum();
        assert!(r.len() == 1 || bytes <= 4096, "a batch of {bytes} bytes");
    }
    let total: usize = requests.iter().map(Vec::len).sum();
    assert_eq!(total, 38);
}

#[tokio::test]
async fn an_event_no_proxy_takes_in_time_is_reported_undelivered() {
    let (_fake, url) = Fake::start(|_, events| {
        let results = events
            .iter()
            .enumerate()
            .map(|(i, e)| failed(i, e, 503))
            .collect();
        batch(503, results, None)
    })
    .await;
    let client = client(&[&url])
        .retry_for(Duration::from_millis(500))
        .build()
        .unwrap();
    let outcome = client.publish_and_wait(Event::new("t")).await;
    assert!(
        matches!(&outcome, Err(Error::Undelivered { last }) if last.contains("overloaded")),
        "{outcome:?}"
    );
    assert_eq!(client.stats().undelivered, 1);
    assert!(client.stats().resent >= 1);
}

#[tokio::test]
async fn a_request_refused_as_a_whole_is_final() {
    let (fake, url) = Fake::start(|_, _| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            [("content-type", "application/problem+json")],
            r#"{"type":"urn:courier:problem:payload-too-large","detail":"too big"}"#,
        )
            .into_response()
    })
    .await;
    let client = client(&[&url]).build().unwrap();
    let outcome = client.publish_and_wait(Event::new("t")).await;
    assert!(
        matches!(&outcome, Err(Error::Refused { status: 413, problem }) if problem.contains("payload-too-large")),
        "{outcome:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn bad_settings_are_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    assert!(matches!(
        Client::builder("shop").build(),
        Err(courier::BuildError::NoProxy)
    ));
    assert!(matches!(
        Client::builder("shop").proxy("ftp://x").build(),
        Err(courier::BuildError::BadUrl { .. })
    ));
    assert!(matches!(
        Client::builder("--").proxy("http://x").build(),
        Err(courier::BuildError::BadService(_))
    ));
    assert!(matches!(
        Client::builder("shop")
            .proxy("http://x")
            .buffer_capacity(0)
            .build(),
        Err(courier::BuildError::Invalid(_))
    ));
}

#[tokio::test]
async fn an_unreadable_success_or_a_404_is_resent_with_the_same_ids() {
    // First answer: 200 with a body that is not the proxy's (the events may be in Kafka);
    // second: a 404 from something that is not a Courier proxy; then the real answer.
    let (fake, url) = Fake::start(|n, events| match n {
        0 => (StatusCode::OK, "<html>ok</html>").into_response(),
        1 => StatusCode::NOT_FOUND.into_response(),
        _ => all_delivered(events),
    })
    .await;
    let client = client(&[&url]).build().unwrap();
    for i in 0..3 {
        client
            .publish(Event::new("t").id(format!("u{i}")))
            .await
            .unwrap();
    }
    assert!(client.flush_timeout(Duration::from_secs(10)).await);
    assert_eq!(fake.requests().len(), 3, "sent, resent twice");
    assert_eq!(fake.ids(0), fake.ids(1));
    assert_eq!(fake.ids(1), fake.ids(2));
    assert_eq!(client.stats().delivered, 3);
}
