//! Topics in the admin API: list, detail, create (from a template or custom), alter configs,
//! delete with a confirmation token. Every change is audited with its before and after.
//!
//! Deleting takes two steps: `POST …/delete-token` returns a token for that topic, valid for
//! [`DELETE_TOKEN_TTL_MS`]; `DELETE …?confirm=<token>` deletes. The token is an HMAC of the
//! topic and its expiry under the admin token, so any proxy of a deployment accepts it and
//! nothing is kept in memory.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use courier_shared::ProblemKind;
use courier_shared::topic::{check_collision, validate_topic_name};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{Actor, Body, Params, audit};
use crate::api::AppState;
use crate::dlq::store::now_ms;
use crate::error::ApiError;
use crate::topics::admin::TopicAdminError;

/// How long a delete confirmation token is valid.
pub const DELETE_TOKEN_TTL_MS: i64 = 120_000;

fn admin_error(e: TopicAdminError) -> ApiError {
    match e {
        TopicAdminError::Exists(_) => ApiError::new(ProblemKind::Conflict, e.to_string()),
        TopicAdminError::Missing(_) => ApiError::new(ProblemKind::NotFound, e.to_string()),
        TopicAdminError::Refused(_) => ApiError::new(ProblemKind::InvalidRequest, e.to_string()),
        TopicAdminError::Unavailable(_) => {
            ApiError::new(ProblemKind::KafkaUnavailable, e.to_string()).retry_after(1)
        }
    }
}

fn checked_name(name: &str) -> Result<(), ApiError> {
    validate_topic_name(name).map_err(|e| ApiError::new(ProblemKind::InvalidTopic, e.to_string()))
}

/// `GET /admin/api/topics`.
#[utoipa::path(get, path = "/admin/api/topics", tag = "admin", summary = "Every topic with health and offsets", responses((status = 200, description = "Every topic with health and offsets", body = Object)), security(("admin_token" = [])))]
pub(super) async fn list(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let topics = state.topics().list_topics().await.map_err(admin_error)?;
    Ok(Json(json!({ "topics": topics })))
}

/// `GET /admin/api/topics/{name}`.
#[utoipa::path(get, path = "/admin/api/topics/{name}", tag = "admin", summary = "One topic: partitions, configs, lag", params(("name" = String, Path, description = "Topic")), responses((status = 200, description = "One topic: partitions, configs, lag", body = Object)), security(("admin_token" = [])))]
pub(super) async fn detail(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    checked_name(&name)?;
    let policy = state.topics().policy();
    let detail = state
        .topics()
        .describe_topic(&name)
        .await
        .map_err(admin_error)?
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, format!("no topic `{name}`")))?;
    let template = policy.template_for(&name).ok().map(|t| t.name.clone());
    Ok(Json(json!({ "topic": detail, "template": template })))
}

/// Body of `POST /admin/api/topics`. With only a name, the template whose pattern matches is
/// used; `template` names one; `partitions`, `replication_factor` and `configs` override it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTopic {
    name: String,
    template: Option<String>,
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

/// `POST /admin/api/topics`: 201 with what was created.
#[utoipa::path(post, path = "/admin/api/topics", tag = "admin", summary = "Creates a topic", request_body(content = Object, content_type = "application/json"), responses((status = 201, description = "Creates a topic", body = Object)), security(("admin_token" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<CreateTopic>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let name = request.name.clone();
    let outcome = create_topic(&state, request).await;
    match &outcome {
        Ok((_, created)) => {
            audit(
                &state,
                &actor,
                "topic.create",
                &name,
                Ok(()),
                None,
                Some(created.clone()),
            )
            .await;
        }
        Err(e) => {
            audit(
                &state,
                &actor,
                "topic.create",
                &name,
                Err(&e.detail),
                None,
                None,
            )
            .await
        }
    }
    let (status, created) = outcome?;
    Ok((status, Json(created)))
}

async fn create_topic(
    state: &AppState,
    request: CreateTopic,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    let name = &request.name;
    checked_name(name)?;
    let policy = state.topics().policy();
    policy
        .check_admin(name)
        .map_err(|r| ApiError::new(ProblemKind::TopicNotAllowed, r.to_string()))?;
    let template = match &request.template {
        Some(t) => policy.template_named(t).ok_or_else(|| {
            ApiError::new(ProblemKind::InvalidRequest, format!("no template `{t}`"))
        })?,
        None => policy
            .template_for(name)
            .map_err(|r| ApiError::new(ProblemKind::TopicNotAllowed, r.to_string()))?,
    };
    let partitions = request.partitions.unwrap_or(template.partitions);
    if !(1..=10_000).contains(&partitions) {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "partitions must be 1 to 10000",
        ));
    }
    let metadata = state
        .topics()
        .metadata()
        .await
        .map_err(|e| admin_error(e.into()))?;
    check_collision(name, metadata.topics().iter().map(|t| t.name()))
        .map_err(|e| ApiError::new(ProblemKind::Conflict, e.to_string()))?;
    let brokers = metadata.brokers().len();
    let rf = request
        .replication_factor
        .unwrap_or_else(|| template.replication_for(state.topics().brokers_for_creation(brokers)));
    let mut configs = template.topic_configs(rf);
    configs.extend(request.configs);
    state
        .topics()
        .create_topic_exact(name, partitions, rf, &configs)
        .await
        .map_err(admin_error)?;
    Ok((
        StatusCode::CREATED,
        json!({
            "name": name,
            "template": template.name,
            "partitions": partitions,
            "replication_factor": rf,
            "configs": configs,
        }),
    ))
}

