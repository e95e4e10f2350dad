//! The HTTP API: routes, shared state, health endpoints and the problem+json fallbacks.

pub mod body;
pub mod dedupe;
pub mod openapi;
pub mod publish;
pub mod rate;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Method, Request};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use courier_shared::ProblemKind;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{DeliveryConfig, DlqConfig, LimitsConfig};
use crate::delivery::Pipeline;
use crate::error::ApiError;
use crate::store::Store;
use crate::topics::TopicManager;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    pipeline: Pipeline,
    topics: Arc<TopicManager>,
    dlq: Option<Store>,
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
    pub dlq: Option<Store>,
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
            dlq: p.dlq,
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
    pub fn dlq(&self) -> Option<&Store> {
        self.0.dlq.as_ref()
    }

    /// The store, if events Kafka did not acknowledge in time go there (`dlq.enabled`);
    /// otherwise such events are refused with 503.
    pub fn event_store(&self) -> Option<&Store> {
        self.0.dlq.as_ref().filter(|_| self.0.dlq_config.enabled)
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

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits().max_body_bytes;
    let concurrency = state.limits().max_concurrent_requests.max(1);
    let (api, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(publish::publish))
        .routes(routes!(publish::publish_to_topic))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi::document))
        .merge(crate::admin::router(state.clone()))
        .split_for_parts();
    let mut document = document;
    utoipa::Modify::modify(&openapi::Conventions, &mut document);
    // Built from the same routes the router serves; the first router built on a state wins.
    let _ = state
        .0
        .openapi
        .set(serde_json::to_value(&document).unwrap_or_default());
    api.merge(crate::admin::page::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(concurrency))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id);
                // A caller's W3C `traceparent` makes this request part of its trace.
                courier_telemetry::continue_http(&span, req.headers());
                span
            }),
        )
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            // A bug must still end in an answer; nothing of the request was promised.
            ApiError::new(ProblemKind::Internal, "the request hit a bug; nothing was accepted")
                .into_response()
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "The process is alive",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"})))
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: Kafka answers a metadata request and the proxy is not shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Kafka answers a metadata request (503 otherwise)",
    responses((status = 200, description = "Ready", body = Object,
        example = json!({"status": "ready", "brokers": 3, "queue_depth": 0})))
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    if state.is_shutting_down() {
        return Err(state.retriable(ProblemKind::ShuttingDown, "shutting down"));
    }
    match state.topics().cluster_info().await {
        Ok(info) if info.brokers > 0 => Ok(Json(json!({
            "status": "ready",
            "brokers": info.brokers,
            "queue_depth": state.pipeline().queue_depth(),
        }))),
        Ok(_) => Err(state.retriable(ProblemKind::KafkaUnavailable, "no broker in metadata")),
        Err(e) => Err(state.retriable(ProblemKind::KafkaUnavailable, e.to_string())),
    }
}

/// `GET /metrics`: Prometheus (OpenMetrics text).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"))
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let metrics = state.pipeline().metrics();
    metrics
        .queue_depth
        .set(i64::try_from(state.pipeline().queue_depth()).unwrap_or(i64::MAX));
    if let Some(store) = state.dlq()
        && let Ok((pending, parked)) = store.counts().await
    {
        for (name, n) in [("pending", pending), ("parked", parked)] {
            metrics
                .dlq_events
                .get_or_create(&crate::metrics::StateLabels { state: name.into() })
                .set(n);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Counts every request and its duration by route pattern, method and status.
async fn count_requests(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| crate::metrics::route_label(p.as_str()));
    // Only the methods the API knows; anything else is one label value, not one per spelling.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let metrics = state.pipeline().metrics();
    metrics
        .http_duration
        .get_or_create(&crate::metrics::RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&crate::metrics::HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn not_found() -> Response {
    ApiError::new(ProblemKind::NotFound, "no such endpoint").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        ProblemKind::MethodNotAllowed,
        "this endpoint does not take that method",
    )
    .into_response()
}
