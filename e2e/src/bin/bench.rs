//! `courier-bench`: Courier's benchmarks against one Kafka cluster.
//!
//! - `--mode produce` (default): the proxy (single-event and batched POSTs, one and two proxy
//!   processes), the Rust client, a direct rdkafka producer and the Strimzi HTTP bridge side
//!   by side, at a fixed rate and at the maximum, with CPU and memory per process; a table on
//!   stdout, rows appended to `--csv`, charts written to `--svg-dir`.
//! - `--mode dlq`: the store's intake with Kafka down, then its drain.
//! - `--mode sinks`: the Elasticsearch sink against a direct `_bulk` loader, and the handler
//!   runtime with a no-op handler.
//!
//! The proxies run as separate processes: the `courier-proxy` binary next to this one, built
//! with the same profile. `scripts/bench.sh` builds both, starts the cluster (and the bridge)
//! and runs the whole thing.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use courier_e2e::{bench_dlq, bench_procs, bench_produce, bench_sinks};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Produce,
    Dlq,
    Sinks,
}

#[derive(Debug, Parser)]
#[command(
    about = "Courier's benchmarks: proxy, client, direct producer and Strimzi bridge \
                   side by side; the store; the consumers"
)]
struct Args {
    #[arg(long, value_enum, default_value = "produce")]
    mode: Mode,
    /// Kafka bootstrap servers.
    #[arg(long, env = "COURIER_TEST_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Events per scenario at the maximum (and for `dlq` and `sinks`).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Time limit of one scenario at the maximum, seconds.
    #[arg(long, default_value_t = 20.0)]
    max_secs: f64,
    /// The fixed rate, events/s.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// How long each fixed-rate scenario offers load, seconds.
    #[arg(long, default_value_t = 10.0)]
    rate_secs: f64,
    /// Requests in flight for single-event POSTs.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Events per batched POST (proxy, bridge and client alike).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Requests in flight for batched POSTs (proxy, bridge and client alike).
    #[arg(long, default_value_t = 16)]
    batch_concurrency: usize,
    /// Records in flight for the direct producer.
    #[arg(long, default_value_t = 10_000)]
    direct_in_flight: usize,
    /// Payload bytes per event (a JSON string of this length).
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Rounds of the whole sequence; the summary takes each scenario's median round.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Seconds of unmeasured direct-producer load before the first scenario (warm brokers).
    #[arg(long, default_value_t = 30.0)]
    warm_secs: f64,
    /// Only these scenarios (comma-separated): proxy-single, floor-single, wrk-single,
    /// proxy-single-1k, wrk-single-1k, proxy-single-4k, wrk-single-4k, proxy-single-easy,
    /// proxy-batch, proxy-batch-64, client, direct, bridge-single, bridge-batch,
    /// proxy2-single, proxy2-batch, proxy-batch-easy.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A running Strimzi Kafka HTTP bridge (its HTTP endpoint); without it the bridge is
    /// skipped.
    #[arg(long, env = "COURIER_TEST_BRIDGE_URL")]
    bridge_url: Option<String>,
    /// The bridge's process id, for its CPU and memory.
    #[arg(long, env = "COURIER_TEST_BRIDGE_PID")]
    bridge_pid: Option<u32>,
    /// The cluster's directory (`scripts/kafka/cluster.sh --dir`), for the brokers' CPU and
    /// memory.
    #[arg(long)]
    kafka_dir: Option<PathBuf>,
    /// The `wrk` Lua script of realistic events (`scripts/bench/events.lua`): the
    /// single-event scenarios then run with `wrk` too, and the summary compares the two
    /// generators.
    #[arg(long)]
    wrk_script: Option<PathBuf>,
    /// A proxy setting for every proxy the run starts, `COURIER_…=value` (repeatable), e.g.
    /// `COURIER_RUNTIME__WORKER_THREADS=1` to measure a setting against its default. The
    /// proxies otherwise run with their defaults: the run's own `COURIER_*` variables are
    /// not passed on.
    #[arg(long, value_parser = proxy_setting)]
    proxy_env: Vec<(String, String)>,
    /// CSV file the rows are appended to.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Directory the SVG charts are written to.
    #[arg(long)]
    svg_dir: Option<PathBuf>,
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

/// `COURIER_KEY=value` → (key, value).
fn proxy_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if k.starts_with("COURIER_") => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected COURIER_…=value, got {s:?}")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.mode {
        Mode::Sinks => {
            bench_sinks::run(bench_sinks::SinkBench {
                bootstrap: args.bootstrap,
                es_url: args.es_url,
                events: args.events,
                payload_bytes: args.payload_bytes,
                batch_docs: args.bulk_docs,
                in_flight: args.bulk_in_flight,
            })
            .await
        }
        Mode::Dlq => {
            bench_dlq::run(bench_dlq::DlqBench {
                bootstrap: args.bootstrap,
                events: args.events,
                batch_size: args.batch_size,
                batch_concurrency: args.batch_concurrency,
                payload_bytes: args.payload_bytes,
            })
            .await
        }
        Mode::Produce => {
            let broker_pids = match &args.kafka_dir {
                Some(dir) => bench_procs::broker_pids(dir)?,
                None => Vec::new(),
            };
            bench_produce::run(bench_produce::ProduceBench {
                bootstrap: args.bootstrap,
                events: args.events,
                max_secs: args.max_secs,
                rate: args.rate,
                rate_secs: args.rate_secs,
                single_concurrency: args.concurrency,
                batch_size: args.batch_size,
                batch_concurrency: args.batch_concurrency,
                direct_in_flight: args.direct_in_flight,
                payload_bytes: args.payload_bytes,
                rounds: args.rounds,
                warm_secs: args.warm_secs,
                bridge: args.bridge_url.map(|u| (u, args.bridge_pid)),
                broker_pids,
                only: args.only,
                wrk_script: args.wrk_script,
                proxy_env: args.proxy_env,
                csv: args.csv,
                svg_dir: args.svg_dir,
            })
            .await
        }
    }
}
