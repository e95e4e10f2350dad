//! `courier-proxy`: parses flags, loads the configuration, installs logging and signal
//! handlers, and runs [`courier_proxy::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use courier_proxy::Config;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

// Every request allocates and frees dozens of small blocks across worker threads; glibc's
// allocator spent a fifth of the proxy's CPU on them (free-list consolidation), mimalloc's
// thread-local pages a fraction of that. The `override` feature makes mimalloc the process's
// `malloc` too, so librdkafka's per-record allocations (a block per header, the message, its
// list) take the same fast path instead of glibc's arenas (see the README's benchmark section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Courier's HTTP-to-Kafka gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (`COURIER_CONFIG`).
    #[arg(long, env = "COURIER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Kafka bootstrap servers (overrides `kafka.bootstrap_servers`).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Print the effective configuration as TOML-compatible JSON and exit.
    #[arg(long)]
    print_config: bool,
}

impl Args {
    fn overrides(&self) -> Value {
        let mut o = Map::new();
        if let Some(listen) = self.listen {
            o.insert("listen".into(), json!(listen.to_string()));
        }
        if let Some(b) = &self.bootstrap_servers {
            o.insert("kafka".into(), json!({ "bootstrap_servers": b }));
        }
        Value::Object(o)
    }
}

fn main() -> anyhow::Result<()> {
    // mimalloc reserves its arenas in large aligned regions that the kernel would back with
    // transparent huge pages, 2 MiB at a time: 60 MiB more resident memory under load, for no
    // measurable gain. Off for this process before any thread starts (what mimalloc's own
    // `allow_thp=0` option does).
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("courier-proxy: transparent huge pages stay on: {e}");
    }
    let args = Args::parse();
    let config = Config::load(args.config.as_deref(), args.overrides())?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let workers = config.runtime.workers();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(config, workers))
}

async fn serve(config: Config, workers: usize) -> anyhow::Result<()> {
    let _telemetry = courier_telemetry::init("courier-proxy")?;
    tracing::info!(worker_threads = workers, "async runtime started");
    let listener = courier_proxy::server::bind(config.listen, config.limits.listen_backlog)
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    courier_proxy::run(config, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    shutdown.cancel();
}
