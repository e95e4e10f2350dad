//! The DLQ store's events in the admin API: list and filter, inspect, replay, discard with a
//! reason, counts. Replays and discards are audited.

use axum::Json;
use axum::extract::{Path, State as AxumState};
use base64::Engine as _;
use courier_shared::ProblemKind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Actor, Body, MAX_PAGE, Params, audit, store, store_error};
use crate::api::AppState;
use crate::dlq::{DlqStore, Entry, Filter, State};
use crate::error::ApiError;

/// Most events one replay or discard by filter touches.
const MAX_BULK: i64 = 10_000;
/// Discarded events whose content the audit log keeps (the rest by sequence number).
const AUDITED_IN_FULL: usize = 100;

/// Query of `GET /admin/api/dlq`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
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
pub(super) struct EntryView {
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

#[utoipa::path(get, path = "/admin/api/dlq", tag = "admin", summary = "Stored events, filtered, oldest first", params(("state" = Option<String>, Query, description = "pending or parked"), ("topic" = Option<String>, Query, description = "Only this topic"), ("error" = Option<String>, Query, description = "Only errors containing this"), ("after" = Option<i64>, Query, description = "After this sequence number"), ("limit" = Option<i64>, Query, description = "At most this many")), responses((status = 200, description = "Stored events, filtered, oldest first", body = Object)), security(("admin_token" = [])))]
pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
    Params(q): Params<ListQuery>,
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

#[utoipa::path(get, path = "/admin/api/dlq/counts", tag = "admin", summary = "Pending and parked counts", responses((status = 200, description = "Pending and parked counts", body = Object)), security(("admin_token" = [])))]
pub(super) async fn counts(
    AxumState(state): AxumState<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (pending, parked) = store(&state)?.counts().await.map_err(store_error)?;
    Ok(Json(json!({ "pending": pending, "parked": parked })))
}

#[utoipa::path(get, path = "/admin/api/dlq/{seq}", tag = "admin", summary = "One stored event", params(("seq" = i64, Path, description = "Sequence number")), responses((status = 200, description = "One stored event", body = Object)), security(("admin_token" = [])))]
pub(super) async fn inspect(
    AxumState(state): AxumState<AppState>,
    Path(seq): Path<String>,
) -> Result<Json<EntryView>, ApiError> {
    // Parsed here, so a sequence number that is not one is a problem document like any
    // other admin error (axum's own rejection is plain text).
    let seq: i64 = seq.parse().map_err(|_| {
        ApiError::new(
            ProblemKind::InvalidRequest,
            format!("`{seq}` is not a sequence number"),
        )
    })?;
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
pub(super) struct Selection {
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

#[utoipa::path(post, path = "/admin/api/dlq/replay", tag = "admin", summary = "Replays stored events", request_body(content = Object, content_type = "application/json"), responses((status = 200, description = "Replays stored events", body = Object)), security(("admin_token" = [])))]
pub(super) async fn replay(
    AxumState(state): AxumState<AppState>,
    actor: Actor,
    Body(selection): Body<Selection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = store(&state)?;
    let seqs = selected(store, &selection).await?;
    let replayed = store.replay(Some(&seqs)).await.map_err(store_error)?;
    state.wake_scheduler();
    let target = target_of(&selection, &seqs);
    let after = json!({ "replayed": replayed, "seqs": seqs });
    audit(
        &state,
        &actor,
        "dlq.replay",
        &target,
        Ok(()),
        None,
        Some(after),
    )
    .await;
    Ok(Json(json!({ "replayed": replayed })))
}

/// How an audit entry names the events an action touched.
fn target_of(selection: &Selection, seqs: &[i64]) -> String {
    match &selection.filter {
        Some(f) => format!(
            "filter state={} topic={} error={}",
            f.state.map_or("any", State::as_str),
            f.topic.as_deref().unwrap_or("any"),
            f.error.as_deref().unwrap_or("any"),
        ),
        None => format!("{} event(s)", seqs.len()),
    }
}

#[utoipa::path(post, path = "/admin/api/dlq/discard", tag = "admin", summary = "Discards stored events with a reason", request_body(content = Object, content_type = "application/json"), responses((status = 200, description = "Discards stored events with a reason", body = Object)), security(("admin_token" = [])))]
pub(super) async fn discard(
    AxumState(state): AxumState<AppState>,
    actor: Actor,
    Body(selection): Body<Selection>,
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
    // What is thrown away goes into the audit log, whole for up to AUDITED_IN_FULL events: a
    // discard is the one way an accepted event leaves Courier without reaching Kafka, so its
    // content stays on record.
    let mut gone = Vec::new();
    for seq in seqs.iter().take(AUDITED_IN_FULL) {
        if let Some(entry) = store.get(*seq).await.map_err(store_error)? {
            gone.push(EntryView::from(entry));
        }
    }
    let discarded = store.delete(&seqs).await.map_err(store_error)?;
    let target = target_of(&selection, &seqs);
    let before = json!({ "events": gone, "seqs": seqs });
    let after = json!({ "discarded": discarded, "reason": reason });
    audit(
        &state,
        &actor,
        "dlq.discard",
        &target,
        Ok(()),
        Some(before),
        Some(after),
    )
    .await;
    Ok(Json(json!({ "discarded": discarded })))
}
