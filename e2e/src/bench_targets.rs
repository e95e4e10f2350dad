//! What courier-bench sends: the events of a scenario (realistic ones, and the easy case of
//! one shape), and the targets the load generator drives — POSTs of pre-built bodies, records
//! through a direct rdkafka producer, events through `courier::Client`.

use std::sync::Arc;

use bytes::Bytes;
use courier_proxy::delivery::future_record;
use courier_shared::{Event, KafkaRecord, to_record};
use rdkafka::producer::FutureProducer;

use crate::bench_http::Http1Pool;
use crate::bench_measure::Target;

/// Event `i` of a scenario; ids differ between scenarios (`scenario` prefixes them), so the
/// proxy's dedupe window never answers one scenario with another's outcome.
pub fn event(source: &str, scenario: &str, i: usize, payload: &str) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": format!("{scenario}-{i}"),
        "source": source,
        "type": "bench.event",
        "partitionkey": format!("k{}", i % 1024),
        "data": {"i": i, "pad": payload},
    })
}

/// Event `i` as services send them: a unique id, one of 1,024 partition keys, and ~100–300
/// bytes of JSON data whose shape varies (the same generator as `scripts/bench/events.lua`).
pub fn realistic_event(source: &str, scenario: &str, i: usize) -> serde_json::Value {
    const WORDS: [&str; 16] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    ];
    let n = i.wrapping_mul(7919);
    let key = n % 1024;
    let items: Vec<serde_json::Value> = (1..=1 + n % 4)
        .map(|j| {
            serde_json::json!({
                "sku": format!("{}-{}", WORDS[(n + j) % 16], (n * j) % 9973),
                "qty": 1 + j,
            })
        })
        .collect();
    let note = format!("{} ", WORDS[n % 16]).repeat(2 + n % 9);
    serde_json::json!({
        "specversion": "1.0",
        "id": format!("{scenario}-{i}"),
        "source": source,
        "type": "order.created",
        "partitionkey": format!("customer-{key}"),
        "datacontenttype": "application/json",
        "data": {
            "customer": format!("customer-{key}"),
            "amount": format!("{}.{:02}", n % 10_000, n % 100).parse::<f64>().unwrap_or(0.0),
            "currency": "EUR",
            "items": items,
            "note": note,
        },
    })
}

/// The request bodies of a scenario: `units` bodies of `per_unit` consecutive events each,
/// `wrap` turning the events of one body into its JSON.
pub fn bodies(
    units: usize,
    per_unit: usize,
    make: impl Fn(usize) -> serde_json::Value,
    wrap: impl Fn(Vec<serde_json::Value>) -> serde_json::Value,
) -> serde_json::Result<Vec<Bytes>> {
    (0..units)
        .map(|u| {
            let events = (u * per_unit..(u + 1) * per_unit).map(&make).collect();
            serde_json::to_vec(&wrap(events)).map(Bytes::from)
        })
        .collect()
}

/// Pre-built bodies POSTed round-robin to one or more URLs; a unit is acknowledged when it
/// is answered `expect`.
#[derive(Debug)]
pub struct HttpPost {
    /// Where to POST, unit `i` to `targets[i % len]`: a connection pool and a path.
    pub targets: Vec<(Arc<Http1Pool>, String)>,
    /// The bodies' content type.
    pub content_type: &'static str,
    /// One body per unit.
    pub bodies: Vec<Bytes>,
    /// Events per body.
    pub per_unit: usize,
    /// The status that acknowledges a body: the proxy answers 200 only when every event of
    /// the body is in Kafka (202 when every one is in its store); the bridge answers 200
    /// with the offsets of every record.
    pub expect: u16,
}

impl Target for HttpPost {
    fn units(&self) -> usize {
        self.bodies.len()
    }
    fn events_per_unit(&self) -> usize {
        self.per_unit
    }
    async fn send(&self, i: usize) -> bool {
        let (pool, path) = &self.targets[i % self.targets.len()];
        pool.post(path, self.content_type, self.bodies[i].clone())
            .await
            .is_some_and(|status| status == self.expect)
    }
}

/// The Kafka records the proxy would write for `units` events made by `make`.
pub(crate) fn records(
    units: usize,
    make: impl Fn(usize) -> serde_json::Value,
) -> anyhow::Result<Vec<KafkaRecord>> {
    (0..units)
        .map(|i| {
            let json = serde_json::to_vec(&make(i))?;
            Ok(to_record(&Event::from_json(&json)?))
        })
        .collect()
}

/// Records sent with rdkafka directly, the proxy's producer settings.
pub(crate) struct Direct {
    pub(crate) producer: FutureProducer,
    pub(crate) topic: String,
    pub(crate) records: Vec<KafkaRecord>,
}

impl Target for Direct {
    fn units(&self) -> usize {
        self.records.len()
    }
    fn events_per_unit(&self) -> usize {
        1
    }
    async fn send(&self, i: usize) -> bool {
        match self
            .producer
            .send_result(future_record(&self.topic, &self.records[i]))
        {
            Ok(delivery) => matches!(delivery.await, Ok(Ok(_))),
            Err(_) => false,
        }
    }
}

/// Events published through one `courier::Client`, each awaited until the proxy answered
/// for it; the client builds, serialises and batches every event inside the timing.
pub(crate) struct ClientPublish {
    pub(crate) client: courier::Client,
    pub(crate) scenario: String,
    pub(crate) source: String,
    pub(crate) units: usize,
}

impl Target for ClientPublish {
    fn units(&self) -> usize {
        self.units
    }
    fn events_per_unit(&self) -> usize {
        1
    }
    async fn send(&self, i: usize) -> bool {
        // The same events as the other scenarios; building them is part of what the client
        // does for a service, so it is inside the timing.
        let e = realistic_event(&self.source, &self.scenario, i);
        let event = courier::Event::new("order.created")
            .id(format!("{}-{i}", self.scenario))
            .partition_key(e["partitionkey"].as_str().unwrap_or_default())
            .data(&e["data"]);
        self.client.publish_and_wait(event).await.is_ok()
    }
}

/// Creates `topic` as the proxy's default template would on the benchmark's cluster: 6
/// partitions, replication factor 3, `min.insync.replicas` 2.
pub async fn create_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new = NewTopic::new(topic, 6, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    for result in admin.create_topics([&new], &AdminOptions::new()).await? {
        if let Err((name, code)) = result {
            anyhow::bail!("creating {name}: {code}");
        }
    }
    Ok(())
}
