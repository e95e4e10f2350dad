//! The store's events in the admin API: list and filter, inspect, replay, discard with a
//! reason, counts. Replays and discards are audited.

use axum::Json;
use axum::extract::{Path, State as AxumState};
use base64::Engine as _;
use courier_shared::ProblemKind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Actor, Body, MAX_PAGE, Params, audit, store, store_error};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Entry, Filter, State, Store};

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
/// UTF-8, as base64 otherwise.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EntryView {
    /// Store-wide sequence number.
    seq: i64,
    /// The CloudEvents id.
    event_id: String,
    /// The CloudEvents source: with the id, the event's identity (empty for events stored
    /// before the store kept it).
    event_source: String,
    /// Destination topic.
    topic: String,
    /// Pending or parked.
    state: State,
    /// Delivery attempts made by the retry scheduler.
    attempts: i32,
    /// The last failure.
    #[schema(required = true)]
    last_error: Option<String>,
    /// Next attempt (ms since the epoch).
    next_attempt_ms: i64,
    /// When it was stored (ms since the epoch).
    created_ms: i64,
    /// Record key (the event's `partitionkey`), if any.
    #[schema(required = true)]
    key: Option<BytesView>,
    /// Record value (the event's data), if any.
    #[schema(required = true)]
    value: Option<BytesView>,
    /// Record headers, in write order (none when the stored headers cannot be read).
    headers: Vec<HeaderView>,
    /// The stored header text, as it is, when it cannot be read back into headers: the event
    /// is listed without its headers, and parked with the reason when the retry scheduler
    /// reaches it. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable_headers: Option<String>,
}

/// Bytes of a record: `{"text": …}` when they are UTF-8, `{"base64": …}` otherwise.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) enum BytesView {
    /// The bytes as text.
    #[serde(rename = "text")]
    Text(String),
    /// The bytes in base64 (standard alphabet, padded).
    #[serde(rename = "base64")]
    Base64(String),
}

/// A record header.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct HeaderView {
    /// Header name.
    name: String,
    /// Header value.
    value: BytesView,
}

fn bytes_view(bytes: &[u8]) -> BytesView {
    match std::str::from_utf8(bytes) {
        Ok(text) => BytesView::Text(text.to_owned()),
        Err(_) => BytesView::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

impl From<Entry> for EntryView {
    fn from(e: Entry) -> Self {
        Self {
            seq: e.seq,
            event_id: e.event_id,
            event_source: e.event_source,
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
                .map(|(k, v)| HeaderView {
                    name: k.to_string(),
                    value: bytes_view(v),
                })
                .collect(),
            unreadable_headers: e.unreadable_headers,
        }
    }
}

/// A page of stored events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EventPage {
    /// The events, oldest first.
    events: Vec<EntryView>,
    /// The next page's `after`; null on the last page.
    #[schema(required = true)]
    next_after: Option<i64>,
}

#[utoipa::path(get, path = "/admin/api/dlq", operation_id = "list_dlq_events", tag = "admin", summary = "Stored events, filtered, oldest first", params(("state" = Option<State>, Query, description = "pending or parked"), ("topic" = Option<String>, Query, description = "Only this topic"), ("error" = Option<String>, Query, description = "Only errors containing this"), ("after" = Option<i64>, Query, description = "After this sequence number"), ("limit" = Option<i64>, Query, description = "At most this many")), responses((status = 200, description = "Stored events, filtered, oldest first", body = EventPage)), security(("admin_token" = [])))]
pub(super) async fn list(
    AxumState(state): AxumState<AppState>,
    Params(q): Params<ListQuery>,
) -> Result<Json<EventPage>, ApiError> {
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
    Ok(Json(EventPage {
        events,
        next_after: next_after.flatten(),
    }))
}

/// How many events the store holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Counts {
    /// Events waiting for their next attempt.
    pub(crate) pending: i64,
    /// Events waiting for an operator.
    pub(crate) parked: i64,
}

#[utoipa::path(get, path = "/admin/api/dlq/counts", operation_id = "count_dlq_events", tag = "admin", summary = "Pending and parked counts", responses((status = 200, description = "Pending and parked counts", body = Counts)), security(("admin_token" = [])))]
pub(super) async fn counts(
    AxumState(state): AxumState<AppState>,
) -> Result<Json<Counts>, ApiError> {
    let (pending, parked) = store(&state)?.counts().await.map_err(store_error)?;
    Ok(Json(Counts { pending, parked }))
}

#[utoipa::path(get, path = "/admin/api/dlq/{seq}", operation_id = "inspect_dlq_event", tag = "admin", summary = "One stored event", params(("seq" = i64, Path, description = "Sequence number")), responses((status = 200, description = "One stored event", body = EntryView)), security(("admin_token" = [])))]
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

/// Which events a bulk action means: explicit sequence numbers, or a filter (not both).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Selection {
    #[serde(default, deserialize_with = "present")]
    seqs: Option<Vec<i64>>,
    #[serde(default, deserialize_with = "super::optional_object")]
    filter: Option<Filter>,
    reason: Option<String>,
}

/// A field that may be absent, but not `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    Vec::deserialize(d).map(Some)
}

