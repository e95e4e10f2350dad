//! The topic naming policy: which Kafka topic an event goes to.
//!
//! The service is derived from the event's `source`; the topic comes from a template per
//! category (`{service}.{category}s` and `{service}.error.{errortype}` by default). Every
//! placeholder value is normalised to `[a-z0-9-]` before it is substituted, so a generated
//! name is always legal for Kafka and never contains `_`: two generated names can therefore not
//! collide in Kafka's metric names, where `.` and `_` are the same character.

use crate::envelope::{Category, Event};

/// Kafka's limit on a topic name's length.
pub const MAX_TOPIC_LEN: usize = 249;

/// Why no topic could be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The name breaks one of Kafka's rules (or Courier's: no `__` internal prefix).
    #[error("illegal topic name `{name}`: {reason}")]
    Illegal {
        /// The offending name (possibly shortened for display).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No service name can be derived from the event's `source`.
    #[error("cannot derive a service name from source `{0}`")]
    NoService(String),
    /// A template uses a placeholder that does not exist.
    #[error("template `{template}` uses unknown placeholder `{{{placeholder}}}`")]
    UnknownPlaceholder {
        /// The template.
        template: String,
        /// The unknown placeholder.
        placeholder: String,
    },
    /// The topic collides with an existing one (`.` and `_` are the same to Kafka's metrics).
    #[error("topic `{name}` collides with existing topic `{existing}`")]
    Collision {
        /// The new name.
        name: String,
        /// The existing name it collides with.
        existing: String,
    },
}

/// Templates that turn an event into a topic name, one per category. Placeholders:
/// `{service}`, `{category}`, `{errortype}` (the error template only); each fills at most one
/// `.`-separated segment of the name, so a name can be read back into its parts and two
/// templates can be checked for overlap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamingPolicy {
    /// For `category: event`.
    pub event_template: String,
    /// For `category: log`.
    #[serde(default = "default_log_template")]
    pub log_template: String,
    /// For `category: error`.
    pub error_template: String,
}

fn default_log_template() -> String {
    "{service}.logs".to_owned()
}

impl Default for NamingPolicy {
    fn default() -> Self {
        Self {
            event_template: "{service}.events".to_owned(),
            log_template: default_log_template(),
            error_template: "{service}.error.{errortype}".to_owned(),
        }
    }
}

const PLACEHOLDERS: [&str; 3] = ["service", "category", "errortype"];

impl NamingPolicy {
    /// Checks every template: known placeholders, at most one per `.`-segment, legal names
    /// even for the longest service and error type, and no error topic that could share a
    /// name with an event or log topic.
    pub fn validate(&self) -> Result<(), TopicError> {
        let longest = "x".repeat(MAX_COMPONENT_LEN);
        for (template, category) in self.templates() {
            let segments = segments(template)?;
            if segments.is_empty() {
                return Err(illegal_template(template, "empty template"));
            }
            // Only error events have an error type: elsewhere the placeholder would render
            // empty, and so an empty or clashing name.
            if category != Category::Error
                && segments
                    .iter()
                    .any(|(_, placeholder, _)| placeholder.as_deref() == Some("errortype"))
            {
                return Err(illegal_template(
                    template,
                    "`{errortype}` is only known for error events; use it in the error template",
                ));
            }
            validate_topic_name(&render(template, "svc", category.as_str(), "kind"))?;
            let longest_name = render(template, &longest, category.as_str(), &longest);
            if longest_name.len() > MAX_TOPIC_LEN {
                return Err(illegal_template(
                    template,
                    "renders names longer than 249 characters for a 64-character service or error type",
                ));
            }
        }
        let error = category_segments(&self.error_template, Category::Error)?;
        for (template, category) in [
            (&self.event_template, Category::Event),
            (&self.log_template, Category::Log),
        ] {
            if may_overlap(&error, &category_segments(template, category)?) {
                return Err(illegal_template(
                    &self.error_template,
                    "the error template can render the same name as the event or log template",
                ));
            }
        }
        Ok(())
    }

    fn templates(&self) -> [(&String, Category); 3] {
        [
            (&self.event_template, Category::Event),
            (&self.log_template, Category::Log),
            (&self.error_template, Category::Error),
        ]
    }

    /// The template for a category.
    pub fn template(&self, category: Category) -> &str {
        match category {
            Category::Event => &self.event_template,
            Category::Log => &self.log_template,
            Category::Error => &self.error_template,
        }
    }

