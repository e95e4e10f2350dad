//! The admin API under `/admin/api`, behind its own bearer token (`admin.token`), and the
//! admin page at `/admin` that drives it. Without a configured token the admin API refuses
//! every request.
//!
//! - topics: list with health and offsets, detail with partitions, configs and consumer-group
//!   lag, create (from a template or custom), alter configs, delete with a confirmation token;
//! - the topic policy: read, update (persisted, in force at once on every proxy sharing the
//!   store), preview of the topic a sample event gets;
//! - the DLQ store's events: list and filter, inspect, replay, discard with a reason;
//! - the publish endpoints' API keys: create (the key is shown once), list, rotate, revoke;
//! - live stats and the audit log of every admin action (who, what, when, before/after).
//!
//! Who acted is the `X-Courier-Actor` header (the page asks the operator for a name), or
//! `admin`; there is one admin credential, so the name is a label the operator gives, not an
//! identity the proxy verifies.

pub mod dlq;
pub mod keys;
pub mod page;
pub mod policy;
pub mod topics;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use courier_shared::ProblemKind;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::dlq::{AuditEntry, DlqStore, StoreError};
use crate::error::ApiError;

/// Most entries one list request returns.
pub(crate) const MAX_PAGE: i64 = 1_000;

/// The admin API's routes (merged into the main router, and into its OpenAPI document),
/// behind the admin token. The page's routes are apart: [`page::router`].
pub fn router(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dlq::list))
        .routes(routes!(dlq::counts))
        .routes(routes!(dlq::replay))
        .routes(routes!(dlq::discard))
        .routes(routes!(dlq::inspect))
        .routes(routes!(topics::list, topics::create))
        .routes(routes!(topics::detail, topics::delete))
        .routes(routes!(topics::alter))
        .routes(routes!(topics::delete_token))
        .routes(routes!(policy::get, policy::put))
        .routes(routes!(policy::preview))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::rotate))
        .routes(routes!(keys::revoke))
        .routes(routes!(stats))
        .routes(routes!(audit_log))
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.admin_token() else {
        return ApiError::new(
            ProblemKind::Forbidden,
            "the admin API is disabled: set admin.token",
        )
        .into_response();
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        // API keys are not admin credentials: only the admin token opens the admin API.
        crate::auth::unauthorized(
            "courier-admin",
            !given.is_empty(),
            "the admin API needs `Authorization: Bearer <admin.token>`",
        )
    }
}

/// Who performs an admin action: the `X-Courier-Actor` header, or `admin`.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let name: String = parts
            .headers
            .get("x-courier-actor")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        let name = name.trim();
        Ok(Self(if name.is_empty() {
            "admin".to_owned()
        } else {
            name.to_owned()
        }))
    }
}

/// A JSON body whose rejection is a problem+json 400, like every other admin error.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::new(
                ProblemKind::InvalidRequest,
                rejection.body_text(),
            )),
        }
    }
}

/// A query string whose rejection is a problem+json 400.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::new(
                ProblemKind::InvalidRequest,
                rejection.body_text(),
            )),
        }
    }
}

pub(crate) fn store(state: &AppState) -> Result<&DlqStore, ApiError> {
    state
        .dlq()
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, "the DLQ store is disabled"))
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    ApiError::new(ProblemKind::StoreUnavailable, e.to_string()).retry_after(1)
}

/// Writes an audit entry. An action already done is not undone when the audit write fails;
/// the failure is logged with the whole entry, so the log still has it.
pub(crate) async fn audit(
    state: &AppState,
    actor: &Actor,
    action: &str,
    target: &str,
    outcome: Result<(), &str>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let entry = AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: actor.0.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: outcome.err().unwrap_or("ok").to_owned(),
        before,
        after,
    };
    tracing::info!(actor = %entry.actor, action, target, outcome = %entry.outcome, "admin action");
    if let Some(store) = state.dlq()
        && let Err(e) = store.audit(&entry).await
    {
        tracing::error!(error = %e, ?entry, "could not write the audit log");
    }
}

/// `GET /admin/api/stats`: counters, the last five minutes of samples, queue depth, stored
/// and parked events.
#[utoipa::path(get, path = "/admin/api/stats", tag = "admin",
    summary = "Counters, the last five minutes per second, queue depth, DLQ counts",
    responses((status = 200, description = "Stats", body = Object)),
    security(("admin_token" = [])))]
async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    let stats = state.pipeline().stats();
    let (pending, parked) = match state.dlq() {
        Some(store) => store.counts().await.unwrap_or((-1, -1)),
        None => (0, 0),
    };
    Json(json!({
        "now": stats.snapshot(),
        "history": stats.history(),
        "queue_depth": state.pipeline().queue_depth(),
        "dlq": { "pending": pending, "parked": parked },
        "policy_version": state.policy_version(),
    }))
}

/// Query of `GET /admin/api/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    before: i64,
    action: Option<String>,
    limit: Option<i64>,
}

/// `GET /admin/api/audit`: newest first; page with `before` = the last `seq` seen.
#[utoipa::path(get, path = "/admin/api/audit", tag = "admin",
    summary = "The audit log, newest first",
    params(
        ("before" = Option<i64>, Query, description = "Entries before this sequence number"),
        ("action" = Option<String>, Query, description = "Only actions starting with this"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000)"),
    ),
    responses((status = 200, description = "Entries and the next page's `before`", body = Object)),
    security(("admin_token" = [])))]
async fn audit_log(
    State(state): State<AppState>,
    Params(q): Params<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let entries = store(&state)?
        .audit_log(q.before, q.action.as_deref(), limit)
        .await
        .map_err(store_error)?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(
        json!({ "entries": entries, "next_before": next_before }),
    ))
}
