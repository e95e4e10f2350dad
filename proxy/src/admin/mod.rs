//! The admin API under `/admin/api`, behind its own bearer token (`admin.token`): the DLQ
//! store's events — list and filter, inspect, replay, discard with a reason — and their counts.
//! Without a configured token the admin API refuses every request.

use axum::extract::{Path, Query, Request, State as AxumState};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use courier_shared::ProblemKind;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq as _;

use crate::api::AppState;
use crate::dlq::{DlqStore, Entry, Filter, State};
use crate::error::ApiError;

/// Most events one list or bulk action touches.
const MAX_PAGE: i64 = 1_000;
/// Most events one replay or discard by filter touches.
const MAX_BULK: i64 = 10_000;

/// The admin routes (merged into the main router).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/api/dlq", get(list))
        .route("/admin/api/dlq/counts", get(counts))
        .route("/admin/api/dlq/replay", post(replay))
        .route("/admin/api/dlq/discard", post(discard))
        .route("/admin/api/dlq/{seq}", get(inspect))
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

async fn require_token(
    AxumState(state): AxumState<AppState>,
    request: Request,
    next: Next,
) -> Response {
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
        ApiError::new(
            ProblemKind::Unauthorized,
            "the admin API needs `Authorization: Bearer <admin.token>`",
        )
        .into_response()
    }
}

fn store(state: &AppState) -> Result<&DlqStore, ApiError> {
    state
        .dlq()
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, "the DLQ store is disabled"))
}

fn store_error(e: crate::dlq::StoreError) -> ApiError {
    ApiError::new(ProblemKind::StoreUnavailable, e.to_string()).retry_after(1)
}

/// Query of `GET /admin/api/dlq`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<State>,
    topic: Option<String>,
    error: Option<String>,
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// A stored event as the admin API shows it: key, value and headers as text when they are
/// UTF-8, base64 (`*_base64`) otherwise.
#[derive(Debug, Serialize)]
struct EntryView {
    seq: i64,
    event_id: String,
    topic: String,
    state: State,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_ms: i64,
    created_ms: i64,
    key: Option<serde_json::Value>,
    value: Option<serde_json::Value>,
    headers: Vec<serde_json::Value>,
}

fn bytes_view(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "text": text }),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

impl From<Entry> for EntryView {
    fn from(e: Entry) -> Self {
        Self {
            seq: e.seq,
            event_id: e.event_id,
            topic: e.topic,
            state: e.state,
            attempts: e.attempts,
            last_error: e.last_error,
            next_attempt_ms: e.next_attempt_ms,
            created_ms: e.created_ms,
            key: e.record.key.as_deref().map(bytes_view),
            value: e.record.value.as_deref().map(bytes_view),
            headers: e
                .record
                .headers
                .iter()
                .map(|(k, v)| json!({ "name": k, "value": bytes_view(v) }))
                .collect(),
        }
    }
}

async fn list(
    AxumState(state): AxumState<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = Filter {
        state: q.state,
        topic: q.topic,
        error: q.error,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let entries = store(&state)?
        .list(&filter, q.after, limit)
        .await
        .map_err(store_error)?;
    let next_after = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.seq));
    let events: Vec<EntryView> = entries.into_iter().map(EntryView::from).collect();
    Ok(Json(
        json!({ "events": events, "next_after": next_after.flatten() }),
    ))
}

async fn counts(
    AxumState(state): AxumState<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (pending, parked) = store(&state)?.counts().await.map_err(store_error)?;
    Ok(Json(json!({ "pending": pending, "parked": parked })))
}

async fn inspect(
    AxumState(state): AxumState<AppState>,
    Path(seq): Path<i64>,
) -> Result<Json<EntryView>, ApiError> {
    store(&state)?
        .get(seq)
        .await
        .map_err(store_error)?
        .map(|e| Json(EntryView::from(e)))
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, format!("no stored event {seq}")))
}

/// Which events a bulk action means: explicit sequence numbers, or a filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    seqs: Vec<i64>,
    filter: Option<Filter>,
    /// Required by discard: why the events are thrown away.
    reason: Option<String>,
}

async fn selected(store: &DlqStore, s: &Selection) -> Result<Vec<i64>, ApiError> {
    match (&s.filter, s.seqs.is_empty()) {
        (Some(_), false) => Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "give `seqs` or `filter`, not both",
        )),
        (None, true) => Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "give `seqs` (a list of sequence numbers) or `filter` (state, topic, error)",
        )),
        (None, false) => Ok(s.seqs.clone()),
        (Some(filter), true) => Ok(store
            .list(filter, 0, MAX_BULK)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|e| e.seq)
            .collect()),
    }
}

async fn replay(
    AxumState(state): AxumState<AppState>,
    Json(selection): Json<Selection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = store(&state)?;
    let seqs = selected(store, &selection).await?;
    let replayed = store.replay(Some(&seqs)).await.map_err(store_error)?;
    state.wake_scheduler();
    tracing::info!(replayed, "admin: DLQ events replayed");
    Ok(Json(json!({ "replayed": replayed })))
}

async fn discard(
    AxumState(state): AxumState<AppState>,
    Json(selection): Json<Selection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = selection
        .reason
        .clone()
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ProblemKind::InvalidRequest,
                "discarding events needs a `reason`",
            )
        })?;
    let store = store(&state)?;
    let seqs = selected(store, &selection).await?;
    let discarded = store.delete(&seqs).await.map_err(store_error)?;
    tracing::warn!(discarded, reason = %reason, seqs = ?seqs, "admin: DLQ events discarded");
    Ok(Json(json!({ "discarded": discarded })))
}
