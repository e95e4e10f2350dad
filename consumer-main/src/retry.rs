//! Waiting between attempts without holding up shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Sleeps `wait`; false when `cancel` fired first.
pub async fn sleep_unless_cancelled(wait: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}
