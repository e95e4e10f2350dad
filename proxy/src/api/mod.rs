//! The HTTP API: the publish endpoints, health, readiness, metrics and the OpenAPI document.
//! The router that serves them with the admin API is [`crate::router`].

pub mod body;
pub mod openapi;
pub mod publish;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use courier_shared::ProblemKind;
use serde_json::json;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// The API's routes, in the OpenAPI document's fixed parts ([`openapi::ApiDoc`]).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(publish::publish))
        .routes(routes!(publish::publish_to_topic))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi::document))
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
    if let Some(store) = state.store()
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