/// Body of `PATCH /admin/api/topics/{name}/configs`: a value sets a config, `null` resets it
/// to the broker's default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlterConfigs {
    configs: BTreeMap<String, Option<String>>,
}

/// `PATCH /admin/api/topics/{name}/configs`.
#[utoipa::path(patch, path = "/admin/api/topics/{name}/configs", tag = "admin", summary = "Sets or resets topic configs", params(("name" = String, Path, description = "Topic")), request_body(content = Object, content_type = "application/json"), responses((status = 200, description = "Sets or resets topic configs", body = Object)), security(("admin_token" = [])))]
pub(super) async fn alter(
    State(state): State<AppState>,
    Path(name): Path<String>,
    actor: Actor,
    Body(request): Body<AlterConfigs>,
) -> Result<Json<serde_json::Value>, ApiError> {
    checked_name(&name)?;
    if request.configs.is_empty() {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "`configs` names no config to change",
        ));
    }
    match state
        .topics()
        .alter_topic_configs(&name, &request.configs)
        .await
    {
        Ok((before, after)) => {
            let (before, after) = (json!(before), json!(after));
            audit(
                &state,
                &actor,
                "topic.alter",
                &name,
                Ok(()),
                Some(before),
                Some(after.clone()),
            )
            .await;
            Ok(Json(json!({ "name": name, "configs": after })))
        }
        Err(e) => {
            let error = admin_error(e);
            let asked = json!(request.configs);
            audit(
                &state,
                &actor,
                "topic.alter",
                &name,
                Err(&error.detail),
                None,
                Some(asked),
            )
            .await;
            Err(error)
        }
    }
}

fn delete_mac(state: &AppState, name: &str, expires_ms: i64) -> Result<String, ApiError> {
    let key = state
        .admin_token()
        .ok_or_else(|| ApiError::new(ProblemKind::Forbidden, "the admin API is disabled"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .map_err(|e| ApiError::new(ProblemKind::Internal, e.to_string()))?;
    mac.update(format!("delete-topic\n{name}\n{expires_ms}").as_bytes());
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// `POST /admin/api/topics/{name}/delete-token`.
#[utoipa::path(post, path = "/admin/api/topics/{name}/delete-token", tag = "admin", summary = "A confirmation token to delete the topic", params(("name" = String, Path, description = "Topic")), responses((status = 200, description = "A confirmation token to delete the topic", body = Object)), security(("admin_token" = [])))]
pub(super) async fn delete_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    checked_name(&name)?;
    let expires_ms = now_ms() + DELETE_TOKEN_TTL_MS;
    let token = format!("{expires_ms}.{}", delete_mac(&state, &name, expires_ms)?);
    Ok(Json(
        json!({ "topic": name, "token": token, "expires_ms": expires_ms }),
    ))
}

/// Query of `DELETE /admin/api/topics/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    confirm: Option<String>,
}

/// `DELETE /admin/api/topics/{name}?confirm=<token>`.
#[utoipa::path(delete, path = "/admin/api/topics/{name}", tag = "admin", summary = "Deletes the topic", params(("name" = String, Path, description = "Topic"), ("confirm" = Option<String>, Query, description = "The confirmation token")), responses((status = 204, description = "Deleted")), security(("admin_token" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    actor: Actor,
    Params(q): Params<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    checked_name(&name)?;
    let confirmed = q.confirm.as_deref().and_then(|token| {
        let (expires, mac) = token.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        let expected = delete_mac(&state, &name, expires).ok()?;
        let valid = bool::from(subtle::ConstantTimeEq::ct_eq(
            mac.as_bytes(),
            expected.as_bytes(),
        ));
        (valid && expires >= now_ms()).then_some(())
    });
    if confirmed.is_none() {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            format!(
                "deleting `{name}` needs `?confirm=<token>` from POST \
                 /admin/api/topics/{name}/delete-token (valid {} s)",
                DELETE_TOKEN_TTL_MS / 1000
            ),
        ));
    }
    let before = state
        .topics()
        .describe_topic(&name)
        .await
        .ok()
        .flatten()
        .map(|d| json!({ "partitions": d.summary.partitions, "replication_factor": d.summary.replication_factor, "end_offsets": d.summary.end_offsets }));
    match state.topics().delete_topic(&name).await {
        Ok(()) => {
            audit(&state, &actor, "topic.delete", &name, Ok(()), before, None).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            let error = admin_error(e);
            audit(
                &state,
                &actor,
                "topic.delete",
                &name,
                Err(&error.detail),
                before,
                None,
            )
            .await;
            Err(error)
        }
    }
}
