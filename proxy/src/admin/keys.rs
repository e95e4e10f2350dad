//! `/admin/api/keys`: the publish endpoints' API keys. A key is shown once, when it is created
//! or rotated; the store keeps only its SHA-256 and its last four characters. Every change is
//! written with its audit entry in one transaction, and this proxy's key snapshot is reloaded
//! before the answer, so a revoked key is refused here from the next request on.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use courier_shared::ProblemKind;
use courier_shared::topic::normalise_component;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Actor, Body, Params, audit, store, store_error};
use crate::api::AppState;
use crate::auth;
use crate::dlq::store::now_ms;
use crate::dlq::{ApiKey, AuditEntry, NewApiKey};
use crate::error::ApiError;

/// The longest grace period a rotated-out secret may get.
pub const MAX_GRACE_SECS: u64 = 24 * 3_600;
const MAX_LABEL_CHARS: usize = 200;

/// A key as the admin API shows it: never a secret, never a hash.
fn view(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "service": key.service,
        "label": key.label,
        "hint": format!("{}…{}", auth::KEY_PREFIX, key.last4),
        "state": if key.revoked_ms.is_some() { "revoked" } else { "active" },
        "created_ms": key.created_ms,
        "created_by": key.created_by,
        "rotated_ms": key.rotated_ms,
        "revoked_ms": key.revoked_ms,
        "previous_until_ms": key.previous_until_ms.filter(|until| *until > now_ms()),
    })
}

fn entry(
    actor: &Actor,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: actor.0.clone(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        before,
        after,
    }
}

/// Puts a change in force on this proxy: reloads the snapshot, or at least drops a revoked
/// key from it when the store cannot be read.
async fn refresh(state: &AppState, revoked: Option<&str>) {
    let Some(store) = state.dlq() else { return };
    if let Err(e) = state.keys().reload(store).await {
        tracing::warn!(error = %e, "could not reload the API keys after a change");
        if let Some(id) = revoked {
            state.keys().forget(id);
        }
    }
}

/// Query of `GET /admin/api/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Include revoked keys.
    #[serde(default)]
    revoked: bool,
}

/// `GET /admin/api/keys?revoked=true`: the keys (oldest first), and those of the
/// configuration file.
#[utoipa::path(get, path = "/admin/api/keys", tag = "admin", summary = "The API keys", params(("revoked" = Option<bool>, Query, description = "Include revoked keys")), responses((status = 200, description = "The API keys", body = Object)), security(("admin_token" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let keys = store(&state)?
        .api_keys(q.revoked)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "auth_enabled": state.keys().enabled(),
        "keys": keys.iter().map(view).collect::<Vec<_>>(),
    })))
}

/// Body of `POST /admin/api/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    service: String,
    #[serde(default)]
    label: String,
}

/// `POST /admin/api/keys`: 201 with the new key — the only time it is shown.
#[utoipa::path(post, path = "/admin/api/keys", tag = "admin", summary = "Creates an API key, shown once", request_body(content = Object, content_type = "application/json"), responses((status = 201, description = "Creates an API key, shown once", body = Object)), security(("admin_token" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<CreateRequest>,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let service = request.service.trim();
    if service.is_empty() || normalise_component(service) != service {
        let message = format!(
            "`{service}` is not a service name: lowercase letters, digits and `-`, as the \
             service of a `source` (`/billing/api` → `billing`)"
        );
        audit(
            &state,
            &actor,
            "key.create",
            service,
            Err(&message),
            None,
            None,
        )
        .await;
        return Err(ApiError::new(ProblemKind::InvalidRequest, message));
    }
    let label: String = request
        .label
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            format!("a label has at most {MAX_LABEL_CHARS} characters"),
        ));
    }
    let secret = auth::generate();
    let new = NewApiKey {
        id: format!("key-{}", uuid::Uuid::now_v7().simple()),
        service: service.to_owned(),
        label,
        key_hash: auth::hex(&auth::hash(&secret)),
        last4: auth::last4(&secret),
        created_by: actor.0.clone(),
    };
    let preview = ApiKey {
        id: new.id.clone(),
        service: new.service.clone(),
        label: new.label.clone(),
        key_hash: String::new(),
        last4: new.last4.clone(),
        previous_hash: None,
        previous_until_ms: None,
        created_ms: now_ms(),
        created_by: new.created_by.clone(),
        rotated_ms: None,
        revoked_ms: None,
    };
    let audit_entry = entry(&actor, "key.create", &new.id, None, Some(view(&preview)));
    let key = store
        .create_api_key(&new, &audit_entry)
        .await
        .map_err(store_error)?;
    refresh(&state, None).await;
    tracing::info!(key_id = %key.id, service = %key.service, actor = %actor.0, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": secret, "api_key": view(&key) })),
    )
        .into_response())
}

