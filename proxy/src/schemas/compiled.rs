//! One schema version, compiled: how a schema is accepted at registration (size, JSON, a
//! valid JSON Schema that needs nothing from outside), how an event's `data` is checked
//! against it, and the `dataschema` URI that names it. No I/O: tested on values alone.

use courier_shared::{Data, Event};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;

/// Largest schema accepted, in bytes of JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most errors one refusal names.
const MAX_ERRORS: usize = 5;
/// Longest text of one error (the schema's own words can be long).
const MAX_ERROR_LEN: usize = 200;
/// Compiled size of one `pattern` regex: matching stays linear in the input (the `regex`
/// engine, no backtracking) and small in memory.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
const REGEX_DFA_SIZE_LIMIT: usize = 1024 * 1024;

/// The prefix of the `dataschema` URIs Courier gives schema versions:
/// `courier:schema/<service>/<type>/<version>`, `<type>` percent-encoded.
pub const URI_PREFIX: &str = "courier:schema/";

/// What stays as it is in a `dataschema` URI's segments (RFC 3986 unreserved characters).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The `dataschema` URI of a version.
pub fn uri(service: &str, event_type: &str, version: i64) -> String {
    format!("{}/{version}", uri_base(service, event_type))
}

/// The `dataschema` URI of a (service, type) without its version.
pub fn uri_base(service: &str, event_type: &str) -> String {
    format!(
        "{URI_PREFIX}{}/{}",
        utf8_percent_encode(service, SEGMENT),
        utf8_percent_encode(event_type, SEGMENT)
    )
}