    /// The topic for this event.
    pub fn topic_for(&self, event: &Event) -> Result<String, TopicError> {
        self.topic_for_service(&service_of(&event.source)?, event)
    }

    /// The topic for this event of `service` (what [`service_of`] gives for its `source`).
    pub fn topic_for_service(&self, service: &str, event: &Event) -> Result<String, TopicError> {
        let errortype = if event.category == Category::Error {
            let errortype = normalise_component(event.errortype.as_deref().unwrap_or("unknown"));
            if errortype.is_empty() {
                return Err(TopicError::Illegal {
                    name: event.errortype.clone().unwrap_or_default(),
                    reason: "errortype has no letters or digits to name a topic with",
                });
            }
            errortype
        } else {
            String::new()
        };
        let template = self.template(event.category);
        let name = render(template, service, event.category.as_str(), &errortype);
        validate_topic_name(&name)?;
        Ok(name)
    }
}

/// Longest service or error type component [`normalise_component`] produces.
pub const MAX_COMPONENT_LEN: usize = 64;

fn illegal_template(template: &str, reason: &'static str) -> TopicError {
    TopicError::Illegal {
        name: template.chars().take(80).collect(),
        reason,
    }
}

/// One `.`-separated segment of a template: literal text, or a placeholder with literal text
/// around it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Slot { prefix: String, suffix: String },
}

/// Splits a template into segments, refusing unknown placeholders and segments with two.
fn segments(template: &str) -> Result<Vec<(String, Option<String>, String)>, TopicError> {
    template
        .split('.')
        .map(|segment| {
            let Some(start) = segment.find('{') else {
                if segment.contains('}') {
                    return Err(illegal_template(template, "unmatched `}` in template"));
                }
                return Ok((segment.to_owned(), None, String::new()));
            };
            let after = &segment[start + 1..];
            let end = after
                .find('}')
                .ok_or_else(|| illegal_template(template, "unclosed `{` in template"))?;
            let placeholder = &after[..end];
            if !PLACEHOLDERS.contains(&placeholder) {
                return Err(TopicError::UnknownPlaceholder {
                    template: template.to_owned(),
                    placeholder: placeholder.to_owned(),
                });
            }
            let suffix = &after[end + 1..];
            if suffix.contains(['{', '}']) {
                return Err(illegal_template(
                    template,
                    "at most one placeholder per `.`-separated segment",
                ));
            }
            Ok((
                segment[..start].to_owned(),
                Some(placeholder.to_owned()),
                suffix.to_owned(),
            ))
        })
        .collect()
}

/// The segments of `template` as it renders for `category` (`{category}` is then literal).
fn category_segments(template: &str, category: Category) -> Result<Vec<Segment>, TopicError> {
    Ok(segments(template)?
        .into_iter()
        .map(
            |(prefix, placeholder, suffix)| match placeholder.as_deref() {
                None => Segment::Literal(prefix),
                Some("category") => {
                    Segment::Literal(format!("{prefix}{}{suffix}", category.as_str()))
                }
                Some(_) => Segment::Slot { prefix, suffix },
            },
        )
        .collect())
}

/// Whether two templates might render the same name. Conservative: `true` unless some
/// segment proves them apart.
fn may_overlap(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| segments_may_match(x, y))
}

fn segments_may_match(a: &Segment, b: &Segment) -> bool {
    match (a, b) {
        (Segment::Literal(x), Segment::Literal(y)) => x == y,
        (Segment::Literal(text), Segment::Slot { prefix, suffix })
        | (Segment::Slot { prefix, suffix }, Segment::Literal(text)) => {
            text.len() > prefix.len() + suffix.len()
                && text.starts_with(prefix.as_str())
                && text.ends_with(suffix.as_str())
                && is_component(&text[prefix.len()..text.len() - suffix.len()])
        }
        (
            Segment::Slot {
                prefix: p1,
                suffix: s1,
            },
            Segment::Slot {
                prefix: p2,
                suffix: s2,
            },
        ) => {
            (p1.starts_with(p2.as_str()) || p2.starts_with(p1.as_str()))
                && (s1.ends_with(s2.as_str()) || s2.ends_with(s1.as_str()))
        }
    }
}

/// Whether `s` is something [`normalise_component`] can produce.
fn is_component(s: &str) -> bool {
    !s.is_empty() && normalise_component(s) == s
}

