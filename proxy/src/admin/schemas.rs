//! `/admin/api/schemas`: the JSON Schemas of event data per (service, type), in versions, and
//! the per-service policy for events that do not match. Every change is written with its
//! audit entry in one transaction, and put in force on this proxy before the answer (other
//! proxies sharing the store follow within seconds).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use courier_shared::ProblemKind;
use courier_shared::envelope::MAX_NAME_LEN;
use courier_shared::topic::normalise_component;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Actor, Body, audit, store, store_error};
use crate::error::ApiError;
use crate::schemas::{self, OnInvalid, SchemaPolicy};
use crate::state::AppState;
use crate::store::{AuditEntry, Registered, SCHEMAS_SETTING, SchemaVersion};

/// A registered schema version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SchemaVersionView {
    /// The service whose events it checks.
    service: String,
    /// The CloudEvents `type` it checks.
    #[serde(rename = "type")]
    event_type: String,
    /// 1, 2, …
    version: i64,
    /// The URI events carry in `dataschema` to name this version.
    dataschema: String,
    /// The JSON Schema.
    #[schema(value_type = Object)]
    schema: Value,
    /// When it was registered (ms since the epoch).
    created_ms: i64,
    /// Who registered it.
    created_by: String,
}

fn version_view(v: SchemaVersion) -> SchemaVersionView {
    SchemaVersionView {
        dataschema: schemas::uri(&v.service, &v.event_type, v.version),
        schema: serde_json::from_str(&v.schema).unwrap_or(Value::Null),
        service: v.service,
        event_type: v.event_type,
        version: v.version,
        created_ms: v.created_ms,
        created_by: v.created_by,
    }
}

/// One (service, type) with schemas.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SchemaTypeView {
    /// The service.
    service: String,
    /// The CloudEvents `type`.
    #[serde(rename = "type")]
    event_type: String,
    /// Its live versions, oldest first.
    versions: Vec<i64>,
    /// The version events without `dataschema` are checked against.
    latest: i64,
    /// The latest version's `dataschema` URI.
    dataschema: String,
    /// When the latest version was registered (ms since the epoch).
    updated_ms: i64,
}

/// The bounds on schemas.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SchemaBoundsView {
    /// Largest schema, bytes of compact JSON.
    max_schema_bytes: usize,
    /// Most versions of one (service, type).
    max_versions: i64,
    /// Most (service, type) pairs with schemas.
    max_types: i64,
}

/// Every (service, type) with schemas, and the policy for invalid events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SchemaList {
    /// The (service, type) pairs, by service then type.
    types: Vec<SchemaTypeView>,
    /// What happens to invalid events, per service.
    policy: SchemaPolicy,
    /// Counts schema changes; proxies sharing the store follow it.
    generation: i64,
    /// The bounds.
    bounds: SchemaBoundsView,
}

/// `GET /admin/api/schemas`.
#[utoipa::path(get, path = "/admin/api/schemas", operation_id = "list_schemas", tag = "admin",
    summary = "Every event type with schemas, and the policy for invalid events",
    responses((status = 200, description = "Types with schemas and the policy", body = SchemaList)),
    security(("admin_token" = [])))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<SchemaList>, ApiError> {
    let store = store(&state)?;
    let setting = store.setting(SCHEMAS_SETTING).await.map_err(store_error)?;
    let mut types: Vec<SchemaTypeView> = Vec::new();
    for key in store.schema_keys().await.map_err(store_error)? {
        match types.last_mut() {
            Some(t) if t.service == key.service && t.event_type == key.event_type => {
                t.versions.push(key.version);
                t.latest = key.version;
                t.dataschema = schemas::uri(&key.service, &key.event_type, key.version);
                t.updated_ms = key.created_ms;
            }
            _ => types.push(SchemaTypeView {
                dataschema: schemas::uri(&key.service, &key.event_type, key.version),
                versions: vec![key.version],
                latest: key.version,
                updated_ms: key.created_ms,
                service: key.service,
                event_type: key.event_type,
            }),
        }
    }
    let policy = setting
        .as_ref()
        .and_then(|s| serde_json::from_str(&s.value).ok())
        .unwrap_or_default();
    Ok(Json(SchemaList {
        types,
        policy,
        generation: setting.map_or(0, |s| s.version),
        bounds: SchemaBoundsView {
            max_schema_bytes: schemas::MAX_SCHEMA_BYTES,
            max_versions: schemas::MAX_VERSIONS,
            max_types: schemas::MAX_TYPES,
        },
    }))
}

