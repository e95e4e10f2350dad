//! The Rust client and its attributes against real proxies and the three-broker cluster:
//! events published through the attributes land on their topics with the right attributes;
//! the client rides out a proxy restart and a failover between two proxies with nothing lost
//! and no duplicate beyond the events it had to resend; a full buffer waits or errors as
//! configured.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use courier::{Client, DeliveryStatus, Error, Event, FullBuffer, Level};
use courier_e2e::{TestProxy, header, read_by_id, unique};
use rdkafka::message::Message;
use serde_json::Value;

#[derive(Debug, courier::ErrorType)]
enum ChargeError {
    PaymentDeclined { reason: String },
    OutOfStock,
}

impl std::fmt::Display for ChargeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PaymentDeclined { reason } => write!(f, "payment declined: {reason}"),
            Self::OutOfStock => f.write_str("out of stock"),
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Charged {
    order: u64,
    cents: u64,
}

#[courier::publish(client = client, type = "order.charged")]
#[courier::publish_errors(client = client, type = "charge.failed", fields(order_id = order, cents))]
async fn charge(client: &Client, order: u64, cents: u64) -> Result<Charged, ChargeError> {
    match order % 3 {
        0 => Ok(Charged { order, cents }),
        1 => Err(ChargeError::PaymentDeclined {
            reason: "card expired".into(),
        }),
        _ => Err(ChargeError::OutOfStock),
    }
}

#[courier::publish_errors(client = client, errortype = "bad-input")]
fn parse_quantity(client: &Client, s: &str) -> Result<u32, std::num::ParseIntError> {
    s.parse()
}

fn client_for(service: &str, proxies: &[String]) -> courier::ClientBuilder {
    Client::builder(service)
        .proxies(proxies.iter().cloned())
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .retry_for(Duration::from_secs(120))
}

