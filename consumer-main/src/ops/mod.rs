//! Operating a consumer: `/healthz`, `/readyz` and Prometheus `/metrics` on a listener of
//! their own, for the handler runtime and the sink pipeline alike. A service that embeds the
//! runtime serves the same endpoints with [`serve`], or mounts [`router`] in its own axum app.
//!
//! [`Ops`] is the handle the consumer reports into: its [`ConsumerMetrics`] and [`Health`].
//! One per consumer: the lag, the assigned partitions and readiness describe one member of
//! one group, so two consumers in one process each get their own (and two listeners, or two
//! routers under different paths).

mod health;
mod metrics;
pub mod names;
mod server;

use std::sync::Arc;

pub use health::{Health, Readiness};
pub use metrics::{ConsumerMetrics, RecordOutcome, SinkErrorKind};
pub use server::{MAX_CONCURRENT_REQUESTS, router, serve};

/// What a consumer reports into and the endpoints read: metrics and readiness.
#[derive(Debug, Clone, Default)]
pub struct Ops {
    metrics: Arc<ConsumerMetrics>,
    health: Arc<Health>,
}

impl Ops {
    /// A fresh set: no metric counted, not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// The metrics.
    pub fn metrics(&self) -> &ConsumerMetrics {
        &self.metrics
    }

    /// The readiness flags.
    pub fn health(&self) -> &Health {
        &self.health
    }
}