/// A service name as the API key and the topic policy know it.
fn service_name(service: &str) -> Result<(), ApiError> {
    if service.is_empty()
        || service.len() > 64
        || normalise_component(service) != service
        || service.contains(['.', '_'])
    {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            format!(
                "`{service}` is not a service name: lowercase letters, digits and `-`, at most \
                 64, as the service of a `source` (`/billing/api` → `billing`)"
            ),
        ));
    }
    Ok(())
}

/// A CloudEvents `type` within the event bounds (counted in characters, as the document's
/// `maxLength`; an event's type is bounded in bytes, so a longer one only never matches).
fn type_name(ty: &str) -> Result<(), ApiError> {
    if ty.is_empty() || ty.chars().count() > MAX_NAME_LEN || ty.chars().any(char::is_control) {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            format!("an event type has 1 to {MAX_NAME_LEN} characters, none a control character"),
        ));
    }
    Ok(())
}

/// The live versions of one (service, type).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SchemaVersionList {
    /// Oldest first.
    versions: Vec<SchemaVersionView>,
}

/// `GET /admin/api/schemas/{service}/{type}`: every live version, with its schema.
#[utoipa::path(get, path = "/admin/api/schemas/{service}/{type}", operation_id = "get_schemas",
    tag = "admin", summary = "The versions of one event type's schema",
    params(
        ("service" = String, Path, description = "The service"),
        ("type" = String, Path, description = "The CloudEvents type"),
    ),
    responses((status = 200, description = "Its versions, oldest first", body = SchemaVersionList)),
    security(("admin_token" = [])))]
pub(super) async fn versions(
    State(state): State<AppState>,
    Path((service, ty)): Path<(String, String)>,
) -> Result<Json<SchemaVersionList>, ApiError> {
    let store = store(&state)?;
    let versions = store
        .schema_versions(&service, &ty, None)
        .await
        .map_err(store_error)?;
    if versions.is_empty() {
        return Err(no_schema(&service, &ty));
    }
    Ok(Json(SchemaVersionList {
        versions: versions.into_iter().map(version_view).collect(),
    }))
}

fn no_schema(service: &str, ty: &str) -> ApiError {
    ApiError::new(
        ProblemKind::NotFound,
        format!("type `{ty}` of service `{service}` has no schema"),
    )
}

/// `GET /admin/api/schemas/{service}/{type}/{version}`.
#[utoipa::path(get, path = "/admin/api/schemas/{service}/{type}/{version}",
    operation_id = "get_schema_version", tag = "admin", summary = "One schema version",
    params(
        ("service" = String, Path, description = "The service"),
        ("type" = String, Path, description = "The CloudEvents type"),
        ("version" = i64, Path, description = "The version", minimum = 1),
    ),
    responses((status = 200, description = "The version", body = SchemaVersionView)),
    security(("admin_token" = [])))]
pub(super) async fn version(
    State(state): State<AppState>,
    Path((service, ty, version)): Path<(String, String, String)>,
) -> Result<Json<SchemaVersionView>, ApiError> {
    let store = store(&state)?;
    let version: i64 = version.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::new(
            ProblemKind::InvalidRequest,
            "a version is a whole number from 1",
        )
    })?;
    let found = store
        .schema_versions(&service, &ty, Some(version))
        .await
        .map_err(store_error)?;
    found
        .into_iter()
        .next()
        .map(version_view)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                ProblemKind::NotFound,
                format!("type `{ty}` of service `{service}` has no schema version {version}"),
            )
        })
}