fn data(m: &rdkafka::message::OwnedMessage) -> Value {
    serde_json::from_slice(m.payload().expect("record value")).expect("JSON data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attribute_events_land_on_their_topics_with_their_attributes() {
    let proxy = TestProxy::start(|_| {}).await;
    let service = unique("billing");
    let client = client_for(&service, &[proxy.url("")]).build().unwrap();

    for order in 0..30 {
        let _ = charge(&client, order, 100 * order).await;
    }
    assert!(parse_quantity(&client, "seven").is_err());
    assert_eq!(parse_quantity(&client, "7").unwrap(), 7);
    let logged = client
        .publish_and_wait(Event::log(Level::Warn, "stock below threshold").extension("shard", 3))
        .await
        .unwrap();
    assert!(client.flush_timeout(Duration::from_secs(60)).await);
    let stats = client.stats();
    assert_eq!(stats.published, 10 + 20 + 1 + 1);
    assert_eq!(stats.delivered, stats.published, "{stats:?}");

    let declined = format!("{service}.error.payment-declined");
    let out_of_stock = format!("{service}.error.out-of-stock");
    let bad_input = format!("{service}.error.bad-input");
    let events = format!("{service}.events");
    let logs = format!("{service}.logs");
    let topics = [&declined, &out_of_stock, &bad_input, &events, &logs].map(String::as_str);
    let (seen, duplicates) = read_by_id(&topics, 32, Duration::from_secs(90)).await;
    assert_eq!(seen.len(), 32, "every event is in Kafka");
    assert_eq!(duplicates, 0);

    let on = |topic: &str| -> Vec<&rdkafka::message::OwnedMessage> {
        seen.values().filter(|m| m.topic() == topic).collect()
    };
    assert_eq!(on(&declined).len(), 10);
    assert_eq!(on(&out_of_stock).len(), 10);
    assert_eq!(on(&events).len(), 10);
    for m in on(&declined) {
        assert_eq!(header(m, "ce_category").as_deref(), Some("error"));
        assert_eq!(
            header(m, "ce_errortype").as_deref(),
            Some("payment-declined")
        );
        assert_eq!(header(m, "ce_type").as_deref(), Some("charge.failed"));
        assert_eq!(header(m, "ce_source"), Some(format!("/{service}")));
        assert!(header(m, "ce_time").is_some());
        let id = header(m, "ce_id").unwrap();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
        let d = data(m);
        assert_eq!(d["message"], "payment declined: card expired");
        assert_eq!(d["function"], "charge");
        let order = d["fields"]["order_id"].as_u64().unwrap();
        assert_eq!(order % 3, 1);
        assert_eq!(d["fields"]["cents"], 100 * order);
    }
    for m in on(&out_of_stock) {
        assert_eq!(header(m, "ce_errortype").as_deref(), Some("out-of-stock"));
        assert_eq!(data(m)["message"], "out of stock");
    }
    for m in on(&events) {
        assert_eq!(header(m, "ce_type").as_deref(), Some("order.charged"));
        assert_eq!(header(m, "ce_category").as_deref(), Some("event"));
        let d = data(m);
        assert_eq!(d["order"].as_u64().unwrap() % 3, 0);
    }
    let bad = *on(&bad_input).first().expect("the parse error");
    assert_eq!(
        header(bad, "ce_type").as_deref(),
        Some("parse_quantity.failed")
    );
    assert_eq!(data(bad)["function"], "parse_quantity");

    let log = &seen[&logged.id];
    assert_eq!(logged.topic, logs);
    assert_eq!(log.topic(), logs);
    assert_eq!(header(log, "ce_category").as_deref(), Some("log"));
    assert_eq!(header(log, "ce_shard").as_deref(), Some("3"));
    assert_eq!(
        logged.status,
        DeliveryStatus::Delivered {
            partition: log.partition(),
            offset: log.offset()
        },
        "publish_and_wait reports where Kafka has the event"
    );
    client.shutdown().await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_event_is_reported_and_not_retried() {
    let proxy = TestProxy::start(|_| {}).await;
    let service = unique("billing");
    let client = client_for(&service, &[proxy.url("")]).build().unwrap();
    // A source the naming policy cannot name a service from: refused for good by the proxy.
    let refused = client
        .publish_and_wait(Event::new("t").source("/%%%"))
        .await;
    assert!(
        matches!(&refused, Err(Error::Refused { status: 422, problem }) if problem.contains("invalid-topic")),
        "{refused:?}"
    );
    let ok = client.publish_and_wait(Event::new("t")).await.unwrap();
    assert!(matches!(ok.status, DeliveryStatus::Delivered { .. }));
    let stats = client.stats();
    assert_eq!((stats.refused, stats.resent), (1, 0));
    proxy.stop().await;
}

/// Publishes `n` events paced over about `n / 2` ms and, once half are out, runs `midway`
/// *while publishing goes on*: a proxy stopped or restarted midway meets events the client
/// is sending, as it would in production; returns their ids and what `midway` returned.
async fn paced_load<T>(
    client: &Client,
    n: usize,
    midway: impl AsyncFnOnce() -> T,
) -> (Vec<String>, Option<T>) {
    let half = tokio::sync::Notify::new();
    let publish = async {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let event = Event::new("paced").data(&serde_json::json!({"i": i}));
            let id = uuid::Uuid::now_v7().to_string();
            client.publish(event.id(id.clone())).await.unwrap();
            ids.push(id);
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if i == n / 2 {
                half.notify_one();
            }
        }
        ids
    };
    let midway = async {
        half.notified().await;
        midway().await
    };
    let (ids, returned) = tokio::join!(publish, midway);
    (ids, Some(returned))
}

/// Reads the ids back; asserts none is lost and every duplicate is one the client resent.
async fn account(scenario: &str, client: &Client, topic: &str, ids: &[String]) {
    assert!(
        client.flush_timeout(Duration::from_secs(120)).await,
        "{scenario}: flush"
    );
    let stats = client.stats();
    let (seen, duplicates) = read_by_id(&[topic], ids.len(), Duration::from_secs(120)).await;
    let lost = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    println!(
        "{scenario}: published {}, delivered {}, stored {}, resent {}, lost {lost}, duplicates {duplicates}",
        stats.published, stats.delivered, stats.stored, stats.resent
    );
    assert_eq!(lost, 0, "{scenario}: lost events");
    assert_eq!(stats.delivered + stats.stored, ids.len() as u64);
    assert_eq!((stats.refused, stats.undelivered), (0, 0));
    assert!(
        duplicates as u64 <= stats.resent,
        "{scenario}: {duplicates} duplicates, but only {} events were resent",
        stats.resent
    );
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_rides_out_a_proxy_restart_on_the_same_port() {
    let store = tempfile::tempdir().unwrap();
    let dlq_url = format!("sqlite:{}", store.path().join("dlq.db").display());
    let url = dlq_url.clone();
    let first = TestProxy::start(move |c| c.dlq.url = url).await;
    let addr: SocketAddr = first.addr;
    let service = unique("restart");
    let client = client_for(&service, &[first.url("")]).build().unwrap();
    let (ids, second) = paced_load(&client, 4_000, async || {
        first.stop().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The same port and the same store: a restart, as an operator would do it.
        TestProxy::start(move |c| {
            c.listen = addr;
            c.dlq.url = dlq_url;
        })
        .await
    })
    .await;
    account("proxy restart", &client, &format!("{service}.events"), &ids).await;
    assert!(client.stats().resent > 0, "the restart was felt");
    second.expect("restarted").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_fails_over_between_two_proxies() {
    let a = TestProxy::start(|_| {}).await;
    let b = TestProxy::start(|_| {}).await;
    let service = unique("failover");
    let client = client_for(&service, &[a.url(""), b.url("")])
        .build()
        .unwrap();
    let (ids, _) = paced_load(&client, 4_000, async || a.stop().await).await;
    account("failover", &client, &format!("{service}.events"), &ids).await;
    assert!(client.stats().resent > 0, "the stop was felt");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_buffer_waits_or_errors_as_configured() {
    // No proxy on this port yet: nothing leaves the buffer.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let base = format!("http://{addr}");
    let service = unique("full");
    let erroring = client_for(&service, std::slice::from_ref(&base))
        .buffer_capacity(50)
        .on_full(FullBuffer::Error)
        .build()
        .unwrap();
    let waiting = client_for(&service, std::slice::from_ref(&base))
        .buffer_capacity(50)
        .on_full(FullBuffer::Wait)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for client in [&erroring, &waiting] {
        for _ in 0..50 {
            let id = uuid::Uuid::now_v7().to_string();
            client
                .publish(Event::new("t").id(id.clone()))
                .await
                .unwrap();
            ids.push(id);
        }
    }
    assert_eq!(
        erroring.publish(Event::new("t")).await,
        Err(Error::BufferFull { capacity: 50 })
    );
    let more: Vec<String> = (0..20).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let blocked = tokio::spawn({
        let (waiting, more) = (waiting.clone(), more.clone());
        async move {
            for id in more {
                waiting.publish(Event::new("t").id(id)).await.unwrap();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !blocked.is_finished(),
        "publish waits while the buffer is full"
    );
    assert_eq!(waiting.buffered(), 50);

    let proxy = TestProxy::start(move |c| c.listen = addr).await;
    tokio::time::timeout(Duration::from_secs(60), blocked)
        .await
        .expect("room once the proxy is up")
        .unwrap();
    ids.extend(more);
    assert!(erroring.flush_timeout(Duration::from_secs(60)).await);
    assert!(waiting.flush_timeout(Duration::from_secs(60)).await);
    let (seen, _) = read_by_id(
        &[&format!("{service}.events")],
        ids.len(),
        Duration::from_secs(60),
    )
    .await;
    let lost = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    assert_eq!(lost, 0, "every event the buffer took is in Kafka");
    assert_eq!(erroring.stats().buffer_full, 1);
    proxy.stop().await;
}
