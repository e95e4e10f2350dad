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
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use super::{Actor, Body, Params, audit};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::now_ms;
use crate::topics::admin::{TopicAdminError, TopicDetail, TopicSummary};

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

/// The cluster's topics.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TopicList {
    /// Every topic, Kafka's own included.
    topics: Vec<TopicSummary>,
}

/// `GET /admin/api/topics`.
#[utoipa::path(get, path = "/admin/api/topics", operation_id = "list_topics", tag = "admin", summary = "Every topic with health and offsets", responses((status = 200, description = "Every topic with health and offsets", body = TopicList)), security(("admin_token" = [])))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<TopicList>, ApiError> {
    let topics = state.topics().list_topics().await.map_err(admin_error)?;
    Ok(Json(TopicList { topics }))
}

/// One topic, and the template its name matches.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TopicAnswer {
    /// The topic.
    topic: TopicDetail,
    /// The name of the template the topic's name matches; null when none does.
    #[schema(required = true)]
    template: Option<String>,
}

/// `GET /admin/api/topics/{name}`.
#[utoipa::path(get, path = "/admin/api/topics/{name}", operation_id = "describe_topic", tag = "admin", summary = "One topic: partitions, configs, lag", params(("name" = String, Path, description = "Topic", pattern = r"^([A-Za-z0-9-][A-Za-z0-9._-]{0,248}|_([A-Za-z0-9.-][A-Za-z0-9._-]{0,247})?|\.([A-Za-z0-9_-][A-Za-z0-9._-]{0,247}|\.[A-Za-z0-9._-]{1,247}))$")), responses((status = 200, description = "One topic: partitions, configs, lag", body = TopicAnswer)), security(("admin_token" = [])))]
pub(super) async fn detail(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TopicAnswer>, ApiError> {
    checked_name(&name)?;
    let policy = state.topics().policy();
    let detail = state
        .topics()
        .describe_topic(&name)
        .await
        .map_err(admin_error)?
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, format!("no topic `{name}`")))?;
    let template = policy.template_for(&name).ok().map(|t| t.name.clone());
    Ok(Json(TopicAnswer {
        topic: detail,
        template,
    }))
}

/// Body of `POST /admin/api/topics`. With only a name, the template whose pattern matches is
/// used; `template` names one; `partitions`, `replication_factor` and `configs` override it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTopic {
    /// The topic's name.
    name: String,
    /// The template to create it from, by name, instead of the one its name matches.
    #[serde(default)]
    template: Option<String>,
    /// Partitions (1 to 10000), instead of the template's.
    #[serde(default)]
    partitions: Option<i32>,
    /// Replicas per partition, instead of the template's.
    #[serde(default)]
    replication_factor: Option<i32>,
    /// Topic configs set on top of the template's.
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

/// A topic as it was created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Created {
    /// The topic's name.
    name: String,
    /// The template it was created from.
    template: String,
    /// Partitions.
    partitions: i32,
    /// Replicas per partition.
    replication_factor: i32,
    /// The configs it was created with.
    configs: BTreeMap<String, String>,
}

/// `POST /admin/api/topics`: 201 with what was created.
#[utoipa::path(post, path = "/admin/api/topics", operation_id = "create_topic", tag = "admin", summary = "Creates a topic", request_body(content = CreateTopic, content_type = "application/json"), responses((status = 201, description = "Creates a topic", body = Created)), security(("admin_token" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<CreateTopic>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
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
                serde_json::to_value(created).ok(),
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
) -> Result<(StatusCode, Created), ApiError> {
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
    let rf = match request.replication_factor {
        Some(rf) => rf,
        None => state.topics().replication_for(template, &metadata).await,
    };
    let mut configs = template.topic_configs(rf);
    configs.extend(request.configs);
    state
        .topics()
        .create_topic_exact(name, partitions, rf, &configs)
        .await
        .map_err(admin_error)?;
    Ok((
        StatusCode::CREATED,
        Created {
            name: name.clone(),
            template: template.name.clone(),
            partitions,
            replication_factor: rf,
            configs,
        },
    ))
}

/// Body of `PATCH /admin/api/topics/{name}/configs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AlterConfigs {
    /// The configs to change (at least one): a value sets a config, `null` resets it to the
    /// broker's default.
    configs: BTreeMap<String, Option<String>>,
}

/// A topic's own configs after a change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Altered {
    /// The topic's name.
    name: String,
    /// The configs set on the topic itself (inherited ones aside).
    configs: BTreeMap<String, String>,
}

