//! `courier-bench`: the same events through the proxy (single-event and batched POSTs at a
//! fixed concurrency) and through a direct rdkafka producer with the proxy's own producer
//! settings, in one run against one cluster; prints events/s and latency percentiles side by
//! side with the ratio to the direct producer. `--mode client` compares the Rust client with
//! batched POSTs instead, and `--mode dlq` measures the DLQ store.
//!
//! The proxy runs as a separate process (the `courier-proxy` binary next to this one, built
//! with the same profile) unless `--proxy-url` points at a running one.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use courier_proxy::config::{DeliveryConfig, KafkaConfig};
use courier_proxy::delivery::producer_config;
use courier_shared::{Event, to_record};
use hdrhistogram::Histogram;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Semaphore;

/// A free loopback port (bound and released).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[derive(Debug, Parser)]
#[command(about = "Proxy vs direct-producer throughput and latency, side by side")]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "COURIER_TEST_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Events per scenario.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Concurrent HTTP requests for single-event POSTs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events per batched POST.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Concurrent HTTP requests for batched POSTs.
    #[arg(long, default_value_t = 8)]
    batch_concurrency: usize,
    /// Events in flight at once for the direct producer.
    #[arg(long, default_value_t = 10_000)]
    direct_in_flight: usize,
    /// Use a running proxy instead of starting one.
    #[arg(long)]
    proxy_url: Option<String>,
    /// Payload bytes per event (a JSON string of this length).
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// `produce`: proxy vs direct producer. `dlq`: intake into the DLQ store with Kafka
    /// unreachable, then the drain rate once a proxy that reaches Kafka takes the store over.
    /// `sinks`: the Elasticsearch sink vs a direct `_bulk` loader, and the handler runtime.
    /// `client`: the Rust client (batches of `--batch-size`, `--batch-concurrency` requests
    /// in flight) vs batched POSTs of pre-built bodies with the same settings.
    #[arg(long, default_value = "produce")]
    mode: String,
    /// Tasks calling `publish` at once in `client` mode.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Rounds of (batched POSTs, client) in `client` mode.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Elasticsearch URL (`--mode sinks`).
    #[arg(
        long,
        env = "COURIER_TEST_ES_URL",
        default_value = "http://127.0.0.1:9200"
    )]
    es_url: String,
    /// Documents per bulk request (`--mode sinks`).
    #[arg(long, default_value_t = 2000)]
    bulk_docs: usize,
    /// Bulk requests in flight (`--mode sinks`).
    #[arg(long, default_value_t = 2)]
    bulk_in_flight: usize,
}

/// The figures of one scenario.
struct Figures {
    name: &'static str,
    events: usize,
    errors: usize,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        (self.events - self.errors) as f64 / self.elapsed.as_secs_f64()
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Event `i` of a scenario; ids differ between scenarios (`scenario` prefixes them), so the
/// proxy's dedupe window never answers one scenario with another's outcome.
fn event(source: &str, scenario: &str, i: usize, payload: &str) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": format!("{scenario}-{i}"),
        "source": source,
        "type": "bench.event",
        "partitionkey": format!("k{}", i % 1024),
        "data": {"i": i, "pad": payload},
    })
}

/// `events` events of `scenario` as JSON batch bodies of `batch_size`.
fn batch_bodies(
    source: &str,
    scenario: &str,
    events: usize,
    batch_size: usize,
    payload: &str,
) -> serde_json::Result<Vec<Vec<u8>>> {
    (0..events)
        .collect::<Vec<_>>()
        .chunks(batch_size)
        .map(|c| {
            let batch: Vec<_> = c
                .iter()
                .map(|i| event(source, scenario, *i, payload))
                .collect();
            serde_json::to_vec(&batch)
        })
        .collect()
}

