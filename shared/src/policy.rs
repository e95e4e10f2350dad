//! The topic policy: which topic an event gets ([`NamingPolicy`]), who may publish to which
//! topic (ownership, ACL entries, allow and deny patterns) and how a topic is created on first use
//! (templates chosen by pattern).
//!
//! A [`TopicPolicy`] is plain data — what the configuration file and the admin API carry. It
//! is checked and compiled once into a [`CompiledPolicy`], whose decisions are what the proxy
//! consults per event. Patterns are globs over the whole topic name: `*` matches any run of
//! characters (dots included), `?` one character, `[a-z]` a class.

use std::collections::BTreeMap;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::envelope::Event;
use crate::topic::{
    NamingPolicy, TopicError, normalise_component, service_of, validate_topic_name,
};

/// Most templates and patterns a policy may hold.
pub const MAX_RULES: usize = 256;

/// Most topics one service may have created per interval (`creation.per_service`).
pub const MAX_CREATIONS: u32 = 100_000;

/// Longest pattern a policy may hold: a topic name's limit, with room for a few `[…]` classes.
pub const MAX_PATTERN_LEN: usize = 2 * crate::topic::MAX_TOPIC_LEN;

/// The topic policy as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TopicPolicy {
    /// Create topics the naming policy routes to on first publish.
    pub auto_create: bool,
    /// Templates that name a topic for an event.
    pub naming: NamingPolicy,
    /// A service may publish only to topics named `{service}.…`, besides the `shared` ones.
    pub ownership: bool,
    /// Topics any service may publish to, whatever `ownership` says.
    pub shared: Vec<String>,
    /// Topics a named service may publish to besides its own, whatever `ownership` says.
    pub acl: Vec<AclEntry>,
    /// When not empty, only topics matching one of these may be published to.
    pub allow: Vec<String>,
    /// Topics nobody may publish to (checked before `allow` and `shared`).
    pub deny: Vec<String>,
    /// How topics are created, the first template whose pattern matches wins.
    pub templates: Vec<TopicTemplate>,
    /// How many topics one service may have created on first publish: `errortype` is chosen
    /// by the caller, so without a bound any key holder could create topics without end.
    pub creation: CreationLimits,
    /// Which `errortype`s a service may send, by pattern over the normalised errortype (the
    /// topic component it becomes). The entry for the service applies, else the entry for
    /// `*`, else any errortype is allowed.
    pub errortypes: Vec<ErrortypeRule>,
}

/// Bounds on the topics a service's events create on first publish (per proxy instance; a
/// topic created by an operator or already in the cluster does not count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CreationLimits {
    /// Topics one service may have created per interval; 0 lets none be created on first
    /// publish.
    #[schema(minimum = 0, maximum = 100_000)] // MAX_CREATIONS
    pub per_service: u32,
    /// The interval, in seconds.
    #[schema(minimum = 1, maximum = 604_800)]
    pub interval_secs: u64,
}

impl Default for CreationLimits {
    fn default() -> Self {
        Self {
            per_service: 20,
            interval_secs: 3_600,
        }
    }
}

/// The errortypes one service (or every service, `*`) may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrortypeRule {
    /// The service, as the API key names it, or `*` for every service without an entry.
    pub service: String,
    /// Patterns of the allowed errortypes, normalised (`Payment Declined` is
    /// `payment-declined`).
    pub allow: Vec<String>,
}

impl Default for TopicPolicy {
    fn default() -> Self {
        Self {
            auto_create: true,
            naming: NamingPolicy::default(),
            ownership: true,
            shared: Vec::new(),
            acl: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            templates: vec![
                TopicTemplate {
                    name: "errors".into(),
                    pattern: "*.error.*".into(),
                    partitions: 3,
                    retention_ms: Some(14 * 24 * 3_600_000),
                    ..TopicTemplate::default()
                },
                TopicTemplate::default(),
            ],
            creation: CreationLimits::default(),
            errortypes: Vec::new(),
        }
    }
}

/// Topics one service may publish to beyond its own prefix and the shared patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    /// The service, as the API key names it (normalised like a `source`'s service).
    pub service: String,
    /// Patterns of the topics it may publish to.
    pub topics: Vec<String>,
}

