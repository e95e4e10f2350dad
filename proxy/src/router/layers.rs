//! The router's own tower layers, written out rather than taken from `axum::middleware` or
//! `tower-http` where those cost allocations on every request: each boxes its future or
//! clones a boxed service per request, or (request ids) formats and copies the id several
//! times. They run on every request, so their cost is the HTTP path's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::response::Response;

use crate::metrics::Metrics;

/// The request id header: taken from the request, or a new UUID; returned in the answer.
pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives every request an `x-request-id` (the caller's, or a new UUID v4) and returns it in
/// the answer. What `tower-http`'s `SetRequestId` and `PropagateRequestId` do together, with
/// one copy of a new id instead of four allocations (a `String`, its `HeaderValue`, the
/// request extension and the answer's copy), and none for an id the caller sent.
#[derive(Clone, Copy)]
pub(super) struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIds { inner }
    }
}

#[derive(Clone)]
pub(super) struct RequestIds<S> {
    inner: S,
}

/// A new request id: a UUID v4, hyphenated, lower case.
fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

impl<S, B, ResBody> tower::Service<Request<B>> for RequestIds<S>
where
    S: tower::Service<Request<B>, Response = axum::http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WithRequestId<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // A caller's value is a slice of the request's buffer: cloning it copies nothing.
        let id = match request.headers().get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                request.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        WithRequestId {
            inner: self.inner.call(request),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future; puts the request id on its answer.
    pub(super) struct WithRequestId<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, E, ResBody> Future for WithRequestId<F>
where
    F: Future<Output = Result<axum::http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(id)) = (&mut result, this.id.take()) {
            response.headers_mut().entry(REQUEST_ID).or_insert(id);
        }
        Poll::Ready(result)
    }
}

/// Counts every request and its duration by route pattern, method and status.
///
/// A tower layer rather than `axum::middleware::from_fn`, which boxes its future and clones
/// the inner service into a boxed `Next` on every request: three allocations per request on
/// the hot path, for what is a clock read and two counter updates.
#[derive(Clone)]
pub(super) struct CountRequestsLayer(Arc<Metrics>);

impl CountRequestsLayer {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self(metrics)
    }
}

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
pub(super) struct CountRequests<S> {
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
    pub(super) struct Counted<F> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, ServiceExt as _};

    /// Calls the layer over a handler that answers with the request id it saw (`x-seen`),
    /// and with its own `x-request-id` when `answer_has` is set; returns the answer's
    /// `x-seen` and `x-request-id`.
    async fn call(sent: Option<&str>, answer_has: Option<&'static str>) -> (String, String) {
        let service = RequestIdLayer.layer(tower::service_fn(move |req: Request<()>| async move {
            let seen = req.headers().get(&REQUEST_ID).cloned();
            let mut answer = Response::new(axum::body::Body::empty());
            if let Some(seen) = seen {
                answer.headers_mut().insert("x-seen", seen);
            }
            if let Some(own) = answer_has {
                answer
                    .headers_mut()
                    .insert(REQUEST_ID, HeaderValue::from_static(own));
            }
            Ok::<_, std::convert::Infallible>(answer)
        }));
        let mut request = Request::new(());
        if let Some(id) = sent {
            request
                .headers_mut()
                .insert(REQUEST_ID, HeaderValue::from_str(id).unwrap());
        }
        let answer = service.oneshot(request).await.unwrap();
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        (header("x-seen"), header(REQUEST_ID.as_str()))
    }

    #[tokio::test]
    async fn a_request_without_an_id_gets_a_new_uuid_seen_by_the_handler_and_returned() {
        let (seen, returned) = call(None, None).await;
        assert_eq!(seen, returned);
        let id = uuid::Uuid::parse_str(&returned).expect("a UUID");
        assert_eq!(id.get_version_num(), 4);
        let (_, other) = call(None, None).await;
        assert_ne!(returned, other, "each request gets its own id");
    }

    #[tokio::test]
    async fn a_callers_id_is_kept_and_returned() {
        assert_eq!(
            call(Some("trace-42"), None).await,
            ("trace-42".to_owned(), "trace-42".to_owned())
        );
    }

    #[tokio::test]
    async fn an_id_the_handler_set_on_its_answer_stays() {
        let (seen, returned) = call(Some("from-caller"), Some("from-handler")).await;
        assert_eq!(seen, "from-caller");
        assert_eq!(returned, "from-handler");
    }
}