struct ProxyProcess(Child);

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // Every scenario has finished and counted its acknowledgements by now.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(bootstrap: &str, env: &[(&str, String)]) -> anyhow::Result<(ProxyProcess, String)> {
    let bin = std::env::current_exe()?.with_file_name("courier-proxy");
    if !bin.exists() {
        bail!(
            "{} not found: build it with the same profile (cargo build --release -p courier-proxy)",
            bin.display()
        );
    }
    let port = free_port()?;
    let child = Command::new(&bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--bootstrap-servers",
            bootstrap,
        ])
        .env("RUST_LOG", "warn")
        // Measures the delivery path; authentication (one SHA-256 per request) is left out.
        .env("COURIER_AUTH__ENABLED", "false")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok((ProxyProcess(child), format!("http://127.0.0.1:{port}")))
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("proxy at {base} not ready within 60 s")
}

/// Sends `bodies` with `concurrency` requests in flight; each body carries `per_body` events.
async fn http_scenario(
    name: &'static str,
    client: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    bodies: Vec<Vec<u8>>,
    per_body: usize,
    concurrency: usize,
) -> Figures {
    http_scenario_as(
        name,
        client,
        url,
        content_type,
        bodies,
        per_body,
        concurrency,
        200,
    )
    .await
}

async fn http_scenario_expecting(
    name: &'static str,
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Vec<u8>>,
    per_body: usize,
    concurrency: usize,
    expected: u16,
) -> Figures {
    let ct = "application/cloudevents-batch+json";
    http_scenario_as(
        name,
        client,
        url,
        ct,
        bodies,
        per_body,
        concurrency,
        expected,
    )
    .await
}

/// Sends `bodies` with `concurrency` requests in flight; an answer other than `expected`
/// counts the body's events as errors.
#[allow(clippy::too_many_arguments)]
async fn http_scenario_as(
    name: &'static str,
    client: &reqwest::Client,
    url: &str,
    content_type: &'static str,
    bodies: Vec<Vec<u8>>,
    per_body: usize,
    concurrency: usize,
    expected: u16,
) -> Figures {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, bodies, next) =
            (client.clone(), url.to_owned(), bodies.clone(), next.clone());
        workers.spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let ok = match client
                    .post(&url)
                    .header("content-type", content_type)
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status() == expected && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let us = t.elapsed().as_micros() as u64;
                if ok {
                    let _ = hist.record_n(us.max(1), per_body as u64);
                } else {
                    errors += per_body;
                }
            }
            (hist, errors)
        });
    }
    let mut latency_us = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0;
    while let Some(done) = workers.join_next().await {
        let (h, e) = done.expect("worker");
        latency_us.add(h).expect("merge");
        errors += e;
    }
    Figures {
        name,
        events: bodies.len() * per_body,
        errors,
        elapsed: started.elapsed(),
        latency_us,
    }
}

