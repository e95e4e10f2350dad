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

/// Templates that turn an event into a topic name. Placeholders: `{service}`, `{category}`,
/// `{errortype}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamingPolicy {
    /// For `category: event` and `category: log`.
    pub event_template: String,
    /// For `category: error`.
    pub error_template: String,
}

impl Default for NamingPolicy {
    fn default() -> Self {
        Self {
            event_template: "{service}.{category}s".to_owned(),
            error_template: "{service}.error.{errortype}".to_owned(),
        }
    }
}

const PLACEHOLDERS: [&str; 3] = ["service", "category", "errortype"];

impl NamingPolicy {
    /// Checks that both templates use known placeholders and render legal names.
    pub fn validate(&self) -> Result<(), TopicError> {
        for template in [&self.event_template, &self.error_template] {
            let mut rest = template.as_str();
            while let Some(start) = rest.find('{') {
                let after = &rest[start + 1..];
                let end = after.find('}').ok_or_else(|| TopicError::Illegal {
                    name: template.clone(),
                    reason: "unclosed `{` in template",
                })?;
                let placeholder = &after[..end];
                if !PLACEHOLDERS.contains(&placeholder) {
                    return Err(TopicError::UnknownPlaceholder {
                        template: template.clone(),
                        placeholder: placeholder.to_owned(),
                    });
                }
                rest = &after[end + 1..];
            }
            validate_topic_name(&render(template, "svc", "event", "kind"))?;
        }
        Ok(())
    }

    /// The topic for this event.
    pub fn topic_for(&self, event: &Event) -> Result<String, TopicError> {
        let service = service_of(&event.source)?;
        let (template, errortype) = match event.category {
            Category::Error => (
                &self.error_template,
                normalise_component(event.errortype.as_deref().unwrap_or("unknown")),
            ),
            Category::Event | Category::Log => (&self.event_template, String::new()),
        };
        if event.category == Category::Error && errortype.is_empty() {
            return Err(TopicError::Illegal {
                name: event.errortype.clone().unwrap_or_default(),
                reason: "errortype has no letters or digits to name a topic with",
            });
        }
        let name = render(template, &service, event.category.as_str(), &errortype);
        validate_topic_name(&name)?;
        Ok(name)
    }
}

fn render(template: &str, service: &str, category: &str, errortype: &str) -> String {
    template
        .replace("{service}", service)
        .replace("{category}", category)
        .replace("{errortype}", errortype)
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
        if out.len() >= 64 {
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
    use proptest::prelude::*;

    fn event(source: &str, extra: &str) -> Event {
        Event::from_json(
            format!(r#"{{"specversion":"1.0","source":"{source}","type":"t"{extra}}}"#).as_bytes(),
        )
        .unwrap()
    }

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
        fn normalising_is_idempotent_and_legal(s in "\\PC{0,200}") {
            let once = normalise_component(&s);
            prop_assert_eq!(normalise_component(&once), once.clone());
            prop_assert!(once.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            prop_assert!(!once.starts_with('-') && !once.ends_with('-') && !once.contains("--"));
        }
    }
}