/// Body of `POST /admin/api/schemas/{service}/{type}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SchemaRegistration {
    /// A JSON Schema (draft 2020-12 unless `$schema` names another of 4, 6, 7, 2019-09)
    /// for the events' `data`: an object, referring to nothing outside itself, at most
    /// 65,536 bytes as compact JSON.
    #[schema(value_type = Object)]
    schema: Value,
}

/// `POST /admin/api/schemas/{service}/{type}`: registers the next version; 201 with it.
#[utoipa::path(post, path = "/admin/api/schemas/{service}/{type}",
    operation_id = "register_schema", tag = "admin",
    summary = "Registers a new version of an event type's schema",
    params(
        ("service" = String, Path, description = "The service: lowercase letters, digits and `-`", pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64),
        ("type" = String, Path, description = "The CloudEvents type", min_length = 1, max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"),
    ),
    request_body(content = SchemaRegistration, content_type = "application/json"),
    responses((status = 201, description = "The version registered, in force", body = SchemaVersionView)),
    security(("admin_token" = [])))]
pub(super) async fn register(
    State(state): State<AppState>,
    actor: Actor,
    Path((service, ty)): Path<(String, String)>,
    Body(request): Body<SchemaRegistration>,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let target = format!("{service}/{ty}");
    let accepted = service_name(&service)
        .and_then(|()| type_name(&ty))
        .and_then(|()| {
            schemas::accept(&request.schema).map_err(|e| {
                let kind = if e.contains("the limit is") {
                    ProblemKind::PayloadTooLarge
                } else {
                    ProblemKind::InvalidRequest
                };
                ApiError::new(kind, format!("schema: {e}"))
            })
        });
    let text = match accepted {
        Ok(text) => text,
        Err(e) => {
            audit(
                &state,
                &actor,
                "schema.register",
                &target,
                Err(&e.detail),
                None,
                None,
            )
            .await;
            return Err(e);
        }
    };
    let registered = store
        .register_schema(&service, &ty, &text, schemas::BOUNDS, |v| AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: actor.0.clone(),
            action: "schema.register".into(),
            target: target.clone(),
            outcome: "ok".into(),
            before: None,
            after: Some(json!({
                "version": v.version,
                "dataschema": schemas::uri(&service, &ty, v.version),
                "schema": request.schema,
            })),
        })
        .await
        .map_err(store_error)?;
    let refused = match registered {
        Registered::Saved(v) => {
            refresh(&state).await;
            tracing::info!(service, event_type = ty, version = v.version, actor = %actor.0, "schema registered");
            return Ok((StatusCode::CREATED, Json(version_view(v))).into_response());
        }
        Registered::TooManyVersions => format!(
            "type `{ty}` of service `{service}` has {} versions, the most allowed: delete its \
             schemas to start again",
            schemas::MAX_VERSIONS
        ),
        Registered::TooManyTypes => format!(
            "{} event types have schemas, the most allowed",
            schemas::MAX_TYPES
        ),
        Registered::Raced => {
            "another registration of this type took the version number first: send it again".into()
        }
    };
    audit(
        &state,
        &actor,
        "schema.register",
        &target,
        Err(&refused),
        None,
        None,
    )
    .await;
    Err(ApiError::new(ProblemKind::Conflict, refused))
}

/// What a deletion removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SchemasDeleted {
    /// How many versions.
    deleted: u64,
}

/// `DELETE /admin/api/schemas/{service}/{type}`: the type's events are no longer checked.
/// Version numbers stay taken: a new registration continues after the last one.
#[utoipa::path(delete, path = "/admin/api/schemas/{service}/{type}",
    operation_id = "delete_schemas", tag = "admin",
    summary = "Deletes every version of an event type's schema",
    params(
        ("service" = String, Path, description = "The service"),
        ("type" = String, Path, description = "The CloudEvents type"),
    ),
    responses((status = 200, description = "The versions deleted", body = SchemasDeleted)),
    security(("admin_token" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    Path((service, ty)): Path<(String, String)>,
) -> Result<Json<SchemasDeleted>, ApiError> {
    let store = store(&state)?;
    let before = store
        .schema_versions(&service, &ty, None)
        .await
        .map_err(store_error)?;
    if before.is_empty() {
        return Err(no_schema(&service, &ty));
    }
    let entry = AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: actor.0.clone(),
        action: "schema.delete".into(),
        target: format!("{service}/{ty}"),
        outcome: "ok".into(),
        before: Some(json!({
            "versions": before.iter().map(|v| v.version).collect::<Vec<_>>(),
        })),
        after: None,
    };
    let deleted = store
        .delete_schemas(&service, &ty, &entry)
        .await
        .map_err(store_error)?;
    refresh(&state).await;
    tracing::info!(service, event_type = ty, deleted, actor = %actor.0, "schemas deleted");
    Ok(Json(SchemasDeleted { deleted }))
}

