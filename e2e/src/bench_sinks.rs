//! `courier-bench --mode sinks`: how fast the consumers drain a topic, in one run against
//! one cluster and one Elasticsearch — the Elasticsearch sink against a direct `_bulk`
//! loader of the same documents (same batch size and concurrency), run once before the sink
//! and once after it, and the handler runtime with a no-op handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use courier_consumer_es::elasticsearch::{
    ElasticsearchConfig, ElasticsearchSink, IndexName, document, document_id, event_time,
};
use courier_consumer_es::{PipelineConfig, PipelineStats, Sink as _, pipeline};
use courier_consumer_main::{Consumer, ConsumerConfig, Handler, HandlerError, Origin, Received};
use courier_shared::{Event, to_record};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

/// Most unmeasured loads that warm Elasticsearch before the sink is compared with the loader.
const WARM_LOADS: usize = 6;

/// Settings of the run.
#[derive(Debug, Clone)]
pub struct SinkBench {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// Elasticsearch URL.
    pub es_url: String,
    /// Events.
    pub events: usize,
    /// Payload bytes per event.
    pub payload_bytes: usize,
    /// Documents per bulk request (sink and direct loader alike).
    pub batch_docs: usize,
    /// Bulk requests in flight (sink and direct loader alike).
    pub in_flight: usize,
}

struct NoOp(Arc<AtomicU64>);

