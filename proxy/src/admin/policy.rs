//! The topic policy at runtime: where it comes from at startup, how a change made through
//! the admin API is persisted and put in force, and how proxies sharing a store follow it.
//!
//! The configuration file gives the first policy. Once an operator saves one through the
//! admin API it lives in the store (`settings`, with a version), and wins over the file on
//! the next start; every proxy on the store polls the version and switches within
//! [`FOLLOW_INTERVAL`]. Saving names the version it edits, so two operators editing at once
//! cannot overwrite each other unseen (409).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use courier_shared::policy::{CompiledPolicy, Preview, TopicPolicy, TopicTemplate};
use courier_shared::{Event, ProblemKind};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Actor, Body, audit, store, store_error};
use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AuditEntry, Store};

/// The settings row the policy is saved under.
pub const SETTING: &str = "topic_policy";
/// How often a proxy looks for a policy saved by another proxy.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

/// The policy to start with, and its version (0: the configuration file's).
pub async fn initial(
    config: &Config,
    store: Option<&Store>,
) -> Result<(CompiledPolicy, i64), crate::server::ServerError> {
    if let Some(store) = store
        && let Some(saved) = store.setting(SETTING).await?
    {
        match serde_json::from_str::<TopicPolicy>(&saved.value)
            .map_err(|e| e.to_string())
            .and_then(|p| p.compile().map_err(|e| e.to_string()))
        {
            Ok(policy) => {
                tracing::info!(
                    version = saved.version,
                    updated_by = %saved.updated_by,
                    "topic policy: the one saved through the admin API, not the configuration file's"
                );
                return Ok((policy, saved.version));
            }
            Err(e) => tracing::error!(
                version = saved.version,
                error = %e,
                "topic policy saved in the store is not valid; using the configuration file's"
            ),
        }
    }
    Ok((config.topics.clone().compile()?, 0))
}

/// Puts in force any newer policy another proxy saved, until `shutdown`.
pub async fn follow(state: AppState, shutdown: CancellationToken) {
    let Some(store) = state.dlq().cloned() else {
        return;
    };
    let mut tick = tokio::time::interval(FOLLOW_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let saved = match store.setting(SETTING).await {
            Ok(Some(saved)) if saved.version > state.policy_version() => saved,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "could not read the topic policy");
                continue;
            }
        };
        match serde_json::from_str::<TopicPolicy>(&saved.value)
            .map_err(|e| e.to_string())
            .and_then(|p| p.compile().map_err(|e| e.to_string()))
        {
            Ok(policy) => {
                state.topics().set_policy(policy);
                state.set_policy_version(saved.version);
                tracing::info!(version = saved.version, updated_by = %saved.updated_by, "topic policy changed");
            }
            Err(e) => {
                tracing::error!(version = saved.version, error = %e, "saved topic policy is not valid; keeping the current one");
                state.set_policy_version(saved.version);
            }
        }
    }
}

/// The topic policy in force.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct PolicyInForce {
    /// Its version: 0 for the configuration file's, then one more per change saved.
    version: i64,
    /// The policy.
    policy: TopicPolicy,
    /// Whether a change is saved in the store (false without a store: a change would not
    /// outlive the process, and is refused).
    persisted: bool,
}

/// `GET /admin/api/policy`.
#[utoipa::path(get, path = "/admin/api/policy", operation_id = "get_policy", tag = "admin", summary = "The topic policy in force and its version", responses((status = 200, description = "The topic policy in force and its version", body = PolicyInForce)), security(("admin_token" = [])))]
pub(super) async fn get(State(state): State<AppState>) -> Json<PolicyInForce> {
    Json(PolicyInForce {
        version: state.policy_version(),
        policy: state.topics().policy().policy().clone(),
        persisted: state.dlq().is_some(),
    })
}

/// Body of `PUT /admin/api/policy`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyUpdate {
    /// The version being edited, as `GET` returned it.
    version: i64,
    /// The new policy, whole.
    policy: TopicPolicy,
}

/// The policy saved.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct PolicySaved {
    /// Its new version.
    version: i64,
    /// The policy, as saved and now in force.
    policy: TopicPolicy,
}

