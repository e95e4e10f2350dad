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

/// A wait that doubles per attempt from `initial` (after attempt 1: `2 × initial`), capped at
/// `max`: the sinks' retries of a batch.
pub fn doubling(initial: Duration, max: Duration, attempt: u32) -> Duration {
    crate::config::RetryPolicy {
        max_attempts: u32::MAX,
        initial_backoff: initial,
        factor: 2.0,
        max_backoff: max,
    }
    .backoff(attempt.saturating_add(1))
}