async fn direct_scenario(
    bootstrap: &str,
    topic: &str,
    events: &[Event],
    in_flight: usize,
) -> anyhow::Result<Figures> {
    let kafka = KafkaConfig {
        bootstrap_servers: bootstrap.to_owned(),
        client_id: "courier-bench-direct".into(),
        ..KafkaConfig::default()
    };
    let producer: FutureProducer = producer_config(&kafka, &DeliveryConfig::default()).create()?;
    let records: Vec<_> = events.iter().map(to_record).collect();
    let permits = Arc::new(Semaphore::new(in_flight));
    let started = Instant::now();
    let mut acks = tokio::task::JoinSet::new();
    for r in &records {
        let permit = permits.clone().acquire_owned().await?;
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (key, value) in &r.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        let t = Instant::now();
        let future = producer.send_result(record).map_err(|(e, _)| e)?;
        acks.spawn(async move {
            let ok = matches!(future.await, Ok(Ok(_)));
            drop(permit);
            (ok, t.elapsed().as_micros() as u64)
        });
    }
    let mut latency_us = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    while let Some(done) = acks.join_next().await {
        let (ok, us) = done?;
        if ok {
            latency_us.record(us.max(1))?;
        } else {
            errors += 1;
        }
    }
    let elapsed = started.elapsed();
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await??;
    Ok(Figures {
        name: "direct rdkafka producer",
        events: records.len(),
        errors,
        elapsed,
        latency_us,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(args.batch_concurrency))
        .timeout(Duration::from_secs(30))
        .build()?;
    let state = tempfile::tempdir()?;
    let dlq_url = format!("sqlite:{}", state.path().join("dlq.db").display());
    if args.mode == "sinks" {
        return courier_e2e::bench_sinks::run(courier_e2e::bench_sinks::SinkBench {
            bootstrap: args.bootstrap.clone(),
            es_url: args.es_url.clone(),
            events: args.events,
            payload_bytes: args.payload_bytes,
            batch_docs: args.bulk_docs,
            in_flight: args.bulk_in_flight,
        })
        .await;
    }
    if args.mode == "dlq" {
        return dlq_bench(&args, &client, &dlq_url).await;
    }
    let (_proxy, base) = match &args.proxy_url {
        Some(url) => (None, url.trim_end_matches('/').to_owned()),
        None => {
            let (p, url) = start_proxy(&args.bootstrap, &[("COURIER_DLQ__URL", dlq_url.clone())])?;
            (Some(p), url)
        }
    };
    wait_ready(&client, &base).await?;
    let service = courier_e2e::unique("bench-");
    let source = format!("/{service}");
    let topic = format!("{service}.events");
    let url = format!("{base}/v1/events");
    let payload = "p".repeat(args.payload_bytes);

    // First publish creates the topic; all scenarios then write to the same one.
    let warm = client
        .post(&url)
        .header("content-type", "application/cloudevents+json")
        .body(event(&source, "warm", 0, &payload).to_string())
        .send()
        .await?;
    if warm.status() != 200 {
        bail!(
            "warm-up event answered {}: {}",
            warm.status(),
            warm.text().await?
        );
    }
    eprintln!(
        "courier-bench: {} events per scenario, topic {topic}, bootstrap {}",
        args.events, args.bootstrap
    );

    if args.mode == "client" {
        return client_bench(&args, &client, &base, &source).await;
    }

    let singles: Vec<Vec<u8>> = (0..args.events)
        .map(|i| serde_json::to_vec(&event(&source, "single", i, &payload)))
        .collect::<Result<_, _>>()?;
    let batches = batch_bodies(&source, "batch", args.events, args.batch_size, &payload)?;
    let parsed: Vec<Event> = singles
        .iter()
        .map(|b| Event::from_json(b))
        .collect::<Result<_, _>>()?;

    let mut results = Vec::new();
    eprintln!(
        "running: proxy, single-event POSTs (concurrency {})",
        args.concurrency
    );
    results.push(
        http_scenario(
            "proxy single-event POST",
            &client,
            &url,
            "application/cloudevents+json",
            singles,
            1,
            args.concurrency,
        )
        .await,
    );
    eprintln!(
        "running: proxy, batched POSTs ({} per batch, concurrency {})",
        args.batch_size, args.batch_concurrency
    );
    results.push(
        http_scenario(
            "proxy batched POST",
            &client,
            &url,
            "application/cloudevents-batch+json",
            batches,
            args.batch_size,
            args.batch_concurrency,
        )
        .await,
    );
    eprintln!(
        "running: direct rdkafka producer ({} in flight)",
        args.direct_in_flight
    );
    let direct = direct_scenario(&args.bootstrap, &topic, &parsed, args.direct_in_flight).await?;
    let ceiling = direct.rate();
    results.push(direct);

    println!();
    println!(
        "{:<26} {:>9} {:>7} {:>8} {:>11} {:>9} {:>9} {:>10}",
        "scenario", "events", "errors", "secs", "events/s", "p50 ms", "p99 ms", "vs direct"
    );
    for f in &results {
        println!(
            "{:<26} {:>9} {:>7} {:>8.2} {:>11.0} {:>9.2} {:>9.2} {:>9.0}%",
            f.name,
            f.events,
            f.errors,
            f.elapsed.as_secs_f64(),
            f.rate(),
            f.ms(0.50),
            f.ms(0.99),
            100.0 * f.rate() / ceiling
        );
    }
    let failed: usize = results.iter().map(|f| f.errors).sum();
    if failed > 0 {
        bail!("{failed} events were not acknowledged");
    }
    Ok(())
}

/// Batched POSTs of pre-built bodies and the same events through one `courier::Client`
/// (serialised, batched and answered inside the timing), alternating for `--rounds` rounds so
/// that both see the same load on a shared machine; prints each round and the totals.
async fn client_bench(
    args: &Args,
    http: &reqwest::Client,
    base: &str,
    source: &str,
) -> anyhow::Result<()> {
    let payload = "p".repeat(args.payload_bytes);
    let url = format!("{base}/v1/events");
    let service = source.trim_start_matches('/');
    let client = courier::Client::builder(service)
        .proxy(base)
        .max_batch_events(args.batch_size)
        .max_in_flight(args.batch_concurrency)
        .buffer_capacity(args.batch_size * args.batch_concurrency * 4)
        .build()?;
    // (name, events, errors, secs)
    let mut rows: Vec<(String, usize, usize, f64)> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let batches = client_shaped_bodies(source, &format!("raw{round}"), args, &payload)?;
        eprintln!(
            "round {round}: batched POSTs ({} per batch, concurrency {})",
            args.batch_size, args.batch_concurrency
        );
        let raw = http_scenario(
            "raw batched HTTP POST",
            http,
            &url,
            "application/cloudevents-batch+json",
            batches,
            args.batch_size,
            args.batch_concurrency,
        )
        .await;
        rows.push((
            format!("raw batched POST, round {round}"),
            raw.events,
            raw.errors,
            raw.elapsed.as_secs_f64(),
        ));
        eprintln!(
            "round {round}: courier::Client ({} publishers, batches of {}, {} requests in flight)",
            args.publishers, args.batch_size, args.batch_concurrency
        );
        let before = client.stats();
        let started = Instant::now();
        publish_all(&client, args, &format!("client{round}"), &payload).await?;
        let secs = started.elapsed().as_secs_f64();
        let after = client.stats();
        let accepted =
            usize::try_from((after.delivered + after.stored) - (before.delivered + before.stored))?;
        rows.push((
            format!("courier::Client, round {round}"),
            args.events,
            args.events - accepted,
            secs,
        ));
    }
    client.shutdown().await;

    let total = |prefix: &str| {
        let (mut events, mut errors, mut secs) = (0, 0, 0.0);
        for (name, e, err, s) in &rows {
            if name.starts_with(prefix) {
                events += e;
                errors += err;
                secs += s;
            }
        }
        (events, errors, secs)
    };
    let raw_total = total("raw");
    let client_total = total("courier");
    let rate = |(events, errors, secs): (usize, usize, f64)| (events - errors) as f64 / secs;
    let raw_rate = rate(raw_total);
    println!();
    println!(
        "{:<32} {:>9} {:>7} {:>8} {:>11} {:>8}",
        "scenario", "events", "errors", "secs", "events/s", "vs raw"
    );
    rows.push((
        "raw batched POST, all rounds".into(),
        raw_total.0,
        raw_total.1,
        raw_total.2,
    ));
    rows.push((
        "courier::Client, all rounds".into(),
        client_total.0,
        client_total.1,
        client_total.2,
    ));
    for (name, events, errors, secs) in &rows {
        let r = rate((*events, *errors, *secs));
        println!(
            "{name:<32} {events:>9} {errors:>7} {secs:>8.2} {r:>11.0} {:>7.0}%",
            100.0 * r / raw_rate
        );
    }
    eprintln!("client stats: {:?}", client.stats());
    if raw_total.1 + client_total.1 > 0 {
        bail!("not every event was acknowledged");
    }
    Ok(())
}