impl Handler for NoOp {
    type Payload = serde::de::IgnoredAny;
    async fn handle(&self, _: Received<serde::de::IgnoredAny>) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn events(prefix: &str, n: usize, payload_bytes: usize) -> Vec<Event> {
    let pad = "x".repeat(payload_bytes);
    (0..n)
        .map(|i| {
            let json = format!(
                r#"{{"specversion":"1.0","id":"{prefix}-{i}","source":"/bench","type":"bench.event","data":{{"n":{i},"pad":"{pad}"}}}}"#
            );
            Event::from_json(json.as_bytes()).expect("bench event")
        })
        .collect()
}

/// Waits until `counter` reaches `want` (at most `timeout`); the time from its first
/// increment to `want`.
async fn drain_time(
    counter: &AtomicU64,
    want: u64,
    timeout: Duration,
) -> anyhow::Result<(Duration, u64)> {
    let deadline = Instant::now() + timeout;
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let n = counter.load(Ordering::Relaxed);
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        if n >= want {
            let (t0, n0) = first.unwrap_or((Instant::now(), 0));
            return Ok((t0.elapsed(), want - n0));
        }
        if Instant::now() > deadline {
            bail!("only {n} of {want} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the three scenarios and prints their figures.
pub async fn run(b: SinkBench) -> anyhow::Result<()> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let tag = &id[id.len() - 10..];
    let topic = format!("bench{tag}.events");
    crate::bench_targets::create_topic(&b.bootstrap, &topic).await?;
    let all = events(tag, b.events, b.payload_bytes);
    println!(
        "writing {} events of ~{} bytes to {topic}",
        b.events, b.payload_bytes
    );
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &b.bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .create()?;
    let records: Vec<_> = all.iter().map(to_record).collect();
    let mut sends = futures::stream::FuturesUnordered::new();
    for r in &records {
        let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            h = h.insert(Header {
                key: k,
                value: Some(&**v),
            });
        }
        let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
            .payload(r.value.as_deref().unwrap_or_default())
            .headers(h);
        sends.push(producer.send(rec, Duration::from_secs(60)));
        if sends.len() >= 10_000 {
            use futures::StreamExt as _;
            if let Some(Err((e, _))) = sends.next().await {
                bail!("produce: {e}");
            }
        }
    }
    {
        use futures::StreamExt as _;
        while let Some(r) = sends.next().await {
            if let Err((e, _)) = r {
                bail!("produce: {e}");
            }
        }
    }
    let timeout = Duration::from_secs(1800);

    // The sink's index template first, as the sink installs it when it starts: the loaders'
    // indices match its pattern, so every load below indexes with the sink's mappings. (Without
    // it, the loads before the sink indexed with dynamic mappings and the sink was the first
    // to take the template's code path on a cold node.)
    let sink = ElasticsearchSink::new(ElasticsearchConfig {
        url: b.es_url.clone(),
        replicas: 0,
        ..ElasticsearchConfig::default()
    })?;
    sink.prepare(&CancellationToken::new())
        .await
        .map_err(|e| anyhow::anyhow!("installing the index template: {e}"))?;
    // A freshly started Elasticsearch indexes several times slower until its JVM has compiled
    // its code (in one run: 16,754 docs/s for the loader run first, 45,683 for the same
    // loader after the sink), and one unmeasured load was not always enough (44,093 before
    // the sink, 59,551 after it). Unmeasured loads warm it until two in a row agree within a
    // tenth, at most WARM_LOADS of them.
    let mut previous: Option<Duration> = None;
    for load in 1..=WARM_LOADS {
        let took = direct_load(&b, &all, &topic, &format!("{tag}w{load}")).await?;
        println!(
            "warming Elasticsearch: unmeasured load {load}: {:.0} docs/s",
            all.len() as f64 / took.as_secs_f64()
        );
        let settled = previous.is_some_and(|p| {
            let ratio = took.as_secs_f64() / p.as_secs_f64();
            (0.9..=1.1).contains(&ratio)
        });
        if settled {
            break;
        }
        previous = Some(took);
    }
    // The direct loader runs before the sink and again after it, each time into indices of
    // its own: the sink is compared with both, so the order does not decide the ratio.
    let direct_first = direct_load(&b, &all, &topic, &format!("{tag}a")).await?;
    // The sink.
    let shutdown = CancellationToken::new();
    let mut config = PipelineConfig::default();
    config.kafka.bootstrap_servers = b.bootstrap.clone();
    config.kafka.group_id = format!("bench-es-{tag}");
    config.topics = vec![topic.clone()];
    config.batch.max_docs = b.batch_docs;
    config.max_in_flight = b.in_flight;
    let stats = Arc::new(PipelineStats::default());
    let task = tokio::spawn(pipeline::run(
        Arc::new(sink),
        config,
        stats.clone(),
        shutdown.clone(),
    ));
    let (sink_time, sink_docs) = drain_time(&stats.written, b.events as u64, timeout).await?;
    shutdown.cancel();
    task.await??;
    let direct_second = direct_load(&b, &all, &topic, &format!("{tag}b")).await?;

    // The handler runtime, no-op handler.
    let handled = Arc::new(AtomicU64::new(0));
    let mut cc = ConsumerConfig::default();
    cc.kafka.bootstrap_servers = b.bootstrap.clone();
    cc.kafka.group_id = format!("bench-main-{tag}");
    cc.dedupe_capacity = 0;
    let runtime = Consumer::builder(cc)
        .route(&topic, NoOp(handled.clone()))?
        .build()?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runtime.run(shutdown.clone()));
    let (handler_time, handler_events) = drain_time(&handled, b.events as u64, timeout).await?;
    shutdown.cancel();
    task.await??;

    let sink_rate = sink_docs as f64 / sink_time.as_secs_f64();
    let rate = |t: Duration| b.events as f64 / t.as_secs_f64();
    let (first_rate, second_rate) = (rate(direct_first), rate(direct_second));
    let handler_rate = handler_events as f64 / handler_time.as_secs_f64();
    println!("| scenario | docs or events | seconds | per second | sink vs this |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| direct _bulk loader, run before the sink | {} | {:.2} | {first_rate:.0} | {:.0} % |",
        b.events,
        direct_first.as_secs_f64(),
        100.0 * sink_rate / first_rate
    );
    println!(
        "| Elasticsearch sink (Kafka → _bulk) | {sink_docs} | {:.2} | {sink_rate:.0} | |",
        sink_time.as_secs_f64(),
    );
    println!(
        "| direct _bulk loader, run after the sink | {} | {:.2} | {second_rate:.0} | {:.0} % |",
        b.events,
        direct_second.as_secs_f64(),
        100.0 * sink_rate / second_rate
    );
    println!(
        "| handler runtime, no-op handler | {handler_events} | {:.2} | {handler_rate:.0} | |",
        handler_time.as_secs_f64()
    );
    let worst = 100.0 * sink_rate / first_rate.max(second_rate);
    println!(
        "\ngoal: Elasticsearch sink >= 80 % of the direct _bulk loader, loader run first and second (measured {worst:.0} % of the faster): {}",
        if worst >= 80.0 {
            "reached"
        } else {
            "NOT reached"
        }
    );
    Ok(())
}

/// Loads the documents the sink writes straight into Elasticsearch with `_bulk`, the same
/// batches and concurrency, into indices named by `tag`; returns how long it took.
async fn direct_load(
    b: &SinkBench,
    all: &[Event],
    topic: &str,
    tag: &str,
) -> anyhow::Result<Duration> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let index = IndexName::parse(&format!("courier-direct{tag}-{{yyyy.MM.dd}}"))
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let bodies: Vec<Vec<u8>> = all
        .chunks(b.batch_docs.max(1))
        .enumerate()
        .map(|(c, chunk)| {
            let mut body = Vec::new();
            for (i, e) in chunk.iter().enumerate() {
                let origin = Origin {
                    topic: topic.to_owned(),
                    partition: 0,
                    offset: (c * b.batch_docs + i) as i64,
                    timestamp_ms: Some(0),
                };
                let action = serde_json::json!({"index": {"_index": index.render("", &event_time(e, &origin)), "_id": document_id(e)}});
                body.extend(serde_json::to_vec(&action).unwrap_or_default());
                body.push(b'\n');
                body.extend(document(e, &origin));
                body.push(b'\n');
            }
            body
        })
        .collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(b.in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let permit = sem.clone().acquire_owned().await?;
        let (http, url) = (
            http.clone(),
            format!("{}/_bulk?filter_path=errors", b.es_url),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let r = http
                .post(url)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await?;
            let v: serde_json::Value = r.json().await?;
            anyhow::ensure!(v["errors"] == false, "direct bulk had errors");
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("bulk task")??;
    }
    Ok(started.elapsed())
}
