//! The one error type of the HTTP API: every refusal becomes an RFC 9457 problem document
//! with a stable `type`, and retriable ones carry `Retry-After`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use courier_shared::problem::PROBLEM_JSON;
use courier_shared::{EventError, Problem, ProblemKind};

/// A refused request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct ApiError {
    /// Which problem.
    pub kind: ProblemKind,
    /// What happened to this request.
    pub detail: String,
    /// Seconds for `Retry-After`, on retriable problems.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A problem with a detail.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// Adds `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        Problem::new(self.kind, self.detail.clone())
    }
}

/// The problem for an event that failed to parse or validate.
pub fn event_error(e: &EventError) -> ApiError {
    let kind = if e.is_syntax() {
        ProblemKind::MalformedJson
    } else {
        ProblemKind::InvalidEvent
    };
    ApiError::new(kind, e.to_string())
}

/// Renders a problem document with its status and optional `Retry-After`.
pub fn problem_response(problem: &Problem, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(&self.problem(), self.retry_after)
    }
}
