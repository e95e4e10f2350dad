//! `courier-bench --mode dlq`: intake into the store with Kafka unreachable (every batch
//! answered 202), then how fast a proxy that reaches Kafka drains the same store.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::bench_measure::{Load, drive};
use crate::bench_targets::{HttpPost, bodies, event};
use crate::proxy_process::{Output, ProxyProcess, beside_current_exe, free_port};

/// Settings of the run.
#[derive(Debug, Clone)]
pub struct DlqBench {
    /// Kafka bootstrap servers (for the drain).
    pub bootstrap: String,
    /// Events stored, then drained.
    pub events: usize,
    /// Events per batched POST.
    pub batch_size: usize,
    /// Requests in flight.
    pub batch_concurrency: usize,
    /// Payload bytes per event.
    pub payload_bytes: usize,
}

/// Runs the intake, then the drain, and prints both.
pub async fn run(b: DlqBench) -> anyhow::Result<()> {
    let http = crate::http();
    let state = tempfile::tempdir()?;
    let dlq: &Path = &state.path().join("dlq.db");
    let dead = free_port()?;
    let outage_env = [
        ("COURIER_KAFKA__REQUEST_TIMEOUT_MS", "300"),
        ("COURIER_DELIVERY__ACK_TIMEOUT_MS", "300"),
        // Its scheduler stays out of the way: nothing is retried during the intake.
        ("COURIER_DLQ__BACKOFF_INITIAL_MS", "600000"),
    ];
    let proxy_bin = beside_current_exe("courier-proxy")?;
    let dlq_url = format!("sqlite:{}", dlq.display());
    let outage = ProxyProcess::spawn(
        &proxy_bin,
        &format!("127.0.0.1:{dead}"),
        &dlq_url,
        &outage_env,
        Output::Quiet,
    )?;
    outage
        .wait(&http, "/healthz", Duration::from_secs(60))
        .await?;
    let source = format!("/{}", crate::unique("bench-dlq-"));
    let payload = "p".repeat(b.payload_bytes);
    let units = b.events.div_ceil(b.batch_size);
    let target = HttpPost {
        targets: vec![(
            Arc::new(crate::bench_http::Http1Pool::new(
                crate::bench_http::Endpoint::parse(&outage.base)?.addr,
            )),
            "/v1/events".to_owned(),
        )],
        content_type: "application/cloudevents-batch+json",
        bodies: bodies(
            units,
            b.batch_size,
            |i| event(&source, "dlq", i, &payload),
            serde_json::Value::Array,
        )?,
        per_unit: b.batch_size,
        expect: 202,
    };
    eprintln!(
        "running: intake into the store, Kafka unreachable ({} per batch, {} in flight)",
        b.batch_size, b.batch_concurrency
    );
    let intake = drive(
        Arc::new(target),
        Load::Max {
            concurrency: b.batch_concurrency,
        },
        Duration::from_secs(600),
    )
    .await;
    drop(outage);

    let url = format!("sqlite:{}", dlq.display());
    let store = courier_proxy::store::Store::open(&url, 4).await?;
    // Everything stored becomes due now, as after an operator's replay: the drain is then
    // limited by the proxy and Kafka, not by the backoff schedule.
    let stored = store
        .list(&Default::default(), 0, i64::try_from(b.events)?)
        .await?;
    let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
    // The events' topic exists, as it would in a deployment that ran before the outage (the
    // proxy's default template: 6 partitions, replication factor 3, min.insync.replicas 2);
    // creating it is not part of the drain.
    if let Some(first) = stored.first() {
        crate::bench_targets::create_topic(&b.bootstrap, &first.topic).await?;
    }
    drop(stored);
    store.replay(Some(&seqs)).await?;
    let (pending, _) = store.counts().await?;
    eprintln!(
        "running: drain of {pending} stored events into Kafka at {}",
        b.bootstrap
    );
    // From the process's start: the figure includes connecting to Kafka; the rate once it is
    // ready is reported beside it.
    let started = Instant::now();
    let drainer = ProxyProcess::spawn(&proxy_bin, &b.bootstrap, &dlq_url, &[], Output::Quiet)?;
    drainer
        .wait(&http, "/readyz", Duration::from_secs(60))
        .await?;
    let ready = started.elapsed();
    let (pending_at_ready, _) = store.counts().await?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let (p, parked) = store.counts().await?;
        if p == 0 || Instant::now() > deadline {
            if p != 0 || parked != 0 {
                bail!("drain incomplete: {p} pending, {parked} parked");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    println!("| scenario | events | seconds | events/s | p50 ms | p99 ms | p999 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| intake into the store, Kafka down | {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} |",
        intake.events,
        intake.elapsed.as_secs_f64(),
        intake.rate(),
        intake.ms(0.5),
        intake.ms(0.99),
        intake.ms(0.999)
    );
    println!(
        "| drain of the store, Kafka back (from the proxy's start) | {pending} | {drain_secs:.2} | {:.0} | | | |",
        pending as f64 / drain_secs
    );
    let after_ready = drain_secs - ready.as_secs_f64();
    println!(
        "| drain of the store, once the proxy is ready ({:.2} s after its start) | {pending_at_ready} | {after_ready:.2} | {:.0} | | | |",
        ready.as_secs_f64(),
        pending_at_ready as f64 / after_ready.max(0.001)
    );
    let rate = pending as f64 / drain_secs;
    println!(
        "\ngoal: drain of the store >= 50,000 events/s once Kafka is back (measured {rate:.0}, from the proxy's start): {}",
        if rate >= 50_000.0 {
            "reached"
        } else {
            "NOT reached"
        }
    );
    if intake.errors > 0 {
        bail!("{} events were not stored", intake.errors);
    }
    Ok(())
}
