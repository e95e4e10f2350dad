//! The admin API under `/admin/api`, behind its own bearer token (`admin.token`), and the
//! admin page at `/admin` that drives it. Without a configured token the admin API refuses
//! every request.
//!
//! - topics: list with health and offsets, detail with partitions, configs and consumer-group
//!   lag, create (from a template or custom), alter configs, delete with a confirmation token;
//! - the topic policy: read, update (persisted, in force at once on every proxy sharing the
//!   store), preview of the topic a sample event gets;
//! - the store's events: list and filter, inspect, replay, discard with a reason;
//! - the publish endpoints' API keys: create (the key is shown once), list, rotate, revoke;
//! - JSON Schemas per event type: register versions, list, inspect, delete, and the
//!   per-service policy for invalid events (422 or the error topic);
//! - live stats and the audit log of every admin action (who, what, when, before/after).
//!
//! Who acted is the `X-Courier-Actor` header (the page asks the operator for a name), or
//! `admin`; there is one admin credential, so the name is a label the operator gives, not an
//! identity the proxy verifies.

pub mod dlq;
pub mod keys;
pub mod page;
pub mod policy;
pub mod schemas;
pub mod topics;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use courier_shared::ProblemKind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;
use crate::stats::Sample;
use crate::store::{AuditEntry, Store, StoreError};

/// Most entries one list request returns.
pub(crate) const MAX_PAGE: i64 = 1_000;

/// The admin API's routes (merged into the main router, and into its OpenAPI document),
/// behind the admin token. The page's routes are apart: [`page::router`].
pub fn router(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dlq::list))
        .routes(routes!(dlq::counts))
        .routes(routes!(dlq::replay))
        .routes(routes!(dlq::discard))
        .routes(routes!(dlq::inspect))
        .routes(routes!(topics::list, topics::create))
        .routes(routes!(topics::detail, topics::delete))
        .routes(routes!(topics::alter))
        .routes(routes!(topics::delete_token))
        .routes(routes!(policy::get, policy::put))
        .routes(routes!(policy::preview))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::rotate))
        .routes(routes!(keys::revoke))
        .routes(routes!(schemas::list))
        .routes(routes!(
            schemas::versions,
            schemas::register,
            schemas::delete
        ))
        .routes(routes!(schemas::version))
        .routes(routes!(schemas::put_policy))
        .routes(routes!(stats))
        .routes(routes!(audit_log))
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.admin_token() else {
        return ApiError::new(
            ProblemKind::Forbidden,
            "the admin API is disabled: set admin.token",
        )
        .into_response();
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        // API keys are not admin credentials: only the admin token opens the admin API.
        crate::auth::unauthorized(
            "courier-admin",
            !given.is_empty(),
            "the admin API needs `Authorization: Bearer <admin.token>`",
        )
    }
}

/// Who performs an admin action: the `X-Courier-Actor` header, or `admin`.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let name: String = parts
            .headers
            .get("x-courier-actor")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        let name = name.trim();
        Ok(Self(if name.is_empty() {
            "admin".to_owned()
        } else {
            name.to_owned()
        }))
    }
}

/// A JSON object body whose rejection is a problem+json 400, like every other admin error.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let invalid = |detail: String| ApiError::new(ProblemKind::InvalidRequest, detail);
        // Raw, so numbers keep their text (see `json_object`).
        let Json(raw) = Json::<Box<serde_json::value::RawValue>>::from_request(req, state)
            .await
            .map_err(|rejection| invalid(rejection.body_text()))?;
        json_object(raw.get()).map(Self).map_err(invalid)
    }
}

/// A request body as its type, from JSON text that must be an object: serde would take a
/// struct from an array of its fields' values too, which the document does not allow. A
/// number with an integral value written with a fraction or an exponent (`3.0`, `1e3`) is an
/// integer, as in JSON Schema; it is rewritten from its text, so no precision is lost.
pub(crate) fn json_object<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    if !json.trim_start().starts_with('{') {
        return Err("the body must be a JSON object".into());
    }
    let json = integral_numbers_as_integers(json);
    Json::<T>::from_bytes(json.as_bytes())
        .map(|Json(v)| v)
        .map_err(|rejection| rejection.body_text())
}

