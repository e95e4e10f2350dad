//! The topic policy at runtime: where it comes from at startup, and how proxies sharing a
//! store follow a change saved through the admin API ([`crate::admin::policy`]).
//!
//! The configuration file gives the first policy. Once an operator saves one through the
//! admin API it lives in the store (`settings`, with a version), and wins over the file on
//! the next start; every proxy on the store polls the version and switches within
//! [`FOLLOW_INTERVAL`].

use std::time::Duration;

use courier_shared::policy::{CompiledPolicy, TopicPolicy};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// Why the policy to start with could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration file's policy is not valid.
    #[error("topic policy: {0}")]
    Invalid(#[from] courier_shared::PolicyError),
}

/// The settings row the policy is saved under.
pub const SETTING: &str = "topic_policy";
/// How often a proxy looks for a policy saved by another proxy.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

/// The policy to start with, and its version (0: the configuration file's).
pub async fn initial(
    config: &Config,
    store: Option<&Store>,
) -> Result<(CompiledPolicy, i64), PolicyError> {
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
    let Some(store) = state.store().cloned() else {
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
