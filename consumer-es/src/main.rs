//! `courier-consumer-es`: runs a sink pipeline — Elasticsearch (default) or Splunk HEC —
//! over the topics matching `--topics`, and serves `/healthz`, `/readyz` and `/metrics` on
//! `--listen`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use courier_consumer_es::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use courier_consumer_es::splunk::{SplunkConfig, SplunkSink};
use courier_consumer_es::{PipelineConfig, PipelineStats, Sink, pipeline};
use courier_consumer_main::Ops;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SinkKind {
    Elasticsearch,
    Splunk,
}

#[derive(Debug, Parser)]
#[command(
    name = "courier-consumer-es",
    about = "Indexes Courier events into Elasticsearch or Splunk HEC"
)]
struct Args {
    /// Which sink.
    #[arg(long, value_enum, default_value = "elasticsearch")]
    sink: SinkKind,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "COURIER_KAFKA__BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,
    /// Consumer group.
    #[arg(long, env = "COURIER_CONSUMER_GROUP", default_value = "courier-es")]
    group: String,
    /// Address of the operations listener (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "COURIER_CONSUMER_LISTEN", default_value = "0.0.0.0:9091")]
    listen: SocketAddr,
    /// Topic patterns (`^regex`) or names; repeat for several.
    #[arg(long = "topics", default_values_t = [String::from(r"^[a-z0-9-]+\.(events|logs|error\..+)$")])]
    topics: Vec<String>,
    /// Topic metadata refresh (ms): how soon new topics matching a pattern are consumed.
    #[arg(long, default_value_t = 5000)]
    metadata_refresh_ms: u64,
    /// Records per batch at most.
    #[arg(long, default_value_t = 2000)]
    batch_docs: usize,
    /// Bytes per batch at most.
    #[arg(long, default_value_t = 5 << 20)]
    batch_bytes: usize,
    /// Milliseconds a batch waits for more records at most.
    #[arg(long, default_value_t = 500)]
    batch_wait_ms: u64,
    /// Batches written at once.
    #[arg(long, default_value_t = 2)]
    in_flight: usize,
    /// Elasticsearch URL.
    #[arg(long, env = "COURIER_ES_URL", default_value = "http://127.0.0.1:9200")]
    es_url: String,
    /// Index name template.
    #[arg(long, default_value = "courier-{topic}-{yyyy.MM.dd}")]
    es_index: String,
    /// Replicas of new indices (0 for a single node).
    #[arg(long, default_value_t = 1)]
    es_replicas: u32,
    /// Timeout of one Elasticsearch request (ms).
    #[arg(long, default_value_t = 30_000)]
    es_timeout_ms: u64,
    /// Splunk HEC base URL.
    #[arg(
        long,
        env = "COURIER_SPLUNK_URL",
        default_value = "https://127.0.0.1:8088"
    )]
    splunk_url: String,
    /// Splunk HEC token.
    #[arg(long, env = "COURIER_SPLUNK_TOKEN", default_value = "")]
    splunk_token: String,
    /// Splunk index (default: the token's).
    #[arg(long)]
    splunk_index: Option<String>,
    /// Seconds a batch may stay unacknowledged before it is resent.
    #[arg(long, default_value_t = 60)]
    splunk_ack_timeout_secs: u64,
    /// Count a batch Splunk answered 200 without an ack id as written (only for a HEC token
    /// with indexer acknowledgement off; by default such an answer stops the sink).
    #[arg(long)]
    splunk_no_ack: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = courier_consumer_main::telemetry::init("courier-consumer-es")?;
    let mut config = PipelineConfig::default();
    config.kafka.bootstrap_servers = args.bootstrap_servers.clone();
    config.kafka.group_id = args.group.clone();
    config.kafka.metadata_refresh_ms = args.metadata_refresh_ms;
    config.topics = args.topics.clone();
    config.batch.max_docs = args.batch_docs;
    config.batch.max_bytes = args.batch_bytes;
    config.batch.max_wait = Duration::from_millis(args.batch_wait_ms);
    config.max_in_flight = args.in_flight;
    let shutdown = CancellationToken::new();
    tokio::spawn(courier_consumer_main::process::wait_for_signal(
        shutdown.clone(),
        Duration::from_secs(60),
    ));
    let stats = Arc::new(PipelineStats::default());
    match args.sink {
        SinkKind::Elasticsearch => {
            let sink = ElasticsearchSink::new(ElasticsearchConfig {
                url: args.es_url,
                index: args.es_index,
                replicas: args.es_replicas,
                request_timeout: Duration::from_millis(args.es_timeout_ms),
                ..ElasticsearchConfig::default()
            })?;
            run(sink, config, stats, args.listen, shutdown).await
        }
        SinkKind::Splunk => {
            let sink = SplunkSink::new(SplunkConfig {
                url: args.splunk_url,
                token: args.splunk_token,
                index: args.splunk_index,
                ack_timeout: Duration::from_secs(args.splunk_ack_timeout_secs),
                require_ack: !args.splunk_no_ack,
                ..SplunkConfig::default()
            })?;
            run(sink, config, stats, args.listen, shutdown).await
        }
    }
}

async fn run<S: Sink>(
    sink: S,
    config: PipelineConfig,
    stats: Arc<PipelineStats>,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("operations listener on {listen}: {e}"))?;
    // The endpoints outlive the pipeline's drain: /readyz says 503 meanwhile.
    let ops = Ops::new();
    let ops_stop = CancellationToken::new();
    let server = tokio::spawn(courier_consumer_main::ops::serve(
        listener,
        ops.clone(),
        ops_stop.clone(),
    ));
    let result = pipeline::run_with_ops(Arc::new(sink), config, stats, ops, shutdown).await;
    ops_stop.cancel();
    server.await??;
    result?;
    Ok(())
}