/// How a topic whose name matches `pattern` is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TopicTemplate {
    /// Name shown to operators and used to pick the template when creating a topic by hand.
    pub name: String,
    /// Topics this template applies to.
    pub pattern: String,
    /// Partitions.
    #[schema(minimum = 1, maximum = 10_000)]
    pub partitions: i32,
    /// Replication factor; unset means the cluster's `default.replication.factor` (or, when
    /// it cannot be read, min(3, the most brokers seen)).
    #[schema(minimum = 1, maximum = 32_767)]
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas`, at most the replication factor; unset means 2 when the
    /// replication factor is ≥ 3, else 1.
    #[schema(minimum = 1)]
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms` (`-1`: keep for ever); unset means the broker's default.
    #[schema(minimum = -1)]
    pub retention_ms: Option<i64>,
    /// `compression.type`; unset means the broker's default (`producer`).
    #[schema(pattern = "^(uncompressed|producer|gzip|snappy|lz4|zstd)$")]
    pub compression_type: Option<String>,
    /// `cleanup.policy`: `delete`, `compact` or both; unset means the broker's default.
    #[schema(pattern = "^(delete|compact|compact,delete|delete,compact)$")]
    pub cleanup_policy: Option<String>,
    /// Any other topic config, e.g. `max.message.bytes`.
    pub configs: BTreeMap<String, String>,
}

impl Default for TopicTemplate {
    fn default() -> Self {
        Self {
            name: "default".into(),
            pattern: "*".into(),
            partitions: 6,
            replication_factor: None,
            min_insync_replicas: None,
            retention_ms: None,
            compression_type: None,
            cleanup_policy: None,
            configs: BTreeMap::new(),
        }
    }
}

/// Why a policy is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A naming template is wrong.
    #[error("naming: {0}")]
    Naming(#[from] TopicError),
    /// A pattern is not a glob.
    #[error("{field}: pattern `{pattern}`: {reason}")]
    Pattern {
        /// Which list it is in.
        field: &'static str,
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A template is wrong.
    #[error("template `{template}`: {reason}")]
    Template {
        /// The template's name.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// The policy as a whole does not hold together.
    #[error("{0}")]
    Inconsistent(String),
}

/// Why the policy refuses a service a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The topic matches a deny pattern.
    #[error("topic `{topic}` is denied by the policy (pattern `{pattern}`)")]
    Denied {
        /// The topic.
        topic: String,
        /// The deny pattern it matches.
        pattern: String,
    },
    /// An allow list exists and the topic is not on it.
    #[error("topic `{0}` matches none of the policy's allow patterns")]
    NotAllowed(String),
    /// The topic belongs to another service, and neither `shared` nor an ACL entry opens it.
    #[error(
        "service `{service}` may publish only to topics named `{service}.…`, the shared ones \
         and those its ACL entries name, not `{topic}`"
    )]
    NotOwner {
        /// The publishing service.
        service: String,
        /// The topic.
        topic: String,
    },
    /// The service may not send this errortype.
    #[error(
        "service `{service}` may not send errortype `{errortype}`: it matches none of the \
         policy's errortype patterns for the service"
    )]
    ErrortypeNotAllowed {
        /// The publishing service.
        service: String,
        /// The normalised errortype.
        errortype: String,
    },
    /// No template applies, so the topic cannot be created.
    #[error("no topic template matches `{0}`: add one (pattern `*` matches every topic)")]
    NoTemplate(String),
}

/// A checked policy, ready to decide.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    policy: TopicPolicy,
    shared: GlobSet,
    acl: BTreeMap<String, GlobSet>,
    allow: GlobSet,
    deny: GlobSet,
    templates: Vec<GlobMatcher>,
    errortypes: BTreeMap<String, GlobSet>,
}

/// What the policy does with one event: the admin page's preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// The publishing service, from `source`.
    pub service: String,
    /// The topic the event is routed to.
    pub topic: String,
    /// The template a new topic would be created from.
    #[schema(required = true)]
    pub template: Option<String>,
    /// Why the event would be refused, if it would.
    #[schema(required = true)]
    pub refusal: Option<String>,
}