/// `PUT /admin/api/policy`: validates, saves with its audit entry, puts in force.
#[utoipa::path(put, path = "/admin/api/policy", operation_id = "put_policy", tag = "admin", summary = "Saves the topic policy", request_body(content = PolicyUpdate, content_type = "application/json"), responses((status = 200, description = "Saves the topic policy", body = PolicySaved)), security(("admin_token" = [])))]
pub(super) async fn put(
    State(state): State<AppState>,
    actor: Actor,
    Body(update): Body<PolicyUpdate>,
) -> Result<Json<PolicySaved>, ApiError> {
    let store = store(&state)?;
    let before = serde_json::to_value(state.topics().policy().policy()).ok();
    let after = serde_json::to_value(&update.policy).ok();
    let compiled = match update.policy.clone().compile() {
        Ok(compiled) => compiled,
        Err(e) => {
            let message = format!("policy: {e}");
            audit(
                &state,
                &actor,
                "policy.update",
                SETTING,
                Err(&message),
                before,
                after,
            )
            .await;
            return Err(ApiError::new(ProblemKind::InvalidRequest, message));
        }
    };
    let value = serde_json::to_string(&update.policy)
        .map_err(|e| ApiError::new(ProblemKind::Internal, e.to_string()))?;
    let entry = AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: actor.0.clone(),
        action: "policy.update".into(),
        target: SETTING.into(),
        outcome: "ok".into(),
        before,
        after,
    };
    let current = state.policy_version();
    if update.version != current {
        return Err(conflict(current, update.version));
    }
    let version = store
        .save_setting(SETTING, &value, current, &entry)
        .await
        .map_err(store_error)?
        .ok_or_else(|| conflict(current + 1, update.version))?;
    state.topics().set_policy(compiled);
    state.set_policy_version(version);
    tracing::info!(version, actor = %actor.0, "topic policy changed");
    Ok(Json(PolicySaved {
        version,
        policy: update.policy,
    }))
}

fn conflict(current: i64, edited: i64) -> ApiError {
    ApiError::new(
        ProblemKind::Conflict,
        format!(
            "the policy changed since it was read (version {edited}, now {current} or later): \
             reload it and apply the edit again"
        ),
    )
}

/// Body of `POST /admin/api/policy/preview`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewRequest {
    /// A sample CloudEvent, as it would be published: checked like one (422 when it is not
    /// a valid event), hence any object here.
    #[schema(value_type = Object)]
    event: serde_json::Value,
    /// A policy to try instead of the one in force.
    #[serde(default)]
    policy: Option<TopicPolicy>,
}

/// What the policy does with a sample event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct PreviewAnswer {
    /// The topic, the template and the verdict.
    preview: Preview,
    /// The template a new topic would be created from, whole; null when none matches.
    #[schema(required = true)]
    template: Option<TopicTemplate>,
}

/// `POST /admin/api/policy/preview`: the topic a sample event gets, the template it would be
/// created from, and whether the policy lets its service publish there.
#[utoipa::path(post, path = "/admin/api/policy/preview", operation_id = "preview_policy", tag = "admin", summary = "The topic, template and verdict a sample event gets", request_body(content = PreviewRequest, content_type = "application/json"), responses((status = 200, description = "The topic, template and verdict a sample event gets", body = PreviewAnswer)), security(("admin_token" = [])))]
pub(super) async fn preview(
    State(state): State<AppState>,
    Body(request): Body<PreviewRequest>,
) -> Result<Json<PreviewAnswer>, ApiError> {
    let policy = match request.policy {
        Some(p) => std::sync::Arc::new(
            p.compile()
                .map_err(|e| ApiError::new(ProblemKind::InvalidRequest, format!("policy: {e}")))?,
        ),
        None => state.topics().policy(),
    };
    let event = Event::from_json(request.event.to_string().as_bytes())
        .map_err(|e| ApiError::new(ProblemKind::InvalidEvent, e.to_string()))?;
    let preview = policy
        .preview(&event)
        .map_err(|e| ApiError::new(ProblemKind::InvalidTopic, e.to_string()))?;
    let template = policy.template_for(&preview.topic).ok().cloned();
    Ok(Json(PreviewAnswer { preview, template }))
}