/// The document's [`Selection`]: for a replay, and for a discard, which needs a reason.
fn selection_schema(discard: bool) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{
        AdditionalProperties, AllOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type,
    };
    use utoipa::openapi::{Ref, RefOr};
    let seqs = ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::Integer).format(Some(
            utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
        )))
        .min_items(Some(1))
        .description(Some("The events' sequence numbers."));
    let filter = OneOfBuilder::new()
        .item(Ref::from_schema_name("Filter"))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("Every event the filter matches (at most 10000)."));
    let reason = if discard {
        ObjectBuilder::new()
            .schema_type(Type::String)
            // Not blank: a character outside Rust's `char::is_whitespace`, which the
            // handler trims (ECMAScript's `\s` is another set).
            .pattern(Some(
                "[^\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
            ))
            .description(Some("Why the events are thrown away (not blank)."))
    } else {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::String,
                Type::Null,
            ]))
            .description(Some("Ignored: a replay needs no reason."))
    };
    let mut fields = ObjectBuilder::new()
        .property("seqs", seqs)
        .property("filter", filter)
        .property("reason", reason)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    if discard {
        fields = fields.required("reason");
    }
    // Exactly one of `seqs` and a (non-null) `filter`.
    let either = OneOfBuilder::new()
        .item(ObjectBuilder::new().required("seqs"))
        .item(
            ObjectBuilder::new()
                .property("filter", Ref::from_schema_name("Filter"))
                .required("filter"),
        );
    RefOr::T(
        AllOfBuilder::new()
            .item(fields)
            .item(either)
            .description(Some(if discard {
                "Which events to discard and why: sequence numbers, or a filter (not both)."
            } else {
                "Which events to replay: sequence numbers, or a filter (not both)."
            }))
            .into(),
    )
}

/// The body of a replay (a [`Selection`]), for the document.
#[derive(Debug)]
pub(super) struct ReplaySelection;

impl utoipa::PartialSchema for ReplaySelection {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        selection_schema(false)
    }
}

impl utoipa::ToSchema for ReplaySelection {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push(("Filter".into(), <Filter as utoipa::PartialSchema>::schema()));
        <Filter as utoipa::ToSchema>::schemas(schemas);
    }
}

/// The body of a discard (a [`Selection`] with a reason), for the document.
#[derive(Debug)]
pub(super) struct DiscardSelection;

impl utoipa::PartialSchema for DiscardSelection {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        selection_schema(true)
    }
}

impl utoipa::ToSchema for DiscardSelection {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ReplaySelection as utoipa::ToSchema>::schemas(schemas);
    }
}

async fn selected(store: &Store, s: &Selection) -> Result<Vec<i64>, ApiError> {
    match (&s.filter, &s.seqs) {
        (Some(_), Some(_)) => Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "give `seqs` or `filter`, not both",
        )),
        (None, None) => Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "give `seqs` (a list of sequence numbers) or `filter` (state, topic, error)",
        )),
        (None, Some(seqs)) if seqs.is_empty() => Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "`seqs` names no event",
        )),
        (None, Some(seqs)) => Ok(seqs.clone()),
        (Some(filter), None) => Ok(store
            .list(filter, 0, MAX_BULK)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|e| e.seq)
            .collect()),
    }
}

/// The answer to a replay.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Replayed {
    /// Events made pending again, for the retry scheduler to deliver.
    replayed: u64,
}

#[utoipa::path(post, path = "/admin/api/dlq/replay", operation_id = "replay_dlq_events", tag = "admin", summary = "Replays stored events", request_body(content = ReplaySelection, content_type = "application/json"), responses((status = 200, description = "Replays stored events", body = Replayed)), security(("admin_token" = [])))]
pub(super) async fn replay(
    AxumState(state): AxumState<AppState>,
    actor: Actor,
    Body(selection): Body<Selection>,
) -> Result<Json<Replayed>, ApiError> {
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
    Ok(Json(Replayed { replayed }))
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

/// The answer to a discard.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Discarded {
    /// Events deleted from the store.
    discarded: u64,
}

#[utoipa::path(post, path = "/admin/api/dlq/discard", operation_id = "discard_dlq_events", tag = "admin", summary = "Discards stored events with a reason", request_body(content = DiscardSelection, content_type = "application/json"), responses((status = 200, description = "Discards stored events with a reason", body = Discarded)), security(("admin_token" = [])))]
pub(super) async fn discard(
    AxumState(state): AxumState<AppState>,
    actor: Actor,
    Body(selection): Body<Selection>,
) -> Result<Json<Discarded>, ApiError> {
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
    Ok(Json(Discarded { discarded }))
}

#[cfg(test)]
mod tests {
    use courier_shared::binding::KafkaRecord;
    use serde_json::json;

    use super::*;

    /// The typed view answers what the `json!` one did: the admin page reads these shapes.
    #[test]
    fn a_stored_event_shows_text_as_text_and_bytes_as_base64() {
        let entry = Entry {
            seq: 7,
            event_id: "e-1".into(),
            event_source: "/billing".into(),
            topic: "billing.events".into(),
            record: KafkaRecord {
                key: Some(b"order-1".to_vec()),
                value: Some(vec![0xff, 0x00]),
                headers: vec![("ce_id".into(), b"e-1".to_vec().into())],
            },
            state: State::Parked,
            attempts: 3,
            last_error: None,
            next_attempt_ms: 10,
            created_ms: 5,
            unreadable_headers: None,
        };
        assert_eq!(
            serde_json::to_value(EntryView::from(entry)).unwrap(),
            json!({
                "seq": 7,
                "event_id": "e-1",
                "event_source": "/billing",
                "topic": "billing.events",
                "state": "parked",
                "attempts": 3,
                "last_error": null,
                "next_attempt_ms": 10,
                "created_ms": 5,
                "key": {"text": "order-1"},
                "value": {"base64": "/wA="},
                "headers": [{"name": "ce_id", "value": {"text": "e-1"}}],
            })
        );
    }
}
