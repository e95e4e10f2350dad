//! The application state every handler, the intake and the background tasks share: the
//! pipeline, the topic manager, the store, the keys and schemas, the dedupe window and the
//! rate limits, behind one cheap-to-clone handle.

use std::sync::Arc;

use courier_shared::ProblemKind;
use tokio_util::sync::CancellationToken;

use crate::config::{DeliveryConfig, DlqConfig, LimitsConfig};
use crate::delivery::Pipeline;
use crate::error::ApiError;
use crate::store::Store;
use crate::topics::TopicManager;
use crate::{dedupe, rate};

/// Everything a handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    pipeline: Pipeline,
    topics: Arc<TopicManager>,
    store: Option<Store>,
    dlq_config: DlqConfig,
    wake_scheduler: Arc<tokio::sync::Notify>,
    limits: LimitsConfig,
    delivery: DeliveryConfig,
    admin_token: Option<String>,
    keys: Arc<crate::auth::KeyRing>,
    policy_version: std::sync::atomic::AtomicI64,
    schemas: Arc<crate::schemas::SchemaRegistry>,
    dedupe: dedupe::DedupeWindow,
    rate_limits: Option<rate::ServiceLimits>,
    openapi: std::sync::OnceLock<serde_json::Value>,
    shutdown: CancellationToken,
}

/// The parts [`AppState`] is built from.
#[derive(Debug)]
pub struct Parts {
    /// The delivery pipeline.
    pub pipeline: Pipeline,
    /// The topic manager.
    pub topics: Arc<TopicManager>,
    /// The store (events, settings, keys, audit).
    pub store: Option<Store>,
    /// Its configuration.
    pub dlq_config: DlqConfig,
    /// Wakes the retry scheduler when events were stored.
    pub wake_scheduler: Arc<tokio::sync::Notify>,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
    /// The admin API's bearer token.
    pub admin_token: Option<String>,
    /// The publish endpoints' API keys.
    pub keys: Arc<crate::auth::KeyRing>,
    /// Version of the topic policy in force (0: from the configuration).
    pub policy_version: i64,
    /// The JSON Schemas per event type.
    pub schemas: Arc<crate::schemas::SchemaRegistry>,
    /// Fires when shutdown begins.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Bundles the components.
    pub fn new(p: Parts) -> Self {
        let rate_limits = rate::ServiceLimits::new(p.limits.service_events_per_sec);
        let dedupe = dedupe::DedupeWindow::new(
            std::time::Duration::from_secs(p.delivery.dedupe_window_secs),
            p.delivery.dedupe_max_bytes,
        );
        Self(Arc::new(Inner {
            pipeline: p.pipeline,
            topics: p.topics,
            store: p.store,
            dlq_config: p.dlq_config,
            wake_scheduler: p.wake_scheduler,
            limits: p.limits,
            delivery: p.delivery,
            admin_token: p.admin_token,
            keys: p.keys,
            policy_version: std::sync::atomic::AtomicI64::new(p.policy_version),
            schemas: p.schemas,
            dedupe,
            rate_limits,
            openapi: std::sync::OnceLock::new(),
            shutdown: p.shutdown,
        }))
    }

    /// A shared handle on the topic manager.
    pub fn topics_handle(&self) -> Arc<TopicManager> {
        self.0.topics.clone()
    }

    /// Per-service event rate limits, when configured.
    pub fn rate_limits(&self) -> Option<&rate::ServiceLimits> {
        self.0.rate_limits.as_ref()
    }

    /// Recently accepted events, for idempotent publish.
    pub fn dedupe(&self) -> &dedupe::DedupeWindow {
        &self.0.dedupe
    }

    /// The admin API's bearer token, when configured.
    pub fn admin_token(&self) -> Option<&str> {
        self.0.admin_token.as_deref()
    }

    /// The OpenAPI document of the router built on this state (null before it is built).
    pub fn openapi(&self) -> serde_json::Value {
        self.0.openapi.get().cloned().unwrap_or_default()
    }

    /// Keeps the OpenAPI document of the router built on this state; the first router built
    /// on a state wins.
    pub(crate) fn set_openapi(&self, document: serde_json::Value) {
        let _ = self.0.openapi.set(document);
    }

    /// The publish endpoints' API keys.
    pub fn keys(&self) -> &crate::auth::KeyRing {
        &self.0.keys
    }

    /// A shared handle on the API keys.
    pub fn keys_handle(&self) -> Arc<crate::auth::KeyRing> {
        self.0.keys.clone()
    }

    /// The JSON Schemas per event type.
    pub fn schemas(&self) -> &crate::schemas::SchemaRegistry {
        &self.0.schemas
    }

    /// A shared handle on the schemas.
    pub fn schemas_handle(&self) -> Arc<crate::schemas::SchemaRegistry> {
        self.0.schemas.clone()
    }

    /// Version of the topic policy in force (0: from the configuration).
    pub fn policy_version(&self) -> i64 {
        self.0
            .policy_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records the version of the policy just put in force.
    pub fn set_policy_version(&self, version: i64) {
        self.0
            .policy_version
            .store(version, std::sync::atomic::Ordering::Release);
    }

    /// The store: events, settings (the topic policy), API keys and the audit log. It is
    /// open whatever `dlq.enabled` says, so keys, policy changes and the audit log never go
    /// away with the 202 path.
    pub fn store(&self) -> Option<&Store> {
        self.0.store.as_ref()
    }

    /// The store, if events Kafka did not acknowledge in time go there (`dlq.enabled`);
    /// otherwise such events are refused with 503.
    pub fn event_store(&self) -> Option<&Store> {
        self.0.store.as_ref().filter(|_| self.0.dlq_config.enabled)
    }

    /// The DLQ configuration.
    pub fn dlq_config(&self) -> &DlqConfig {
        &self.0.dlq_config
    }

    /// The handle the retry scheduler waits on.
    pub fn wake_handle(&self) -> Arc<tokio::sync::Notify> {
        self.0.wake_scheduler.clone()
    }

    /// Tells the retry scheduler that new events were stored.
    pub fn wake_scheduler(&self) {
        self.0.wake_scheduler.notify_one();
    }

    /// The delivery pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.0.pipeline
    }

    /// The topic manager.
    pub fn topics(&self) -> &TopicManager {
        &self.0.topics
    }

    /// Delivery settings.
    pub fn delivery(&self) -> &DeliveryConfig {
        &self.0.delivery
    }

    /// Request limits.
    pub fn limits(&self) -> &LimitsConfig {
        &self.0.limits
    }

    /// True once shutdown began: new events are refused with 503.
    pub fn is_shutting_down(&self) -> bool {
        self.0.shutdown.is_cancelled()
    }

    /// `Retry-After` seconds.
    pub fn retry_after(&self) -> u64 {
        self.0.delivery.retry_after_secs
    }

    /// A retriable problem carrying `Retry-After`.
    pub fn retriable(&self, kind: ProblemKind, detail: impl Into<String>) -> ApiError {
        ApiError::new(kind, detail).retry_after(self.retry_after())
    }
}
