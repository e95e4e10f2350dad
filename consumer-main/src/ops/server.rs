//! The operations listener: `/healthz` (the process answers), `/readyz` (200 when
//! [`Readiness::is_ready`], 503 otherwise) and `/metrics` (OpenMetrics text).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Ops, Readiness};

/// Requests served at once, all endpoints together; more wait (a scraper and two probes need
/// a handful).
pub const MAX_CONCURRENT_REQUESTS: usize = 32;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The three endpoints over `ops`, to serve alone ([`serve`]) or merged into a service's
/// own router.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .with_state(ops)
}

/// Serves [`router`] on `listener` until `stop` fires. The consumer's own shutdown only makes
/// `/readyz` answer 503: cancel `stop` once the consumer has stopped, so that probes and a
/// last scrape are answered while it drains.
pub async fn serve(
    listener: TcpListener,
    ops: Ops,
    stop: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(listen = %listener.local_addr()?, "operations endpoints: /healthz /readyz /metrics");
    axum::serve(listener, router(ops))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

#[derive(serde::Serialize)]
struct ReadyBody {
    status: &'static str,
    #[serde(flatten)]
    readiness: Readiness,
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let readiness = ops.health().readiness();
    let (status, word) = if readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    };
    (
        status,
        Json(ReadyBody {
            status: word,
            readiness,
        }),
    )
        .into_response()
}

async fn metrics(State(ops): State<Ops>) -> Response {
    ([(CONTENT_TYPE, OPENMETRICS)], ops.metrics().encode()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::RecordOutcome;

    async fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("request");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            status,
            format!("{content_type}\n{}", r.text().await.expect("body")),
        )
    }

    #[tokio::test]
    async fn endpoints_answer_from_the_ops_handle() {
        let ops = Ops::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, ops.clone(), stop.clone()));

        assert_eq!(get_text(addr, "/healthz").await.0, 200);
        let (status, body) = get_text(addr, "/readyz").await;
        assert_eq!(status, 503, "not ready before an assignment: {body}");
        assert!(body.contains(r#""assigned":false"#), "{body}");
        ops.health().set_assigned();
        assert_eq!(get_text(addr, "/readyz").await.0, 200);
        ops.metrics().record("t", RecordOutcome::Handled, 7);
        let (status, body) = get_text(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains(OPENMETRICS), "{body}");
        assert!(
            body.contains(r#"courier_consumer_records_total{topic="t",outcome="handled"} 7"#),
            "{body}"
        );
        ops.health().set_stopping();
        assert_eq!(get_text(addr, "/readyz").await.0, 503, "shutting down");
        assert_eq!(
            get_text(addr, "/healthz").await.0,
            200,
            "alive while draining"
        );
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