/// `template` with its placeholders filled in, in one pass and one allocation. The values
/// cannot contain a placeholder themselves (components are normalised to `[a-z0-9-]`, the
/// category is a fixed word), so this is what replacing each placeholder in turn gives.
fn render(template: &str, service: &str, category: &str, errortype: &str) -> String {
    let mut out = String::with_capacity(template.len() + service.len() + errortype.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (value, placeholder) = [
            (service, "{service}"),
            (category, "{category}"),
            (errortype, "{errortype}"),
        ]
        .into_iter()
        .find(|(_, p)| tail.starts_with(p))
        .unwrap_or(("{", "{"));
        out.push_str(value);
        rest = &tail[placeholder.len()..];
    }
    out.push_str(rest);
    out
}

/// The service name of a `source`: the first path segment of a relative reference
/// (`/billing/api` → `billing`), the first host label of an absolute URI with an authority
/// (`https://billing.internal/x` → `billing`), or the last segment of a URN
/// (`urn:courier:billing` → `billing`); normalised with [`normalise_component`].
pub fn service_of(source: &str) -> Result<String, TopicError> {
    let raw = if let Some((scheme, rest)) = source.split_once(':').filter(|(s, _)| is_scheme(s)) {
        if let Some(authority) = rest.strip_prefix("//") {
            let host = authority.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            host.split(['.', ':']).next().unwrap_or("")
        } else if scheme.eq_ignore_ascii_case("urn") {
            rest.rsplit(':').next().unwrap_or("")
        } else {
            rest.trim_start_matches('/').split('/').next().unwrap_or("")
        }
    } else {
        source
            .trim_start_matches('/')
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
    };
    let service = normalise_component(raw);
    if service.is_empty() {
        return Err(TopicError::NoService(source.to_owned()));
    }
    Ok(service)
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        // A one-letter "scheme" is far more likely a relative path like `a:b`; demand two.
        && s.len() > 1
}