/// Batch bodies of the events the client sends: the same attributes, `time` included.
fn client_shaped_bodies(
    source: &str,
    scenario: &str,
    args: &Args,
    payload: &str,
) -> serde_json::Result<Vec<Vec<u8>>> {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    (0..args.events)
        .collect::<Vec<_>>()
        .chunks(args.batch_size)
        .map(|c| {
            let batch: Vec<_> = c
                .iter()
                .map(|i| {
                    let mut e = event(source, scenario, *i, payload);
                    e["time"] = time.clone().into();
                    e
                })
                .collect();
            serde_json::to_vec(&batch)
        })
        .collect()
}

/// The data of a bench event, as a service would declare it.
#[derive(serde::Serialize)]
struct Payload<'a> {
    i: usize,
    pad: &'a str,
}

/// Publishes `--events` events through `client` from `--publishers` tasks and waits until
/// each has its outcome.
async fn publish_all(
    client: &courier::Client,
    args: &Args,
    scenario: &str,
    payload: &str,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let payload: Arc<str> = payload.into();
    let scenario: Arc<str> = scenario.into();
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..args.publishers.max(1) {
        let (client, next, payload, scenario, events) = (
            client.clone(),
            next.clone(),
            payload.clone(),
            scenario.clone(),
            args.events,
        );
        publishers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return Ok::<_, courier::Error>(());
                }
                let event = courier::Event::new("bench.event")
                    .id(format!("{scenario}-{i}"))
                    .partition_key(format!("k{}", i % 1024))
                    .data(&Payload { i, pad: &payload });
                client.publish(event).await?;
            }
        });
    }
    while let Some(done) = publishers.join_next().await {
        done??;
    }
    client.flush().await;
    Ok(())
}

