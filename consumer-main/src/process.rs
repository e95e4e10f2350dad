//! What the consumer binaries share as processes: logging and signal handling.

use std::io::IsTerminal as _;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// JSON logs when stdout is not a terminal, human ones otherwise; `RUST_LOG` filters
/// (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::stdout().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C; a shutdown still running `grace` later ends the
/// process with status 1.
pub async fn wait_for_signal(shutdown: CancellationToken, grace: Duration) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("signal received; shutting down");
    shutdown.cancel();
    tokio::time::sleep(grace).await;
    tracing::error!(
        grace_ms = grace.as_millis() as u64,
        "shutdown did not finish in time; exiting"
    );
    std::process::exit(1);
}