/// Body of `POST /admin/api/keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    /// How long the old secret is still accepted (0: not at all).
    #[serde(default)]
    grace_secs: u64,
}

async fn existing(state: &AppState, id: &str) -> Result<ApiKey, ApiError> {
    let key = store(state)?
        .api_key(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, format!("no API key `{id}`")))?;
    if key.revoked_ms.is_some() {
        return Err(ApiError::new(
            ProblemKind::Conflict,
            format!("API key `{id}` is revoked"),
        ));
    }
    Ok(key)
}

/// `POST /admin/api/keys/{id}/rotate` with `{"grace_secs": n}` (optional): a new secret for the
/// key, shown once; the old one is refused at once, or after the grace period.
#[utoipa::path(post, path = "/admin/api/keys/{id}/rotate", tag = "admin", summary = "A new secret for the key, shown once", params(("id" = String, Path, description = "Key id")), request_body(content = Object, content_type = "application/json"), responses((status = 200, description = "A new secret for the key, shown once", body = Object)), security(("admin_token" = [])))]
pub(super) async fn rotate(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    // The body is optional: no body rotates without a grace period.
    let request: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ProblemKind::InvalidRequest, e.to_string()))?
    };
    if request.grace_secs > MAX_GRACE_SECS {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            format!("grace_secs is at most {MAX_GRACE_SECS} (a day)"),
        ));
    }
    let before = existing(&state, &id).await?;
    let secret = auth::generate();
    let grace_ms = i64::try_from(request.grace_secs * 1_000).unwrap_or(i64::MAX);
    let until = (grace_ms > 0).then(|| now_ms() + grace_ms);
    let mut after = before.clone();
    after.last4 = auth::last4(&secret);
    after.rotated_ms = Some(now_ms());
    after.previous_until_ms = until;
    let audit_entry = entry(
        &actor,
        "key.rotate",
        &id,
        Some(view(&before)),
        Some(view(&after)),
    );
    let key = store(&state)?
        .rotate_api_key(
            &id,
            &auth::hex(&auth::hash(&secret)),
            &after.last4,
            until,
            &audit_entry,
        )
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ProblemKind::Conflict,
                format!("API key `{id}` was revoked meanwhile"),
            )
        })?;
    refresh(&state, None).await;
    tracing::info!(key_id = %id, service = %key.service, actor = %actor.0, grace_secs = request.grace_secs, "API key rotated");
    Ok(Json(json!({ "key": secret, "api_key": view(&key) })))
}

/// `POST /admin/api/keys/{id}/revoke`: the key is refused from now on (kept, revoked, for the
/// record).
#[utoipa::path(post, path = "/admin/api/keys/{id}/revoke", tag = "admin", summary = "Revokes the key", params(("id" = String, Path, description = "Key id")), responses((status = 200, description = "Revokes the key", body = Object)), security(("admin_token" = [])))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let before = existing(&state, &id).await?;
    let mut after = before.clone();
    after.revoked_ms = Some(now_ms());
    after.previous_until_ms = None;
    let audit_entry = entry(
        &actor,
        "key.revoke",
        &id,
        Some(view(&before)),
        Some(view(&after)),
    );
    let key = store(&state)?
        .revoke_api_key(&id, &audit_entry)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ProblemKind::Conflict,
                format!("API key `{id}` was revoked already"),
            )
        })?;
    refresh(&state, Some(&id)).await;
    tracing::info!(key_id = %id, service = %key.service, actor = %actor.0, "API key revoked");
    Ok(Json(json!({ "api_key": view(&key) })))
}