const VALUE_CONFIGS: [&str; 4] = [
    "min.insync.replicas",
    "retention.ms",
    "compression.type",
    "cleanup.policy",
];
const COMPRESSION_TYPES: [&str; 6] = ["uncompressed", "producer", "gzip", "snappy", "lz4", "zstd"];
const CLEANUP_POLICIES: [&str; 4] = ["delete", "compact", "compact,delete", "delete,compact"];
/// Kafka refuses more partitions per topic than this in one request by default.
const MAX_PARTITIONS: i32 = 10_000;

fn glob(field: &'static str, pattern: &str) -> Result<Glob, PolicyError> {
    let bad = |reason: String| PolicyError::Pattern {
        field,
        pattern: pattern.to_owned(),
        reason,
    };
    if pattern.is_empty() {
        return Err(bad("empty".into()));
    }
    // A pattern matches topic names, which are at most 249 characters; a longer one could only
    // cost compile time (and a policy comes in through the admin API too).
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(bad(format!("longer than {MAX_PATTERN_LEN} characters")));
    }
    if !pattern.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'*' | b'?' | b'[' | b']')
    }) {
        return Err(bad(
            "only topic-name characters and the wildcards `*`, `?`, `[…]` are allowed".into(),
        ));
    }
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(false)
        .build()
        .map_err(|e| bad(e.kind().to_string()))
}

fn glob_set(field: &'static str, patterns: &[String]) -> Result<GlobSet, PolicyError> {
    if patterns.len() > MAX_RULES {
        return Err(PolicyError::Inconsistent(format!(
            "{field}: at most {MAX_RULES} patterns"
        )));
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(glob(field, p)?);
    }
    set.build().map_err(|e| PolicyError::Pattern {
        field,
        pattern: patterns.join(", "),
        reason: e.to_string(),
    })
}

impl TopicTemplate {
    fn validate(&self) -> Result<(), PolicyError> {
        let bad = |reason: String| PolicyError::Template {
            template: self.name.clone(),
            reason,
        };
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Err(bad("a name of 1 to 64 characters is required".into()));
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(bad(format!("partitions must be 1 to {MAX_PARTITIONS}")));
        }
        if let Some(rf) = self.replication_factor
            && !(1..=i32::from(i16::MAX)).contains(&rf)
        {
            return Err(bad("replication_factor must be ≥ 1".into()));
        }
        if let Some(min_isr) = self.min_insync_replicas {
            if min_isr < 1 {
                return Err(bad("min_insync_replicas must be ≥ 1".into()));
            }
            if let Some(rf) = self.replication_factor
                && min_isr > rf
            {
                return Err(bad(format!(
                    "min_insync_replicas ({min_isr}) above the replication factor ({rf}) \
                     would refuse every write"
                )));
            }
        }
        if let Some(ms) = self.retention_ms
            && ms < -1
        {
            return Err(bad("retention_ms must be -1 (for ever) or ≥ 0".into()));
        }
        if let Some(c) = &self.compression_type
            && !COMPRESSION_TYPES.contains(&c.as_str())
        {
            return Err(bad(format!(
                "compression_type must be one of {}",
                COMPRESSION_TYPES.join(", ")
            )));
        }
        if let Some(c) = &self.cleanup_policy
            && !CLEANUP_POLICIES.contains(&c.as_str())
        {
            return Err(bad(
                "cleanup_policy must be `delete`, `compact` or `compact,delete`".into(),
            ));
        }
        for key in self.configs.keys() {
            if VALUE_CONFIGS.contains(&key.as_str()) {
                return Err(bad(format!(
                    "set `{key}` with its own field, not in `configs`"
                )));
            }
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
            {
                return Err(bad(format!("`{key}` is not a topic config name")));
            }
        }
        Ok(())
    }

    /// The replication factor for a cluster of `brokers`.
    pub fn replication_for(&self, brokers: usize) -> i32 {
        self.replication_factor
            .unwrap_or_else(|| i32::try_from(brokers.clamp(1, 3)).unwrap_or(3))
    }

    /// Topic configs of a new topic whose replication factor is `rf`.
    pub fn topic_configs(&self, rf: i32) -> BTreeMap<String, String> {
        let mut configs = self.configs.clone();
        let min_isr = self
            .min_insync_replicas
            .unwrap_or(if rf >= 3 { 2 } else { 1 });
        configs.insert("min.insync.replicas".into(), min_isr.to_string());
        if let Some(ms) = self.retention_ms {
            configs.insert("retention.ms".into(), ms.to_string());
        }
        if let Some(c) = &self.compression_type {
            configs.insert("compression.type".into(), c.clone());
        }
        if let Some(c) = &self.cleanup_policy {
            configs.insert("cleanup.policy".into(), c.clone());
        }
        configs
    }
}