/// The (service, type, version) a `dataschema` URI names, if it is one of Courier's.
pub fn parse_uri(uri: &str) -> Option<(String, String, i64)> {
    let rest = uri.strip_prefix(URI_PREFIX)?;
    let mut parts = rest.split('/');
    let (service, ty, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version.starts_with(['+', '-']) {
        return None;
    }
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    Some((decode(service)?, decode(ty)?, version.parse().ok()?))
}

/// A schema version ready to check events.
#[derive(Debug)]
pub struct Compiled {
    /// Its version number.
    pub version: i64,
    /// Its `dataschema` URI.
    pub uri: String,
    /// The validator, or why the stored schema did not compile (then every event of the
    /// type is refused rather than let through unchecked).
    validator: Result<jsonschema::Validator, String>,
}

impl Compiled {
    /// Compiles a stored schema; one that does not compile refuses every event.
    pub fn new(service: &str, event_type: &str, version: i64, schema: &str) -> Self {
        let validator = serde_json::from_str::<Value>(schema)
            .map_err(|e| e.to_string())
            .and_then(|v| compile(&v));
        if let Err(e) = &validator {
            tracing::error!(service, event_type, version, error = %e, "a stored schema does not compile; its events are refused");
        }
        Self {
            version,
            uri: uri(service, event_type, version),
            validator,
        }
    }

    /// Checks the event's `data`: `Err` says why it does not match, in a few short lines.
    pub fn check(&self, event: &Event) -> Result<(), String> {
        let validator = self
            .validator
            .as_ref()
            .map_err(|e| format!("the registered schema does not compile: {e}"))?;
        let data = data_value(event)?;
        let mut errors = validator.iter_errors(&data).peekable();
        if errors.peek().is_none() {
            return Ok(());
        }
        let mut lines = Vec::new();
        let mut more = 0;
        for error in errors {
            if lines.len() == MAX_ERRORS {
                more += 1;
                continue;
            }
            let path = error.instance_path().to_string();
            // Masked: an error must not echo the event's data (it may be large, or private).
            let mut line = format!(
                "{}: {}",
                if path.is_empty() { "/" } else { &path },
                error.masked()
            );
            truncate(&mut line, MAX_ERROR_LEN);
            lines.push(line);
        }
        if more > 0 {
            lines.push(format!("and {more} more"));
        }
        Err(lines.join("; "))
    }
}

/// The event's `data` as JSON: absent data is `null`; binary data must be JSON by its
/// `datacontenttype` and its bytes.
fn data_value(event: &Event) -> Result<Value, String> {
    match &event.data {
        None => Ok(Value::Null),
        Some(Data::Json(raw)) => serde_json::from_str(raw.get()).map_err(|e| e.to_string()),
        Some(Data::Binary(bytes)) => {
            let media = event.datacontenttype.as_deref().unwrap_or("");
            let essence = courier_shared::binding::media_type_essence(media);
            if !(essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json"))
            {
                return Err(format!(
                    "data is not JSON (datacontenttype `{media}`): a schema checks JSON data only"
                ));
            }
            serde_json::from_slice(bytes).map_err(|e| format!("data is not valid JSON: {e}"))
        }
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// Compiles a schema: it must be a valid JSON Schema (checked against its meta-schema),
/// refer to nothing outside itself (nothing is fetched), and keep its regexes small.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err("a JSON Schema is an object (or true/false)".into());
    }
    jsonschema::options()
        .offline()
        .with_pattern_options(
            jsonschema::PatternOptions::regex()
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_DFA_SIZE_LIMIT),
        )
        .build(schema)
        .map_err(|e| {
            let mut text = e.to_string();
            truncate(&mut text, 500);
            text
        })
}

/// Checks a schema offered for registration; returns it as compact JSON text.
pub fn accept(schema: &Value) -> Result<String, String> {
    if !schema.is_object() {
        return Err("a schema is registered as a JSON object".into());
    }
    let text = serde_json::to_string(schema).map_err(|e| e.to_string())?;
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(format!(
            "the schema takes {} bytes as compact JSON; the limit is {MAX_SCHEMA_BYTES}",
            text.len()
        ));
    }
    compile(schema)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: &str) -> Event {
        Event::from_json(
            format!(r#"{{"specversion":"1.0","id":"1","source":"/billing","type":"order.placed","data":{data}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn order_schema() -> String {
        json!({
            "type": "object",
            "required": ["amount"],
            "properties": {"amount": {"type": "number", "minimum": 0}, "sku": {"type": "string", "pattern": "^[A-Z]+$"}}
        })
        .to_string()
    }

    #[test]
    fn uris_round_trip_and_encode_the_type() {
        let u = uri("billing", "com.example/order placed", 3);
        assert_eq!(u, "courier:schema/billing/com.example%2Forder%20placed/3");
        assert_eq!(
            parse_uri(&u),
            Some(("billing".into(), "com.example/order placed".into(), 3))
        );
        for bad in [
            "https://example.com/s.json",
            "courier:schema/billing/x",
            "courier:schema/billing/x/1/2",
            "courier:schema/billing/x/v1",
            "courier:schema/billing/x/-1",
        ] {
            assert_eq!(parse_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn valid_data_passes_and_invalid_data_says_where() {
        let c = Compiled::new("billing", "order.placed", 1, &order_schema());
        assert_eq!(c.uri, "courier:schema/billing/order.placed/1");
        assert!(c.check(&event(r#"{"amount": 3, "sku": "AB"}"#)).is_ok());
        let err = c.check(&event(r#"{"amount": "three"}"#)).unwrap_err();
        assert!(err.starts_with("/amount: "), "{err}");
        assert!(!err.contains("three"), "the data is not echoed: {err}");
        let err = c.check(&event(r#"{"sku": "ab"}"#)).unwrap_err();
        assert!(err.contains("/: ") && err.contains("/sku: "), "{err}");
        let err = c.check(&event("null")).unwrap_err();
        assert!(err.starts_with("/: "), "absent data is null: {err}");
    }

    #[test]
    fn errors_are_bounded() {
        let schema = json!({"type": "array", "items": {"type": "string"}}).to_string();
        let c = Compiled::new("billing", "t", 1, &schema);
        let data = format!("[{}]", vec!["1"; 50].join(","));
        let err = c.check(&event(&data)).unwrap_err();
        assert_eq!(err.matches("; ").count(), MAX_ERRORS, "{err}");
        assert!(err.ends_with("and 45 more"), "{err}");
    }

    #[test]
    fn binary_data_is_checked_only_when_json() {
        let c = Compiled::new("billing", "t", 1, &json!({"type": "object"}).to_string());
        let mut e = event("{}");
        e.data = Some(Data::Binary(b"{\"a\":1}".to_vec()));
        e.datacontenttype = Some("application/vnd.x+json; charset=utf-8".into());
        assert!(c.check(&e).is_ok());
        e.datacontenttype = Some("text/plain".into());
        assert!(c.check(&e).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn registration_refuses_what_cannot_be_a_closed_schema() {
        assert!(accept(&json!({"type": "object"})).is_ok());
        assert!(accept(&json!(true)).is_err(), "registered as objects");
        assert!(accept(&json!([1])).is_err(), "not a schema");
        assert!(
            accept(&json!({"type": "no-such-type"})).is_err(),
            "meta-schema"
        );
        assert!(
            accept(&json!({"$ref": "https://example.com/other.json"})).is_err(),
            "nothing is fetched"
        );
        assert!(accept(&json!({"pattern": "(unclosed"})).is_err());
        let big = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert!(accept(&big).unwrap_err().contains("limit"));
    }

    #[test]
    fn a_stored_schema_that_does_not_compile_refuses_events() {
        let c = Compiled::new("billing", "t", 1, "{\"type\": 5}");
        assert!(
            c.check(&event("{}"))
                .unwrap_err()
                .contains("does not compile")
        );
    }
}
