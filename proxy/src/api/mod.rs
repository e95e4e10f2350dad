//! The HTTP API: routes, shared state, health endpoints and the problem+json fallbacks.

pub mod body;
pub mod publish;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use courier_shared::ProblemKind;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::{DeliveryConfig, LimitsConfig};
use crate::delivery::Pipeline;
use crate::error::ApiError;
use crate::topics::TopicManager;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    pipeline: Pipeline,
    topics: TopicManager,
    limits: LimitsConfig,
    delivery: DeliveryConfig,
    shutdown: CancellationToken,
}

impl AppState {
    /// Bundles the components.
    pub fn new(
        pipeline: Pipeline,
        topics: TopicManager,
        limits: LimitsConfig,
        delivery: DeliveryConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self(Arc::new(Inner {
            pipeline,
            topics,
            limits,
            delivery,
            shutdown,
        }))
    }

    /// The delivery pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.0.pipeline
    }

    /// The topic manager.
    pub fn topics(&self) -> &TopicManager {
        &self.0.topics
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
    Router::new()
        .route("/v1/events", post(publish::publish))
        .route("/v1/topics/{topic}/events", post(publish::publish_to_topic))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
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
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: Kafka answers a metadata request and the proxy is not shutting down.
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
