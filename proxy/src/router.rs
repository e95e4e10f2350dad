//! The application's router: the HTTP API, the admin API (both in the OpenAPI document) and
//! the admin page, with the fallbacks and the layers every request goes through (request ids,
//! tracing, the body and concurrency limits, the request metrics, a panic turned into a 500).

use axum::Router;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, Request};
use axum::response::{IntoResponse, Response};
use courier_shared::ProblemKind;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::api::openapi;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
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
                .layer(CountRequestsLayer(state.pipeline().metrics().clone())),
        )
        .with_state(state)
}

/// Counts every request and its duration by route pattern, method and status.
///
/// A tower layer rather than `axum::middleware::from_fn`, which boxes its future and clones
/// the inner service into a boxed `Next` on every request: three allocations per request on
/// the hot path, for what is a clock read and two counter updates.
#[derive(Clone)]
struct CountRequestsLayer(Arc<Metrics>);

impl<S> tower::Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountRequests {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct CountRequests<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<Request<B>> for CountRequests<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched", |p| crate::metrics::route_label(p.as_str()));
        // Only the methods the API knows; anything else is one label value, not one per
        // spelling.
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
        Counted {
            inner: self.inner.call(request),
            metrics: Some(self.metrics.clone()),
            route,
            method,
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future; counts the request when its response is ready.
    struct Counted<F> {
        #[pin]
        inner: F,
        metrics: Option<Arc<Metrics>>,
        route: &'static str,
        method: &'static str,
        started: Instant,
    }
}

impl<F, E> Future for Counted<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(metrics)) = (&result, this.metrics.take()) {
            metrics
                .http_duration
                .get_or_create(&crate::metrics::RouteLabels { route: this.route })
                .observe(this.started.elapsed().as_secs_f64());
            metrics
                .http_requests
                .get_or_create(&crate::metrics::HttpLabels {
                    route: this.route,
                    method: this.method,
                    status: response.status().as_u16(),
                })
                .inc();
        }
        Poll::Ready(result)
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
