//! What the consumer binaries share as processes: signal handling (logging and traces are
//! [`courier_telemetry`]'s, re-exported as `courier_consumer_main::telemetry`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

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