/// Body of `PUT /admin/api/schemas-policy/{service}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SchemaPolicyChange {
    /// What happens to the service's events that do not match their schema.
    on_invalid: OnInvalid,
}

/// The policy after a change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SchemaPolicySaved {
    /// The whole policy, as saved and in force.
    policy: SchemaPolicy,
}

/// `PUT /admin/api/schemas-policy/{service}`: 422 for the service's invalid events, or its
/// error topic.
#[utoipa::path(put, path = "/admin/api/schemas-policy/{service}",
    operation_id = "put_schema_policy", tag = "admin",
    summary = "Sets what happens to a service's events that do not match their schema",
    params(("service" = String, Path, description = "The service: lowercase letters, digits and `-`", pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
    request_body(content = SchemaPolicyChange, content_type = "application/json"),
    responses((status = 200, description = "The policy in force", body = SchemaPolicySaved)),
    security(("admin_token" = [])))]
pub(super) async fn put_policy(
    State(state): State<AppState>,
    actor: Actor,
    Path(service): Path<String>,
    Body(request): Body<SchemaPolicyChange>,
) -> Result<Json<SchemaPolicySaved>, ApiError> {
    let store = store(&state)?;
    service_name(&service)?;
    // Read, change one service, save if nobody saved meanwhile; else again.
    for _ in 0..5 {
        let setting = store.setting(SCHEMAS_SETTING).await.map_err(store_error)?;
        let mut policy: SchemaPolicy = setting
            .as_ref()
            .and_then(|s| serde_json::from_str(&s.value).ok())
            .unwrap_or_default();
        let before = policy.on_invalid(&service);
        if request.on_invalid == OnInvalid::Reject {
            policy.on_invalid.remove(&service);
        } else {
            policy
                .on_invalid
                .insert(service.clone(), request.on_invalid);
        }
        if policy.on_invalid.len() > schemas::MAX_POLICY_SERVICES {
            return Err(ApiError::new(
                ProblemKind::Conflict,
                format!(
                    "the policy names {} services, the most allowed",
                    schemas::MAX_POLICY_SERVICES
                ),
            ));
        }
        let value = serde_json::to_string(&policy)
            .map_err(|e| ApiError::new(ProblemKind::Internal, e.to_string()))?;
        let entry = AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: actor.0.clone(),
            action: "schema.policy".into(),
            target: service.clone(),
            outcome: "ok".into(),
            before: Some(json!({ "on_invalid": before })),
            after: Some(json!({ "on_invalid": request.on_invalid })),
        };
        let expected = setting.map_or(0, |s| s.version);
        if store
            .save_setting(SCHEMAS_SETTING, &value, expected, &entry)
            .await
            .map_err(store_error)?
            .is_some()
        {
            refresh(&state).await;
            tracing::info!(service, on_invalid = ?request.on_invalid, actor = %actor.0, "schema policy changed");
            return Ok(Json(SchemaPolicySaved { policy }));
        }
    }
    Err(ApiError::new(
        ProblemKind::Conflict,
        "the schemas kept changing while this was saved: send it again",
    ))
}

/// Puts a change in force on this proxy at once.
async fn refresh(state: &AppState) {
    let Some(store) = state.store() else { return };
    if let Err(e) = state.schemas().reload(store).await {
        tracing::warn!(error = %e, "could not reload the schemas after a change; the next poll will");
    }
}
