//! Authentication of the publish endpoints: per-service API keys.
//!
//! A key is `ck_` and 32 random bytes in base64url (256 bits). Only its SHA-256 is kept — in
//! the store's database for keys made through the admin API, or in the configuration file
//! (`[[auth.keys]]`). A fast hash is the right one here, as for GitHub's tokens: with 256
//! random bits there is nothing to brute-force, and a slow KDF (bcrypt, Argon2) would cost
//! every request milliseconds of CPU. A request's key is hashed and looked up in an in-memory
//! snapshot ([`KeyRing`]); the snapshot is reloaded from the store every [`REFRESH_INTERVAL`]
//! (changes made through another proxy sharing the store arrive within it) and at once after
//! a change made through this proxy, so a revocation takes effect here immediately.
//!
//! The key names the service: every event must come from that service (its `source`), and
//! the topic policy's ownership and ACL checks use it. The admin token is never a publish key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine as _;
use courier_shared::{Problem, ProblemKind};
use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;

use crate::config::AuthConfig;
use crate::error::problem_response;
pub use crate::secret::{KeyHash, hash, hex, parse_hash};
use crate::store::now_ms;
use crate::store::{Store, StoreError};

/// Every key starts with this, so a leaked one is easy to recognise (and to scan for).
pub const KEY_PREFIX: &str = "ck_";
/// How often the keys are reloaded from the store.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// The header that may carry a key instead of `Authorization: Bearer`.
pub const KEY_HEADER: &str = "x-courier-key";

