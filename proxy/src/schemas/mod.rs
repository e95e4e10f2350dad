//! JSON Schemas per event type: the registry the intake consults for every event. Schemas
//! are registered per (service, type) in versions through the admin API and kept in the
//! store; each version is compiled once, and the compiled validators live in a snapshot that
//! is swapped whole when anything changes — here at once, on other proxies sharing the store
//! within [`FOLLOW_INTERVAL`]. An event whose (service, type) has no schema costs one
//! emptiness check (no schema at all) or one map lookup.
//!
//! A checked event either passes — its record's `dataschema` names the version used — or is
//! invalid: 422 `schema-violation`, or, when its service's policy says so, routed to the
//! service's error topic (`errortype` [`ERRORTYPE`]) with the errors in the [`EXTENSION`]
//! attribute, so nothing a service sent vanishes.

mod compiled;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use courier_shared::{Category, Event, ExtensionValue, ProblemKind};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use compiled::{Compiled, MAX_SCHEMA_BYTES, URI_PREFIX, accept, parse_uri, uri, uri_base};

use crate::error::ApiError;
use crate::store::{SCHEMAS_SETTING, SchemaBounds, Store, StoreError};

/// Most live versions of one (service, type).
pub const MAX_VERSIONS: i64 = 100;
/// Most (service, type) pairs with schemas.
pub const MAX_TYPES: i64 = 1_000;
/// Most services the schema policy names.
pub const MAX_POLICY_SERVICES: usize = 1_000;
/// The bounds a registration keeps.
pub const BOUNDS: SchemaBounds = SchemaBounds {
    max_versions: MAX_VERSIONS,
    max_types: MAX_TYPES,
};
/// How often a proxy looks for schema changes made through another proxy.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);
/// The `errortype` of an invalid event sent to its service's error topic.
pub const ERRORTYPE: &str = "schema-violation";
/// The extension attribute (Kafka header `ce_schemaviolation`) holding why it is invalid.
pub const EXTENSION: &str = "schemaviolation";

/// What happens to an event whose data does not match its schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnInvalid {
    /// Refused: 422 `schema-violation` (per event in a batch).
    #[default]
    Reject,
    /// Accepted onto the service's error topic, `errortype` `schema-violation`, with the
    /// errors in the `schemaviolation` extension attribute.
    ErrorTopic,
}

/// The per-service policy for invalid events (the value of the `schemas` settings row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaPolicy {
    /// By service; a service not named here gets `reject`.
    pub on_invalid: BTreeMap<String, OnInvalid>,
}

impl SchemaPolicy {
    /// What happens to the invalid events of `service`.
    pub fn on_invalid(&self, service: &str) -> OnInvalid {
        self.on_invalid.get(service).copied().unwrap_or_default()
    }
}

/// What the check adds to a valid event, or to an invalid one its service sends to the error
/// topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Annotation {
    /// Valid against the latest version; the record names it in `dataschema`.
    DataSchema(String),
    /// Invalid, and the service's policy sends it to its error topic.
    Violation {
        /// The version it was checked against.
        dataschema: String,
        /// Why it does not match.
        error: String,
    },
}

impl Annotation {
    /// Writes the annotation into the event. True when the event now goes to its service's
    /// error topic (its `errortype` is the proxy's, not the caller's).
    pub fn apply(self, event: &mut Event) -> bool {
        match self {
            Self::DataSchema(uri) => {
                event.dataschema = Some(uri);
                false
            }
            Self::Violation { dataschema, error } => {
                event.dataschema.get_or_insert(dataschema);
                // What the service said the event was stays on the record.
                if event.category != Category::Event {
                    let original = ExtensionValue::String(event.category.as_str().to_owned());
                    event.extensions.insert("origcategory".into(), original);
                }
                if let Some(errortype) = event.errortype.take() {
                    let original = ExtensionValue::String(errortype);
                    event.extensions.insert("origerrortype".into(), original);
                }
                event.category = Category::Error;
                event.errortype = Some(ERRORTYPE.to_owned());
                event
                    .extensions
                    .insert(EXTENSION.into(), ExtensionValue::String(error));
                true
            }
        }
    }
}

/// The compiled schemas in force, swapped whole on a change.
#[derive(Debug, Default)]
struct Snapshot {
    /// The `schemas` settings version it reflects (-1: never loaded).
    generation: i64,
    /// Service → type → version → compiled schema.
    types: HashMap<String, HashMap<String, BTreeMap<i64, Arc<Compiled>>>>,
    policy: SchemaPolicy,
}

impl Snapshot {
    fn compiled(&self, service: &str, ty: &str, version: i64) -> Option<&Arc<Compiled>> {
        self.types.get(service)?.get(ty)?.get(&version)
    }
}

/// The schemas in force; cheap to consult from every request.
#[derive(Debug)]
pub struct SchemaRegistry {
    current: ArcSwap<Snapshot>,
    reloading: tokio::sync::Mutex<()>,
}

