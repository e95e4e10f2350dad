//! `courier-consumer-main`: an example main server on the consumer runtime. It counts
//! orders (`shop.events`-like topics) and raises an alert for every error event, and can
//! journal each handled event to a file (one `handler<TAB>event id` line each). It serves
//! `/healthz`, `/readyz` and `/metrics` on `--listen`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use courier_consumer_main::{Consumer, ConsumerConfig, Handler, HandlerError, Received};
use std::io::Write as _;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "courier-consumer-main",
    about = "Example main server: counts orders, alerts on error events"
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "COURIER_KAFKA__BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,
    /// Consumer group.
    #[arg(long, env = "COURIER_CONSUMER_GROUP", default_value = "courier-main")]
    group: String,
    /// Address of the operations listener (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "COURIER_CONSUMER_LISTEN", default_value = "0.0.0.0:9090")]
    listen: SocketAddr,
    /// Topics of orders (regex with a leading `^`, or a topic name).
    #[arg(long, default_value = r"^shop\.events$")]
    orders: String,
    /// Topics of error events.
    #[arg(long, default_value = r"^[a-z0-9-]+\.error\..+")]
    errors: String,
    /// Append `handler<TAB>event id` for every handled event to this file.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Topic metadata refresh (ms): how soon new topics matching a pattern are consumed.
    #[arg(long, default_value_t = 5000)]
    metadata_refresh_ms: u64,
    /// Attempts for retriable handler errors before dead-lettering.
    #[arg(long, default_value_t = 4)]
    max_attempts: u32,
}

/// One order as the shop publishes it.
#[derive(Debug, serde::Deserialize)]
struct Order {
    amount: f64,
}

#[derive(Debug, Clone)]
struct Journal(Option<Arc<std::sync::Mutex<std::fs::File>>>);

impl Journal {
    async fn record(&self, handler: &str, id: &str) -> Result<(), HandlerError> {
        if let Some(file) = &self.0 {
            // One short append per event (no fsync: a killed process loses nothing written).
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(format!("{handler}\t{id}\n").as_bytes())
                .map_err(|e| HandlerError::from_error(&e, true))?;
        }
        Ok(())
    }
}

/// Counts orders and their total; a negative amount breaks a business rule.
#[derive(Debug)]
struct OrderCounter {
    orders: AtomicU64,
    journal: Journal,
}

impl Handler for OrderCounter {
    type Payload = Order;

    async fn handle(&self, order: Received<Order>) -> Result<(), HandlerError> {
        if order.data.amount < 0.0 {
            return Err(HandlerError::fatal(format!(
                "order {} has a negative amount",
                order.event.id
            ))
            .with_class("shop.InvalidOrder"));
        }
        self.journal.record("orders", &order.event.id).await?;
        let n = self.orders.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(1000) {
            tracing::info!(orders = n, "orders counted");
        }
        Ok(())
    }
}

/// Raises an alert (a warning log line) for every error event.
#[derive(Debug)]
struct ErrorAlerter {
    journal: Journal,
}

impl Handler for ErrorAlerter {
    type Payload = serde_json::Value;

    async fn handle(&self, error: Received<serde_json::Value>) -> Result<(), HandlerError> {
        tracing::warn!(
            alert = true, event_id = %error.event.id, source = %error.event.source,
            errortype = error.event.errortype.as_deref().unwrap_or(""), topic = %error.origin.topic,
            "error event"
        );
        self.journal.record("alerts", &error.event.id).await
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = courier_consumer_main::telemetry::init("courier-consumer-main")?;
    let journal = match &args.journal {
        Some(path) => Journal(Some(Arc::new(std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )))),
        None => Journal(None),
    };
    let mut config = ConsumerConfig::default();
    config.kafka.bootstrap_servers = args.bootstrap_servers;
    config.kafka.group_id = args.group;
    config.kafka.metadata_refresh_ms = args.metadata_refresh_ms;
    config.retry.max_attempts = args.max_attempts;
    let consumer = Consumer::builder(config)
        .route(
            &args.orders,
            OrderCounter {
                orders: AtomicU64::new(0),
                journal: journal.clone(),
            },
        )?
        .route(&args.errors, ErrorAlerter { journal })?
        .build()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("operations listener on {}: {e}", args.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(courier_consumer_main::process::wait_for_signal(
        shutdown.clone(),
        Duration::from_secs(60),
    ));
    // The endpoints outlive the consumer's drain: /readyz says 503 meanwhile.
    let ops_stop = CancellationToken::new();
    let ops = tokio::spawn(courier_consumer_main::ops::serve(
        listener,
        consumer.ops(),
        ops_stop.clone(),
    ));
    let result = consumer.run(shutdown).await;
    ops_stop.cancel();
    ops.await??;
    result?;
    Ok(())
}