/// Intake into the DLQ store with Kafka unreachable, then the drain rate when a proxy that
/// reaches Kafka takes the same store over.
async fn dlq_bench(args: &Args, client: &reqwest::Client, dlq_url: &str) -> anyhow::Result<()> {
    let dead = free_port()?;
    let outage_env = [
        ("COURIER_DLQ__URL", dlq_url.to_owned()),
        ("COURIER_KAFKA__REQUEST_TIMEOUT_MS", "300".to_owned()),
        ("COURIER_DELIVERY__ACK_TIMEOUT_MS", "300".to_owned()),
        // Its scheduler stays out of the way: nothing is retried during the intake.
        ("COURIER_DLQ__BACKOFF_INITIAL_MS", "600000".to_owned()),
    ];
    let (outage_proxy, base) = start_proxy(&format!("127.0.0.1:{dead}"), &outage_env)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("proxy did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let service = courier_e2e::unique("bench-dlq-");
    let source = format!("/{service}");
    let payload = "p".repeat(args.payload_bytes);
    let batches = batch_bodies(&source, "dlq", args.events, args.batch_size, &payload)?;
    eprintln!(
        "running: intake into the DLQ store, Kafka unreachable ({} per batch, concurrency {})",
        args.batch_size, args.batch_concurrency
    );
    let intake = http_scenario_expecting(
        "DLQ intake (Kafka down)",
        client,
        &format!("{base}/v1/events"),
        batches,
        args.batch_size,
        args.batch_concurrency,
        202,
    )
    .await;
    drop(outage_proxy);

    let store = courier_proxy::dlq::DlqStore::open(dlq_url, 4).await?;
    // Everything stored becomes due now, as after an operator's replay: the drain is then
    // limited by the proxy and Kafka, not by the backoff schedule.
    let seqs: Vec<i64> = store
        .list(&Default::default(), 0, i64::try_from(args.events)?)
        .await?
        .into_iter()
        .map(|e| e.seq)
        .collect();
    store.replay(Some(&seqs)).await?;
    let (pending, _) = store.counts().await?;
    eprintln!(
        "running: drain of {pending} stored events into Kafka at {}",
        args.bootstrap
    );
    let started = Instant::now();
    let (_drainer, _) = start_proxy(&args.bootstrap, &[("COURIER_DLQ__URL", dlq_url.to_owned())])?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let (p, parked) = store.counts().await?;
        if p == 0 || Instant::now() > deadline {
            if p != 0 || parked != 0 {
                bail!("drain incomplete: {p} pending, {parked} parked");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    println!();
    println!(
        "{:<26} {:>9} {:>7} {:>8} {:>11} {:>9} {:>9}",
        "scenario", "events", "errors", "secs", "events/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<26} {:>9} {:>7} {:>8.2} {:>11.0} {:>9.2} {:>9.2}",
        intake.name,
        intake.events,
        intake.errors,
        intake.elapsed.as_secs_f64(),
        intake.rate(),
        intake.ms(0.50),
        intake.ms(0.99)
    );
    println!(
        "{:<26} {:>9} {:>7} {:>8.2} {:>11.0} {:>9} {:>9}",
        "DLQ drain (Kafka back)",
        pending,
        0,
        drain_secs,
        pending as f64 / drain_secs,
        "-",
        "-"
    );
    if intake.errors > 0 {
        bail!("{} events were not stored", intake.errors);
    }
    Ok(())
}