impl Default for SchemaRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl SchemaRegistry {
    /// No schema: every event passes as it is.
    pub fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot {
                generation: -1,
                ..Snapshot::default()
            }),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Checks `event` of `service` against the schema of its type, when one is registered.
    /// `Ok(None)`: nothing to add (no schema, or valid and naming its version already).
    /// `reroute` allows the error topic (not when the caller named the topic itself).
    pub fn check(
        &self,
        service: &str,
        event: &Event,
        reroute: bool,
    ) -> Result<Option<Annotation>, ApiError> {
        let snapshot = self.current.load();
        if snapshot.types.is_empty() {
            return Ok(None);
        }
        let Some(versions) = snapshot
            .types
            .get(service)
            .and_then(|types| types.get(&event.ty))
        else {
            return Ok(None);
        };
        let compiled = match &event.dataschema {
            Some(named) => select(service, &event.ty, named, versions)?,
            None => match versions.values().next_back() {
                Some(latest) => latest,
                None => return Ok(None),
            },
        };
        match compiled.check(event) {
            Ok(()) if event.dataschema.is_some() => Ok(None),
            Ok(()) => Ok(Some(Annotation::DataSchema(compiled.uri.clone()))),
            Err(error)
                if reroute && snapshot.policy.on_invalid(service) == OnInvalid::ErrorTopic =>
            {
                Ok(Some(Annotation::Violation {
                    dataschema: compiled.uri.clone(),
                    error,
                }))
            }
            Err(error) => Err(ApiError::new(
                ProblemKind::SchemaViolation,
                format!("data does not match {}: {error}", compiled.uri),
            )),
        }
    }

    /// The per-service policy in force.
    pub fn policy(&self) -> SchemaPolicy {
        self.current.load().policy.clone()
    }

    /// The `schemas` settings version in force (0: nothing ever saved).
    pub fn generation(&self) -> i64 {
        self.current.load().generation.max(0)
    }

    /// Loads what changed in the store since the last load: new versions are compiled (off
    /// the async workers), versions already compiled are kept, deleted ones dropped.
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        // The version first: a change landing after it is seen on the next load.
        let setting = store.setting(SCHEMAS_SETTING).await?;
        let generation = setting.as_ref().map_or(0, |s| s.version);
        let current = self.current.load_full();
        if generation == current.generation {
            return Ok(());
        }
        let policy = match setting.as_ref().map(|s| serde_json::from_str(&s.value)) {
            None => SchemaPolicy::default(),
            Some(Ok(policy)) => policy,
            Some(Err(e)) => {
                tracing::error!(error = %e, "the saved schema policy is not valid; keeping the current one");
                current.policy.clone()
            }
        };
        let mut types: HashMap<String, HashMap<String, BTreeMap<i64, Arc<Compiled>>>> =
            HashMap::new();
        let mut missing: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for key in store.schema_keys().await? {
            match current.compiled(&key.service, &key.event_type, key.version) {
                Some(compiled) => {
                    types
                        .entry(key.service)
                        .or_default()
                        .entry(key.event_type)
                        .or_default()
                        .insert(key.version, compiled.clone());
                }
                None => missing
                    .entry((key.service, key.event_type))
                    .or_default()
                    .push(key.version),
            }
        }
        let mut sources = Vec::new();
        for ((service, ty), versions) in missing {
            for v in store.schema_versions(&service, &ty, None).await? {
                if versions.contains(&v.version) {
                    sources.push(v);
                }
            }
        }
        let compiled = tokio::task::spawn_blocking(move || {
            sources
                .into_iter()
                .map(|v| {
                    let c = Compiled::new(&v.service, &v.event_type, v.version, &v.schema);
                    (v.service, v.event_type, c)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Database(format!("compiling schemas: {e}")))?;
        for (service, ty, c) in compiled {
            types
                .entry(service)
                .or_default()
                .entry(ty)
                .or_default()
                .insert(c.version, Arc::new(c));
        }
        let count: usize = types
            .values()
            .flat_map(HashMap::values)
            .map(BTreeMap::len)
            .sum();
        self.current.store(Arc::new(Snapshot {
            generation,
            types,
            policy,
        }));
        if current.generation >= 0 {
            tracing::info!(generation, versions = count, "schemas changed");
        }
        Ok(())
    }

    /// Reloads whenever another proxy changed the schemas, until `shutdown`.
    pub async fn follow(self: Arc<Self>, store: Store, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FOLLOW_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reload(&store).await {
                tracing::warn!(error = %e, "could not reload the schemas; keeping the last ones");
            }
        }
    }
}