/// Lowercases and maps every character outside `[a-z0-9]` to `-`, collapsing runs and
/// trimming the ends; at most 64 characters so a rendered template stays within Kafka's limit.
pub fn normalise_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(64));
    let mut dash = false;
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
        if out.len() >= MAX_COMPONENT_LEN {
            break;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Kafka's rules for a topic name, plus Courier's refusal of the internal `__` prefix.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let illegal = |reason| {
        Err(TopicError::Illegal {
            name: name.chars().take(80).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return illegal("empty");
    }
    if name == "." || name == ".." {
        return illegal("`.` and `..` are not topic names");
    }
    if name.len() > MAX_TOPIC_LEN {
        return illegal("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return illegal("only ASCII letters, digits, `.`, `_` and `-` are allowed");
    }
    if name.starts_with("__") {
        return illegal("names starting with `__` are reserved for Kafka's internal topics");
    }
    Ok(())
}

/// The form under which Kafka considers two names the same (its metrics map `.` to `_`).
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Refuses `name` when it collides with one of `existing` without being equal to it.
pub fn check_collision<'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<(), TopicError> {
    let key = collision_key(name);
    match existing
        .into_iter()
        .find(|e| *e != name && collision_key(e) == key)
    {
        Some(e) => Err(TopicError::Collision {
            name: name.to_owned(),
            existing: e.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;
    use proptest::prelude::*;

    #[test]
    fn default_templates() {
        let p = NamingPolicy::default();
        assert_eq!(
            p.topic_for(&event("/billing", "")).unwrap(),
            "billing.events"
        );
        assert_eq!(
            p.topic_for(&event("/billing/api", r#","category":"log""#))
                .unwrap(),
            "billing.logs"
        );
        assert_eq!(
            p.topic_for(&event("billing", r#","errortype":"Payment_Declined""#))
                .unwrap(),
            "billing.error.payment-declined"
        );
    }

    #[test]
    fn services_from_sources() {
        for (source, service) in [
            ("/billing", "billing"),
            ("billing/x", "billing"),
            ("https://Billing.internal:8443/api", "billing"),
            ("https://user@billing/api", "billing"),
            ("urn:courier:order_service", "order-service"),
            ("mailto:ops", "ops"),
            ("/Über Service", "ber-service"),
        ] {
            assert_eq!(service_of(source).unwrap(), service, "{source}");
        }
        assert!(service_of("/").is_err());
        assert!(service_of("https:///x").is_err());
    }

    #[test]
    fn errortype_without_letters_is_refused() {
        let e = event("/billing", r#","errortype":"!!!""#);
        assert!(NamingPolicy::default().topic_for(&e).is_err());
    }

    #[test]
    fn kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "__consumer_offsets",
            "a b",
            "ä",
            &"x".repeat(250),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn collisions() {
        assert!(check_collision("a.b", ["a_b"]).is_err());
        assert!(check_collision("a.b", ["a.b", "a-b"]).is_ok());
    }

    #[test]
    fn templates_are_checked() {
        let bad = NamingPolicy {
            event_template: "{svc}.x".into(),
            ..NamingPolicy::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(TopicError::UnknownPlaceholder { .. })
        ));
        let bad = NamingPolicy {
            error_template: "__{service}".into(),
            ..NamingPolicy::default()
        };
        assert!(bad.validate().is_err());
        NamingPolicy::default().validate().unwrap();
    }

    #[test]
    fn overlapping_templates_are_refused() {
        let overlapping = [
            ("{service}.events", "{service}.{errortype}"),
            ("{service}.{category}s", "{service}.{errortype}s"),
            ("all.{service}", "all.{errortype}"),
        ];
        for (event_template, error_template) in overlapping {
            let p = NamingPolicy {
                event_template: event_template.into(),
                error_template: error_template.into(),
                ..NamingPolicy::default()
            };
            assert!(p.validate().is_err(), "{event_template} / {error_template}");
        }
        let apart = NamingPolicy {
            event_template: "{service}.{category}s".into(),
            log_template: "logs.{service}".into(),
            error_template: "{service}.failures.{errortype}".into(),
        };
        apart.validate().unwrap();
        for (template, reason) in [
            ("{service}-{errortype}", "two placeholders in one segment"),
            ("{service}.error.{errortype}}", "stray brace"),
            ("{service}.error.{errortype", "unclosed brace"),
            (
                &format!("{{service}}.{}.{{errortype}}", "x".repeat(120)),
                "too long",
            ),
        ] {
            let p = NamingPolicy {
                error_template: template.into(),
                ..NamingPolicy::default()
            };
            assert!(p.validate().is_err(), "{reason}");
        }
    }

    /// Found by the `naming` fuzz target: `{errortype}` in the event (or log) template
    /// passed validation, then rendered empty for every event — an illegal (or clashing)
    /// topic for an event the policy had promised to route.
    #[test]
    fn errortype_is_refused_outside_the_error_template() {
        for (event_template, log_template) in [
            ("{errortype}", "{service}.logs"),
            ("{service}.x{errortype}", "{service}.logs"),
            ("{service}.events", "{service}.{errortype}.logs"),
        ] {
            let p = NamingPolicy {
                event_template: event_template.into(),
                log_template: log_template.into(),
                ..NamingPolicy::default()
            };
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains("only known for error events"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn every_generated_name_is_legal(
            source in "\\PC{0,300}",
            errortype in "\\PC{1,300}",
            category in prop_oneof![Just("event"), Just("log"), Just("error")],
        ) {
            let json = serde_json::json!({
                "specversion": "1.0", "source": source, "type": "t",
                "category": category, "errortype": (category == "error").then_some(errortype),
            });
            let Ok(e) = Event::from_json(json.to_string().as_bytes()) else { return Ok(()) };
            if let Ok(name) = NamingPolicy::default().topic_for(&e) {
                prop_assert!(validate_topic_name(&name).is_ok());
                prop_assert!(!name.contains('_'));
                prop_assert!(name.len() <= MAX_TOPIC_LEN);
            }
        }

        #[test]
        fn rendering_in_one_pass_is_replacing_in_turn(
            template in "([a-z.{}-]|\\{service\\}|\\{category\\}|\\{errortype\\}){0,12}",
            service in "[a-z0-9-]{0,8}",
            errortype in "[a-z0-9-]{0,8}",
            category in prop_oneof![Just("event"), Just("log"), Just("error")],
        ) {
            let in_turn = template
                .replace("{service}", &service)
                .replace("{category}", category)
                .replace("{errortype}", &errortype);
            prop_assert_eq!(render(&template, &service, category, &errortype), in_turn);
        }

        #[test]
        fn normalising_is_idempotent_and_legal(s in "\\PC{0,200}") {
            let once = normalise_component(&s);
            prop_assert_eq!(normalise_component(&once), once.clone());
            prop_assert!(once.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            prop_assert!(!once.starts_with('-') && !once.ends_with('-') && !once.contains("--"));
        }
    }
}