/// Rewrites each number of (valid) JSON text whose value is an integer of at most 20 digits
/// (`4.0`, `-2.50e1`, `1E3`) as that integer; leaves every other character as it is.
fn integral_numbers_as_integers(json: &str) -> std::borrow::Cow<'_, str> {
    let bytes = json.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let (mut i, mut copied, mut in_string, mut changed) = (0, 0, false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b != b'-' && !b.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A number: -?int(.frac)?([eE][+-]?exp)?
        let start = i;
        let negative = b == b'-';
        i += usize::from(negative);
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int = &json[int_start..i];
        let mut frac = "";
        if i < bytes.len() && bytes[i] == b'.' {
            let frac_start = i + 1;
            i = frac_start;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac = &json[frac_start..i];
        }
        let mut exp: i64 = 0;
        let mut has_exp = false;
        if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
            has_exp = true;
            let exp_start = i + 1;
            i = exp_start;
            if i < bytes.len() && matches!(bytes[i], b'+' | b'-') {
                i += 1;
            }
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            exp = json[exp_start..i].parse().unwrap_or(i64::MAX);
        }
        if frac.is_empty() && !has_exp {
            continue;
        }
        // The value is digits × 10^scale.
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let significant = digits.trim_end_matches('0');
        let scale = exp
            .saturating_sub(i64::try_from(frac.len()).unwrap_or(i64::MAX))
            .saturating_add(i64::try_from(digits.len() - significant.len()).unwrap_or(0));
        let integer = if significant.is_empty() {
            Some("0".to_owned())
        } else {
            usize::try_from(scale)
                .ok()
                .filter(|zeros| significant.len() + zeros <= 20)
                .map(|zeros| format!("{significant}{}", "0".repeat(zeros)))
        };
        if let Some(integer) = integer {
            out.push_str(&json[copied..start]);
            if negative && integer != "0" {
                out.push('-');
            }
            out.push_str(&integer);
            copied = i;
            changed = true;
        }
    }
    if !changed {
        return std::borrow::Cow::Borrowed(json);
    }
    out.push_str(&json[copied..]);
    std::borrow::Cow::Owned(out)
}

/// Deserializes an optional struct field from a JSON object only (not from an array of its
/// fields' values, which serde takes too).
pub(crate) fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error as _;
    match Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(map) => serde_json::from_value(serde_json::Value::Object(map))
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// A query string whose rejection is a problem+json 400.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::new(
                ProblemKind::InvalidRequest,
                rejection.body_text(),
            )),
        }
    }
}

pub(crate) fn store(state: &AppState) -> Result<&Store, ApiError> {
    state
        .store()
        .ok_or_else(|| ApiError::new(ProblemKind::NotFound, "the store is disabled"))
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    ApiError::new(ProblemKind::StoreUnavailable, e.to_string()).retry_after(1)
}

/// Writes an audit entry. An action already done is not undone when the audit write fails;
/// the failure is logged with the whole entry, so the log still has it.
pub(crate) async fn audit(
    state: &AppState,
    actor: &Actor,
    action: &str,
    target: &str,
    outcome: Result<(), &str>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let entry = AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: actor.0.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: outcome.err().unwrap_or("ok").to_owned(),
        before,
        after,
    };
    tracing::info!(actor = %entry.actor, action, target, outcome = %entry.outcome, "admin action");
    if let Some(store) = state.store()
        && let Err(e) = store.audit(&entry).await
    {
        tracing::error!(error = %e, ?entry, "could not write the audit log");
    }
}

/// What the proxy is doing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Stats {
    /// The counters now.
    now: Sample,
    /// The counters once a second, the last five minutes, oldest first.
    history: Vec<Sample>,
    /// Events taken in and not yet answered.
    queue_depth: usize,
    /// The store's events: 0 and 0 without a store, -1 and -1 when it could not be read.
    dlq: dlq::Counts,
    /// The version of the topic policy in force.
    policy_version: i64,
}

/// `GET /admin/api/stats`: counters, the last five minutes of samples, queue depth, stored
/// and parked events.
#[utoipa::path(get, path = "/admin/api/stats", operation_id = "admin_stats", tag = "admin",
    summary = "Counters, the last five minutes per second, queue depth, DLQ counts",
    responses((status = 200, description = "Stats", body = Stats)),
    security(("admin_token" = [])))]
async fn stats(State(state): State<AppState>) -> Json<Stats> {
    let stats = state.pipeline().stats();
    let (pending, parked) = match state.store() {
        Some(store) => store.counts().await.unwrap_or((-1, -1)),
        None => (0, 0),
    };
    Json(Stats {
        now: stats.snapshot(),
        history: stats.history(),
        queue_depth: state.pipeline().queue_depth(),
        dlq: dlq::Counts { pending, parked },
        policy_version: state.policy_version(),
    })
}

/// Query of `GET /admin/api/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    before: i64,
    action: Option<String>,
    limit: Option<i64>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AuditPage {
    /// The entries, newest first.
    entries: Vec<AuditEntry>,
    /// The next page's `before`; null on the last page.
    #[schema(required = true)]
    next_before: Option<i64>,
}

/// `GET /admin/api/audit`: newest first; page with `before` = the last `seq` seen.
#[utoipa::path(get, path = "/admin/api/audit", operation_id = "audit_log", tag = "admin",
    summary = "The audit log, newest first",
    params(
        ("before" = Option<i64>, Query, description = "Entries before this sequence number"),
        ("action" = Option<String>, Query, description = "Only actions starting with this"),
        ("limit" = Option<i64>, Query, description = "At most this many (1 to 1000)"),
    ),
    responses((status = 200, description = "Entries and the next page's `before`", body = AuditPage)),
    security(("admin_token" = [])))]