impl TopicPolicy {
    /// Checks the policy and compiles its patterns.
    pub fn compile(self) -> Result<CompiledPolicy, PolicyError> {
        self.naming.validate()?;
        if self.ownership {
            for (template, _) in [
                (&self.naming.event_template, "event"),
                (&self.naming.log_template, "log"),
                (&self.naming.error_template, "error"),
            ] {
                if !template.starts_with("{service}.") {
                    return Err(PolicyError::Inconsistent(format!(
                        "with `ownership` on, every naming template must start with \
                         `{{service}}.` (`{template}` does not)"
                    )));
                }
            }
        }
        if self.templates.is_empty() {
            return Err(PolicyError::Inconsistent(
                "at least one topic template is needed".into(),
            ));
        }
        if self.templates.len() > MAX_RULES {
            return Err(PolicyError::Inconsistent(format!(
                "at most {MAX_RULES} templates"
            )));
        }
        let mut templates = Vec::with_capacity(self.templates.len());
        for (i, t) in self.templates.iter().enumerate() {
            t.validate()?;
            if self.templates[..i].iter().any(|o| o.name == t.name) {
                return Err(PolicyError::Template {
                    template: t.name.clone(),
                    reason: "two templates have this name".into(),
                });
            }
            templates.push(glob("templates", &t.pattern)?.compile_matcher());
        }
        if self.acl.iter().map(|e| e.topics.len()).sum::<usize>() > MAX_RULES {
            return Err(PolicyError::Inconsistent(format!(
                "acl: at most {MAX_RULES} patterns in all"
            )));
        }
        let mut acl: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in &self.acl {
            if entry.service.is_empty() || normalise_component(&entry.service) != entry.service {
                return Err(PolicyError::Inconsistent(format!(
                    "acl: `{}` is not a service name (lowercase letters, digits and `-`)",
                    entry.service
                )));
            }
            acl.entry(entry.service.clone())
                .or_default()
                .extend(entry.topics.iter().cloned());
        }
        let acl = acl
            .into_iter()
            .map(|(service, topics)| Ok((service, glob_set("acl", &topics)?)))
            .collect::<Result<_, PolicyError>>()?;
        if self.creation.interval_secs == 0 || self.creation.interval_secs > 604_800 {
            return Err(PolicyError::Inconsistent(
                "creation.interval_secs must be 1 to 604800 (a week)".into(),
            ));
        }
        if self.creation.per_service > MAX_CREATIONS {
            return Err(PolicyError::Inconsistent(format!(
                "creation.per_service must be 0 to {MAX_CREATIONS}"
            )));
        }
        if self.errortypes.iter().map(|e| e.allow.len()).sum::<usize>() > MAX_RULES {
            return Err(PolicyError::Inconsistent(format!(
                "errortypes: at most {MAX_RULES} patterns in all"
            )));
        }
        let mut errortypes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rule in &self.errortypes {
            if rule.service != "*"
                && (rule.service.is_empty() || normalise_component(&rule.service) != rule.service)
            {
                return Err(PolicyError::Inconsistent(format!(
                    "errortypes: `{}` is not a service name (lowercase letters, digits and `-`) or `*`",
                    rule.service
                )));
            }
            errortypes
                .entry(rule.service.clone())
                .or_default()
                .extend(rule.allow.iter().cloned());
        }
        let errortypes = errortypes
            .into_iter()
            .map(|(service, patterns)| Ok((service, glob_set("errortypes", &patterns)?)))
            .collect::<Result<_, PolicyError>>()?;
        Ok(CompiledPolicy {
            errortypes,
            shared: glob_set("shared", &self.shared)?,
            acl,
            allow: glob_set("allow", &self.allow)?,
            deny: glob_set("deny", &self.deny)?,
            templates,
            policy: self,
        })
    }
}

impl CompiledPolicy {
    /// The policy as configured.
    pub fn policy(&self) -> &TopicPolicy {
        &self.policy
    }

