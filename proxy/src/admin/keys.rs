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
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Actor, Body, Params, audit, store, store_error};
use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::now_ms;
use crate::store::{ApiKey, AuditEntry, NewApiKey};

/// The longest grace period a rotated-out secret may get.
pub const MAX_GRACE_SECS: u64 = 24 * 3_600;
const MAX_LABEL_CHARS: usize = 200;

/// An API key as the admin API shows it: never a secret, never a hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyView {
    /// Key id (`key-…`).
    id: String,
    /// The service whose events the key may publish.
    service: String,
    /// What the key is for, as its creator put it.
    label: String,
    /// The secret's prefix and last four characters, to tell keys apart.
    hint: String,
    /// `active` or `revoked`.
    #[schema(pattern = "^(active|revoked)$")]
    state: &'static str,
    /// When it was created (ms since the epoch).
    created_ms: i64,
    /// Who created it.
    created_by: String,
    /// When its secret was last rotated (ms since the epoch).
    #[schema(required = true)]
    rotated_ms: Option<i64>,
    /// When it was revoked (ms since the epoch).
    #[schema(required = true)]
    revoked_ms: Option<i64>,
    /// Until when the secret it was rotated from is still accepted (ms since the epoch);
    /// null when it no longer is.
    #[schema(required = true)]
    previous_until_ms: Option<i64>,
}

fn key_view(key: &ApiKey) -> KeyView {
    KeyView {
        id: key.id.clone(),
        service: key.service.clone(),
        label: key.label.clone(),
        hint: format!("{}…{}", auth::KEY_PREFIX, key.last4),
        state: if key.revoked_ms.is_some() {
            "revoked"
        } else {
            "active"
        },
        created_ms: key.created_ms,
        created_by: key.created_by.clone(),
        rotated_ms: key.rotated_ms,
        revoked_ms: key.revoked_ms,
        previous_until_ms: key.previous_until_ms.filter(|until| *until > now_ms()),
    }
}

/// A key as the audit log keeps it: its [`KeyView`].
fn view(key: &ApiKey) -> Value {
    serde_json::to_value(key_view(key)).unwrap_or(Value::Null)
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
    let Some(store) = state.store() else { return };
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

/// The API keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyList {
    /// Whether the publish endpoints ask for an API key (`auth.enabled`).
    auth_enabled: bool,
    /// The keys in the store, oldest first.
    keys: Vec<KeyView>,
}

/// `GET /admin/api/keys?revoked=true`: the keys (oldest first).
#[utoipa::path(get, path = "/admin/api/keys", operation_id = "list_keys", tag = "admin", summary = "The API keys", params(("revoked" = Option<bool>, Query, description = "Include revoked keys")), responses((status = 200, description = "The API keys", body = KeyList)), security(("admin_token" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
    Params(q): Params<ListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = store(&state)?
        .api_keys(q.revoked)
        .await
        .map_err(store_error)?;
    Ok(Json(KeyList {
        auth_enabled: state.keys().enabled(),
        keys: keys.iter().map(key_view).collect(),
    }))
}

/// Body of `POST /admin/api/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    /// The service whose events the key may publish: lowercase letters, digits and `-`, as
    /// the service of a `source` (`/billing/api` → `billing`).
    #[schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)]
    service: String,
    /// What the key is for.
    #[serde(default)]
    #[schema(max_length = 200)]
    label: String,
}

/// A secret, shown this once, and its key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct NewSecret {
    /// The secret (`ck_…`): the store keeps only its hash, so it cannot be shown again.
    key: String,
    /// The key it belongs to.
    api_key: KeyView,
}

/// A key after a change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct KeyChanged {
    /// The key as it is now.
    api_key: KeyView,
}

/// `POST /admin/api/keys`: 201 with the new key — the only time it is shown.
#[utoipa::path(post, path = "/admin/api/keys", operation_id = "create_key", tag = "admin", summary = "Creates an API key, shown once", request_body(content = CreateRequest, content_type = "application/json"), responses((status = 201, description = "Creates an API key, shown once", body = NewSecret)), security(("admin_token" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<CreateRequest>,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    // As given: the document's pattern, no trimming.
    let service = request.service.as_str();
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
    // Counted as given, as the document's `maxLength` counts.
    if request.label.chars().count() > MAX_LABEL_CHARS {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            format!("a label has at most {MAX_LABEL_CHARS} characters"),
        ));
    }
    let label: String = request
        .label
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
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
        Json(NewSecret {
            key: secret,
            api_key: key_view(&key),
        }),
    )
        .into_response())
}

/// Body of `POST /admin/api/keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    /// How long the old secret is still accepted, in seconds (0: not at all; at most a day).
    #[serde(default)]
    #[schema(maximum = 86_400)]
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
#[utoipa::path(post, path = "/admin/api/keys/{id}/rotate", operation_id = "rotate_key", tag = "admin", summary = "A new secret for the key, shown once", params(("id" = String, Path, description = "Key id")), request_body(content = Option<RotateRequest>, content_type = "application/json", description = "Optional: no body, or `null`, rotates without a grace period"), responses((status = 200, description = "A new secret for the key, shown once", body = NewSecret)), security(("admin_token" = [])))]
pub(super) async fn rotate(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<NewSecret>, ApiError> {
    // The body is optional: no body (or `null`) rotates without a grace period.
    let invalid = |detail: String| ApiError::new(ProblemKind::InvalidRequest, detail);
    let text = std::str::from_utf8(&body).map_err(|e| invalid(e.to_string()))?;
    let request: RotateRequest = if text.trim().is_empty() || text.trim() == "null" {
        RotateRequest::default()
    } else {
        super::json_object(text).map_err(invalid)?
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
    Ok(Json(NewSecret {
        key: secret,
        api_key: key_view(&key),
    }))
}

/// `POST /admin/api/keys/{id}/revoke`: the key is refused from now on (kept, revoked, for the
/// record).
#[utoipa::path(post, path = "/admin/api/keys/{id}/revoke", operation_id = "revoke_key", tag = "admin", summary = "Revokes the key", params(("id" = String, Path, description = "Key id")), responses((status = 200, description = "Revokes the key", body = KeyChanged)), security(("admin_token" = [])))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Json<KeyChanged>, ApiError> {
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
    Ok(Json(KeyChanged {
        api_key: key_view(&key),
    }))
}