/// A new random key.
pub fn generate() -> String {
    let secret: [u8; 32] = rand::rng().random();
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

/// The last four characters of a key, to tell keys apart in lists.
pub fn last4(key: &str) -> String {
    key.chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// Who a request speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The service named by its key.
    pub service: String,
    /// The key's id (`config-N` for keys of the configuration file).
    pub key_id: String,
}

#[derive(Debug, Clone)]
struct Known {
    identity: Arc<Identity>,
    /// A previous secret in its grace period: accepted until then (ms since the epoch).
    until_ms: Option<i64>,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key was sent.
    #[error("publishing needs an API key: `Authorization: Bearer <key>` or `X-Courier-Key: <key>`")]
    Missing,
    /// `Authorization` and `X-Courier-Key` carry different keys.
    #[error("`Authorization` and `X-Courier-Key` carry different keys")]
    Conflicting,
    /// The admin token was sent as a publish key.
    #[error("the admin token is not an API key; publish with the service's key")]
    AdminToken,
    /// The key is unknown, revoked, or a rotated-out secret past its grace period.
    #[error("the API key is not valid (unknown, revoked or rotated)")]
    Invalid,
}

impl AuthError {
    /// The 401 answer, with `WWW-Authenticate`.
    pub fn response(self) -> Response {
        unauthorized("courier", self != Self::Missing, &self.to_string())
    }
}

/// A 401 problem+json answer with `WWW-Authenticate: Bearer realm=…` (and
/// `error="invalid_token"` when a credential was sent, as RFC 6750 has it).
pub fn unauthorized(realm: &str, invalid: bool, detail: &str) -> Response {
    let mut response = problem_response(&Problem::new(ProblemKind::Unauthorized, detail), None);
    let challenge = if invalid {
        format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")
    } else {
        format!("Bearer realm=\"{realm}\"")
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The key a request carries: `Authorization: Bearer <key>` or `X-Courier-Key: <key>` (both
/// at once only if they agree).
pub fn credential(headers: &HeaderMap) -> Result<&str, AuthError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let header_key = headers
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match (bearer, header_key) {
        (Some(a), Some(b)) if a != b => Err(AuthError::Conflicting),
        (Some(k), _) | (None, Some(k)) if !k.is_empty() => Ok(k),
        _ => Err(AuthError::Missing),
    }
}

/// The keys in force: those of the configuration file and those of the store.
#[derive(Debug)]
pub struct KeyRing {
    enabled: bool,
    configured: HashMap<KeyHash, Known>,
    admin_token: Option<String>,
    current: ArcSwap<HashMap<KeyHash, Known>>,
    /// One reload at a time, so a reload that read the table before a change cannot
    /// overwrite the snapshot of one that read it after.
    reloading: tokio::sync::Mutex<()>,
}

impl KeyRing {
    /// The keys of the configuration; the store's are added by [`KeyRing::reload`].
    pub fn new(config: &AuthConfig, admin_token: Option<String>) -> Self {
        let configured: HashMap<KeyHash, Known> = config
            .keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| {
                let identity = Arc::new(Identity {
                    service: k.service.clone(),
                    key_id: format!("config-{i}"),
                });
                Some((
                    parse_hash(&k.sha256)?,
                    Known {
                        identity,
                        until_ms: None,
                    },
                ))
            })
            .collect();
        Self {
            enabled: config.enabled,
            current: ArcSwap::from_pointee(configured.clone()),
            configured,
            admin_token,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether publishing needs a key.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Keys in force (current secrets and previous ones in their grace period).
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// True when no key is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Who the request speaks for: `Ok(None)` when authentication is off.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Arc<Identity>>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let key = credential(headers)?;
        if self
            .admin_token
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(key.as_bytes())))
        {
            return Err(AuthError::AdminToken);
        }
        // Looking up a SHA-256 leaks nothing useful through timing: an attacker controls the
        // key, not its hash.
        let snapshot = self.current.load();
        match snapshot.get(&hash(key)) {
            Some(known) if known.until_ms.is_none_or(|until| now_ms() < until) => {
                Ok(Some(known.identity.clone()))
            }
            _ => Err(AuthError::Invalid),
        }
    }

    /// Replaces the snapshot with the configuration's keys and the store's keys that are not
    /// revoked.
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let rows = store.api_keys(false).await?;
        let now = now_ms();
        let mut keys = self.configured.clone();
        for row in rows {
            let identity = Arc::new(Identity {
                service: row.service,
                key_id: row.id,
            });
            if let Some(h) = parse_hash(&row.key_hash) {
                keys.insert(
                    h,
                    Known {
                        identity: identity.clone(),
                        until_ms: None,
                    },
                );
            }
            if let (Some(previous), Some(until)) = (row.previous_hash, row.previous_until_ms)
                && until > now
                && let Some(h) = parse_hash(&previous)
            {
                keys.entry(h).or_insert(Known {
                    identity,
                    until_ms: Some(until),
                });
            }
        }
        self.current.store(Arc::new(keys));
        Ok(())
    }

    /// Drops every secret of key `id` from the snapshot: a revocation made here stays in
    /// force even when the reload after it failed.
    pub fn forget(&self, id: &str) {
        self.current.rcu(|keys| {
            let mut keys = HashMap::clone(keys);
            keys.retain(|_, k| k.identity.key_id != id);
            keys
        });
    }

    /// Reloads from `store` every [`REFRESH_INTERVAL`] until `shutdown`.
    pub async fn follow(self: Arc<Self>, store: Store, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(REFRESH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reload(&store).await {
                tracing::warn!(error = %e, "could not reload the API keys; keeping the last ones");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigKey;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        // 32 bytes in base64url without padding.
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_eq!(last4(&a), a[a.len() - 4..]);
        let h = hash(&a);
        assert_eq!(parse_hash(&hex(&h)), Some(h));
    }

    #[test]
    fn the_credential_comes_from_either_header() {
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer ck_a")])),
            Ok("ck_a")
        );
        assert_eq!(
            credential(&headers(&[("authorization", "bearer  ck_a ")])),
            Ok("ck_a")
        );
        assert_eq!(
            credential(&headers(&[("x-courier-key", "ck_b")])),
            Ok("ck_b")
        );
        assert_eq!(
            credential(&headers(&[
                ("authorization", "Bearer ck_a"),
                ("x-courier-key", "ck_a")
            ])),
            Ok("ck_a")
        );
        assert_eq!(
            credential(&headers(&[
                ("authorization", "Bearer ck_a"),
                ("x-courier-key", "ck_b")
            ])),
            Err(AuthError::Conflicting)
        );
        assert_eq!(
            credential(&headers(&[("authorization", "Basic eDp5")])),
            Err(AuthError::Missing)
        );
        assert_eq!(credential(&headers(&[])), Err(AuthError::Missing));
        assert_eq!(
            credential(&headers(&[("x-courier-key", " ")])),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn configured_keys_authenticate_and_the_admin_token_never_does() {
        let key = generate();
        let config = AuthConfig {
            enabled: true,
            keys: vec![ConfigKey {
                service: "billing".into(),
                sha256: hex(&hash(&key)),
                label: String::new(),
            }],
        };
        let ring = KeyRing::new(&config, Some("admin-secret".into()));
        let who = ring
            .authenticate(&headers(&[("authorization", &format!("Bearer {key}"))]))
            .unwrap()
            .unwrap();
        assert_eq!(who.service, "billing");
        assert_eq!(
            ring.authenticate(&headers(&[("x-courier-key", "ck_wrong")])),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            ring.authenticate(&headers(&[("authorization", "Bearer admin-secret")])),
            Err(AuthError::AdminToken)
        );
        ring.forget("config-0");
        assert_eq!(
            ring.authenticate(&headers(&[("x-courier-key", &key)])),
            Err(AuthError::Invalid)
        );
        let off = KeyRing::new(
            &AuthConfig {
                enabled: false,
                keys: vec![],
            },
            None,
        );
        assert_eq!(off.authenticate(&headers(&[])), Ok(None));
    }

    #[test]
    fn a_401_carries_its_challenge() {
        let r = AuthError::Missing.response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"courier\""
        );
        let r = AuthError::Invalid.response();
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
}
