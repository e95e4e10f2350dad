//! The application's router: the HTTP API, the admin API (both in the OpenAPI document) and
//! the admin page, with the fallbacks and the layers every request goes through (request ids,
//! tracing, the body and concurrency limits, the request metrics, a panic turned into a 500).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use courier_shared::ProblemKind;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::api::openapi;
use crate::error::ApiError;
use crate::state::AppState;

mod layers;

use layers::{CountRequestsLayer, REQUEST_ID, RequestIdLayer};

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits().max_body_bytes;
    let concurrency = state.limits().max_concurrent_requests.max(1);
    let (api, document) = crate::api::routes()
        .merge(crate::admin::router(state.clone()))
        .split_for_parts();
    let mut document = document;
    utoipa::Modify::modify(&openapi::Conventions, &mut document);
    // Built from the same routes the router serves; the first router built on a state wins.
    state.set_openapi(serde_json::to_value(&document).unwrap_or_default());
    api.merge(crate::admin::page::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // One composed layer (outermost first): `Router::layer` wraps every route in a boxed
        // service per call, so seven calls cost seven boxed futures per request.
        .layer(
            tower::ServiceBuilder::new()
                .layer(RequestIdLayer)
                .layer(CatchPanicLayer::custom(
                    |_panic: Box<dyn std::any::Any + Send>| {
                        // A bug must still end in an answer; nothing of the request was
                        // promised.
                        ApiError::new(
                            ProblemKind::Internal,
                            "the request hit a bug; nothing was accepted",
                        )
                        .into_response()
                    },
                ))
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
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(concurrency))
                .layer(DefaultBodyLimit::max(body_limit))
                .layer(CountRequestsLayer::new(state.pipeline().metrics().clone())),
        )
        .with_state(state)
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
