//! The admin API's topic policy endpoints: read the policy in force, save a new one (persisted
//! with a version, in force at once here and within [`crate::policy::FOLLOW_INTERVAL`] on
//! every proxy sharing the store), and preview the topic a sample event gets. Saving names the
//! version it edits, so two operators editing at once cannot overwrite each other unseen
//! (409). Where the policy comes from at startup and how proxies follow each other:
//! [`crate::policy`].

use axum::Json;
use axum::extract::State;
use courier_shared::policy::{Preview, TopicPolicy, TopicTemplate};
use courier_shared::{Event, ProblemKind};
use serde::{Deserialize, Serialize};

use super::{Actor, Body, audit, store, store_error};
use crate::error::ApiError;
use crate::policy::SETTING;
use crate::state::AppState;
use crate::store::AuditEntry;

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
        persisted: state.store().is_some(),
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