async fn audit_log(
    State(state): State<AppState>,
    Params(q): Params<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let entries = store(&state)?
        .audit_log(q.before, q.action.as_deref(), limit)
        .await
        .map_err(store_error)?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        n: i64,
        #[serde(default)]
        seqs: Vec<i64>,
        #[serde(default)]
        text: String,
    }

    #[test]
    fn integral_numbers_are_integers_whatever_their_notation() {
        // Found by schemathesis: `283.0` is an integer in JSON Schema, and serde refused it;
        // `4272245853099774.0` through f64 came back as `…774.5`.
        for (json, n) in [
            (r#"{"n": 283.0}"#, 283),
            (r#"{"n": 4272245853099774.0}"#, 4_272_245_853_099_774),
            (r#"{"n": 9223372036854775807.000}"#, i64::MAX),
            (r#"{"n": -2.50e1}"#, -25),
            (r#"{"n": 1E3}"#, 1_000),
            (r#"{"n": 100.0}"#, 100),
            (r#"{"n": -0.0}"#, 0),
        ] {
            assert_eq!(json_object::<Sample>(json).unwrap().n, n, "{json}");
        }
        let sample: Sample =
            json_object(r#"{"n": 1.0, "seqs": [2.0, 3], "text": "4.0 \" 5.0"}"#).unwrap();
        assert_eq!(sample.seqs, [2, 3]);
        assert_eq!(sample.text, r#"4.0 " 5.0"#, "strings are left as they are");
        for json in [r#"{"n": 0.5}"#, r#"{"n": 1e-3}"#, r#"{"n": 1e400}"#] {
            assert!(json_object::<Sample>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn a_body_is_an_object_not_an_array_of_field_values() {
        // Found by schemathesis: serde takes a struct from an array of its fields' values.
        let err = json_object::<Sample>("[1, [], \"x\"]").unwrap_err();
        assert!(err.contains("object"), "{err}");
        assert_eq!(
            json_object::<Sample>(r#" {"n": 1}"#).unwrap(),
            Sample {
                n: 1,
                seqs: vec![],
                text: String::new()
            }
        );
    }

    #[test]
    fn optional_objects_refuse_arrays() {
        #[derive(Debug, Deserialize)]
        struct Outer {
            #[serde(default, deserialize_with = "optional_object")]
            inner: Option<Sample>,
        }
        let outer: Outer = serde_json::from_str(r#"{"inner": {"n": 1}}"#).unwrap();
        assert_eq!(outer.inner.unwrap().n, 1);
        let outer: Outer = serde_json::from_str(r#"{"inner": null}"#).unwrap();
        assert!(outer.inner.is_none());
        assert!(serde_json::from_str::<Outer>(r#"{"inner": [1]}"#).is_err());
    }

    /// Arbitrary JSON: numbers of every notation, strings full of digits, quotes and escapes.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (any::<i32>(), 1u8..4)
                .prop_map(|(n, zeros)| format!("{n}.{}", "0".repeat(zeros.into()))),
            (any::<i16>(), -6i8..6).prop_map(|(n, e)| format!("{n}e{e}")),
            (-1e6f64..1e6).prop_map(|f| format!("{f}")),
            (any::<i32>(), 1u32..99).prop_map(|(n, frac)| format!("{n}.{frac}E+2")),
        ];
        let string = "[0-9.eE\\\"a-z -]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap());
        let leaf = prop_oneof![
            number,
            string,
            Just("null".to_owned()),
            Just("true".to_owned())
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                proptest::collection::vec(("[a-z0-9.]{0,4}", inner), 0..4).prop_map(|v| {
                    let fields: Vec<String> = v
                        .into_iter()
                        .map(|(k, v)| format!("{}: {v}", serde_json::to_string(&k).unwrap()))
                        .collect();
                    format!("{{{}}}", fields.join(", "))
                }),
            ]
        })
    }

    /// The same JSON value, numbers compared by value.
    fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) => x.as_f64() == y.as_f64(),
            (V::Array(x), V::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (V::Object(x), V::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }

    proptest::proptest! {
        /// The rewrite keeps valid JSON valid, every string as it was and every number's value,
        /// and a second rewrite changes nothing.
        #[test]
        fn rewriting_integral_numbers_changes_only_their_notation(json in json_text()) {
            let before: serde_json::Value =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("generated {json}: {e}"));
            let rewritten = integral_numbers_as_integers(&json);
            let after: serde_json::Value = serde_json::from_str(&rewritten)
                .unwrap_or_else(|e| panic!("{json} → {rewritten}: {e}"));
            proptest::prop_assert!(same(&before, &after), "{} → {}", json, rewritten);
            let again = integral_numbers_as_integers(&rewritten);
            proptest::prop_assert_eq!(again.as_ref(), rewritten.as_ref(), "idempotent");
        }
    }
}