/// `PATCH /admin/api/topics/{name}/configs`.
#[utoipa::path(patch, path = "/admin/api/topics/{name}/configs", operation_id = "alter_topic_configs", tag = "admin", summary = "Sets or resets topic configs", params(("name" = String, Path, description = "Topic", pattern = r"^([A-Za-z0-9-][A-Za-z0-9._-]{0,248}|_([A-Za-z0-9.-][A-Za-z0-9._-]{0,247})?|\.([A-Za-z0-9_-][A-Za-z0-9._-]{0,247}|\.[A-Za-z0-9._-]{1,247}))$")), request_body(content = AlterConfigs, content_type = "application/json"), responses((status = 200, description = "Sets or resets topic configs", body = Altered)), security(("admin_token" = [])))]
pub(super) async fn alter(
    State(state): State<AppState>,
    Path(name): Path<String>,
    actor: Actor,
    Body(request): Body<AlterConfigs>,
) -> Result<Json<Altered>, ApiError> {
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
            audit(
                &state,
                &actor,
                "topic.alter",
                &name,
                Ok(()),
                Some(json!(before)),
                Some(json!(after)),
            )
            .await;
            Ok(Json(Altered {
                name,
                configs: after,
            }))
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

/// A confirmation token to delete a topic.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct DeleteToken {
    /// The topic it deletes.
    topic: String,
    /// The token, for `DELETE …?confirm=`.
    token: String,
    /// Until when it is valid (ms since the epoch).
    expires_ms: i64,
}

/// `POST /admin/api/topics/{name}/delete-token`.
#[utoipa::path(post, path = "/admin/api/topics/{name}/delete-token", operation_id = "topic_delete_token", tag = "admin", summary = "A confirmation token to delete the topic", params(("name" = String, Path, description = "Topic", pattern = r"^([A-Za-z0-9-][A-Za-z0-9._-]{0,248}|_([A-Za-z0-9.-][A-Za-z0-9._-]{0,247})?|\.([A-Za-z0-9_-][A-Za-z0-9._-]{0,247}|\.[A-Za-z0-9._-]{1,247}))$")), responses((status = 200, description = "A confirmation token to delete the topic", body = DeleteToken)), security(("admin_token" = [])))]
pub(super) async fn delete_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeleteToken>, ApiError> {
    checked_name(&name)?;
    let expires_ms = now_ms() + DELETE_TOKEN_TTL_MS;
    let token = format!("{expires_ms}.{}", delete_mac(&state, &name, expires_ms)?);
    Ok(Json(DeleteToken {
        topic: name,
        token,
        expires_ms,
    }))
}

/// Whether `token` (from `delete-token`) confirms deleting `name` now.
fn confirms(state: &AppState, name: &str, token: &str) -> bool {
    let Some((expires, mac)) = token.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return false;
    };
    let Ok(expected) = delete_mac(state, name, expires) else {
        return false;
    };
    bool::from(subtle::ConstantTimeEq::ct_eq(
        mac.as_bytes(),
        expected.as_bytes(),
    )) && expires >= now_ms()
}

/// Query of `DELETE /admin/api/topics/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    confirm: Option<String>,
}

/// `DELETE /admin/api/topics/{name}?confirm=<token>`.
#[utoipa::path(delete, path = "/admin/api/topics/{name}", operation_id = "delete_topic", tag = "admin", summary = "Deletes the topic", params(("name" = String, Path, description = "Topic", pattern = r"^([A-Za-z0-9-][A-Za-z0-9._-]{0,248}|_([A-Za-z0-9.-][A-Za-z0-9._-]{0,247})?|\.([A-Za-z0-9_-][A-Za-z0-9._-]{0,247}|\.[A-Za-z0-9._-]{1,247}))$"), ("confirm" = String, Query, description = "The token from `POST …/delete-token`; a token that is not this topic's, or has expired, is refused (403)")), responses((status = 204, description = "Deleted")), security(("admin_token" = [])))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    actor: Actor,
    Params(q): Params<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    checked_name(&name)?;
    let Some(token) = q.confirm.as_deref() else {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            format!(
                "deleting `{name}` needs `?confirm=<token>` from POST \
                 /admin/api/topics/{name}/delete-token (valid {} s)",
                DELETE_TOKEN_TTL_MS / 1000
            ),
        ));
    };
    // A well-formed request whose token does not allow this deletion: 403.
    if !confirms(&state, &name, token) {
        return Err(ApiError::new(
            ProblemKind::Forbidden,
            format!(
                "the confirmation token is not one for deleting `{name}`, or it has expired: \
                 get one from POST /admin/api/topics/{name}/delete-token (valid {} s)",
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