/// The version an event's `dataschema` names, among its (service, type)'s.
fn select<'a>(
    service: &str,
    ty: &str,
    named: &str,
    versions: &'a BTreeMap<i64, Arc<Compiled>>,
) -> Result<&'a Arc<Compiled>, ApiError> {
    let unknown = |why: String| {
        let known: Vec<String> = versions.keys().map(i64::to_string).collect();
        ApiError::new(
            ProblemKind::UnknownSchema,
            format!(
                "dataschema `{named}` {why}; type `{ty}` of service `{service}` has versions {} \
                 ({}/<version>)",
                known.join(", "),
                uri_base(service, ty)
            ),
        )
    };
    match parse_uri(named) {
        Some((s, t, v)) if s == service && t == ty => versions
            .get(&v)
            .ok_or_else(|| unknown(format!("names version {v}, which is not registered"))),
        Some(_) => Err(unknown("names another service or type".into())),
        None => Err(unknown(format!(
            "is not of the form {URI_PREFIX}<service>/<type>/<version>"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(ty: &str, dataschema: Option<&str>, data: &str) -> Event {
        let ds = dataschema.map_or(String::new(), |d| format!(r#","dataschema":"{d}""#));
        Event::from_json(
            format!(r#"{{"specversion":"1.0","id":"1","source":"/billing","type":"{ty}"{ds},"data":{data}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn registry(policy: SchemaPolicy) -> SchemaRegistry {
        let v1 = json!({"type": "object", "required": ["amount"]}).to_string();
        let v2 = json!({"type": "object", "required": ["amount", "currency"]}).to_string();
        let mut versions = BTreeMap::new();
        versions.insert(1, Arc::new(Compiled::new("billing", "order", 1, &v1)));
        versions.insert(2, Arc::new(Compiled::new("billing", "order", 2, &v2)));
        let mut types = HashMap::new();
        types.insert(
            "billing".to_owned(),
            HashMap::from([("order".to_owned(), versions)]),
        );
        let r = SchemaRegistry::new();
        r.current.store(Arc::new(Snapshot {
            generation: 1,
            types,
            policy,
        }));
        r
    }

    #[test]
    fn no_schema_no_change() {
        let empty = SchemaRegistry::new();
        assert_eq!(
            empty
                .check("billing", &event("order", None, "1"), true)
                .unwrap(),
            None
        );
        let r = registry(SchemaPolicy::default());
        assert_eq!(
            r.check("billing", &event("other", None, "1"), true)
                .unwrap(),
            None
        );
        assert_eq!(
            r.check("shipping", &event("order", None, "1"), true)
                .unwrap(),
            None
        );
    }

    #[test]
    fn the_latest_version_checks_events_without_dataschema_and_is_named() {
        let r = registry(SchemaPolicy::default());
        let valid = event("order", None, r#"{"amount":1,"currency":"EUR"}"#);
        let a = r.check("billing", &valid, true).unwrap().unwrap();
        assert_eq!(
            a,
            Annotation::DataSchema("courier:schema/billing/order/2".into())
        );
        let mut e = valid.clone();
        assert!(!a.apply(&mut e));
        assert_eq!(
            e.dataschema.as_deref(),
            Some("courier:schema/billing/order/2")
        );
        let err = r
            .check("billing", &event("order", None, r#"{"amount":1}"#), true)
            .unwrap_err();
        assert_eq!(err.kind, ProblemKind::SchemaViolation);
        assert!(
            err.detail.contains("courier:schema/billing/order/2")
                && err.detail.contains("currency"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn dataschema_selects_the_version() {
        let r = registry(SchemaPolicy::default());
        let v1 = event(
            "order",
            Some("courier:schema/billing/order/1"),
            r#"{"amount":1}"#,
        );
        assert_eq!(
            r.check("billing", &v1, true).unwrap(),
            None,
            "valid against v1, named already"
        );
        for named in [
            "courier:schema/billing/order/3",
            "courier:schema/billing/other/1",
            "https://example.com/order.json",
        ] {
            let err = r
                .check(
                    "billing",
                    &event("order", Some(named), r#"{"amount":1}"#),
                    true,
                )
                .unwrap_err();
            assert_eq!(err.kind, ProblemKind::UnknownSchema, "{named}");
            assert!(err.detail.contains("1, 2"), "{}", err.detail);
        }
    }

    #[test]
    fn the_error_topic_policy_reroutes_invalid_events_with_the_error() {
        let policy = SchemaPolicy {
            on_invalid: BTreeMap::from([("billing".to_owned(), OnInvalid::ErrorTopic)]),
        };
        let r = registry(policy);
        let mut invalid = event("order", None, r#"{"currency":"EUR"}"#);
        let a = r.check("billing", &invalid, true).unwrap().unwrap();
        assert!(a.clone().apply(&mut invalid));
        assert_eq!(invalid.category, Category::Error);
        assert_eq!(invalid.errortype.as_deref(), Some(ERRORTYPE));
        assert_eq!(
            invalid.dataschema.as_deref(),
            Some("courier:schema/billing/order/2")
        );
        let ExtensionValue::String(error) = &invalid.extensions[EXTENSION] else {
            panic!("a string")
        };
        assert!(error.contains("amount"), "{error}");
        // Not when the caller named the topic: it is refused instead.
        let invalid = event("order", None, r#"{"currency":"EUR"}"#);
        assert_eq!(
            r.check("billing", &invalid, false).unwrap_err().kind,
            ProblemKind::SchemaViolation
        );
    }
}