    /// The topic the naming policy gives this event.
    pub fn route(&self, event: &Event) -> Result<String, TopicError> {
        self.policy.naming.topic_for(event)
    }

    /// The topic the naming policy gives this event of `service` (its `source`'s service).
    pub fn route_for(&self, service: &str, event: &Event) -> Result<String, TopicError> {
        self.policy.naming.topic_for_service(service, event)
    }

    /// Whether routed topics are created on first use.
    pub fn auto_create(&self) -> bool {
        self.policy.auto_create
    }

    /// The bounds on topics created on first publish.
    pub fn creation_limits(&self) -> &CreationLimits {
        &self.policy.creation
    }

    /// Whether `service` may send this event's `errortype` (events without one always may).
    pub fn check_errortype(&self, service: &str, event: &Event) -> Result<(), Refusal> {
        let Some(errortype) = &event.errortype else {
            return Ok(());
        };
        let Some(allowed) = self
            .errortypes
            .get(service)
            .or_else(|| self.errortypes.get("*"))
        else {
            return Ok(());
        };
        let errortype = normalise_component(errortype);
        if allowed.is_match(&errortype) {
            Ok(())
        } else {
            Err(Refusal::ErrortypeNotAllowed {
                service: service.to_owned(),
                errortype,
            })
        }
    }

    /// Whether `service` may publish to `topic`: not denied, allowed when an allow list
    /// exists, and — when ownership is on — owned by the service, shared, or opened to the
    /// service by an ACL entry.
    pub fn check(&self, service: &str, topic: &str) -> Result<(), Refusal> {
        if let Some(&i) = self.deny.matches(topic).first() {
            return Err(Refusal::Denied {
                topic: topic.to_owned(),
                pattern: self.policy.deny[i].clone(),
            });
        }
        if !self.policy.allow.is_empty() && !self.allow.is_match(topic) {
            return Err(Refusal::NotAllowed(topic.to_owned()));
        }
        if self.policy.ownership
            && !owns(service, topic)
            && !self.shared.is_match(topic)
            && !self.acl.get(service).is_some_and(|set| set.is_match(topic))
        {
            return Err(Refusal::NotOwner {
                service: service.to_owned(),
                topic: topic.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether a topic may be created by hand (admin): not denied, and allowed when an
    /// allow list exists. Ownership does not apply to operators.
    pub fn check_admin(&self, topic: &str) -> Result<(), Refusal> {
        validate_topic_name(topic).map_err(|e| Refusal::NotAllowed(e.to_string()))?;
        if let Some(&i) = self.deny.matches(topic).first() {
            return Err(Refusal::Denied {
                topic: topic.to_owned(),
                pattern: self.policy.deny[i].clone(),
            });
        }
        if !self.policy.allow.is_empty() && !self.allow.is_match(topic) {
            return Err(Refusal::NotAllowed(topic.to_owned()));
        }
        Ok(())
    }

    /// The template a new topic of this name is created from.
    pub fn template_for(&self, topic: &str) -> Result<&TopicTemplate, Refusal> {
        self.templates
            .iter()
            .position(|m| m.is_match(topic))
            .map(|i| &self.policy.templates[i])
            .ok_or_else(|| Refusal::NoTemplate(topic.to_owned()))
    }

    /// A template by name.
    pub fn template_named(&self, name: &str) -> Option<&TopicTemplate> {
        self.policy.templates.iter().find(|t| t.name == name)
    }

    /// What the policy does with `event`.
    pub fn preview(&self, event: &Event) -> Result<Preview, TopicError> {
        let service = service_of(&event.source)?;
        let topic = self.route(event)?;
        let refusal = self
            .check_errortype(&service, event)
            .err()
            .or_else(|| self.check(&service, &topic).err())
            .or_else(|| self.template_for(&topic).err());
        Ok(Preview {
            template: self.template_for(&topic).ok().map(|t| t.name.clone()),
            refusal: refusal.map(|r| r.to_string()),
            service,
            topic,
        })
    }
}

/// Whether `topic` is under `service`'s prefix (`{service}.…`).
pub fn owns(service: &str, topic: &str) -> bool {
    topic
        .strip_prefix(service)
        .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests;
