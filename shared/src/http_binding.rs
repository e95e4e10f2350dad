//! The CloudEvents HTTP protocol binding, binary mode, as Courier receives it: attributes in
//! `ce-*` headers (percent-encoded where they are not printable ASCII), `Content-Type` as
//! `datacontenttype`, and the body as `data`, whatever its media type. Several official SDKs
//! send this mode by default. The event is validated by the same rules as a structured one.

use serde_json::Value;
use serde_json::value::RawValue;

use crate::binding::is_json_media_type;
use crate::envelope::{Data, Event, EventError, MAX_ATTRIBUTES, RawFields};

/// Prefix of the attribute headers (HTTP header names are case-insensitive; give them
/// lowercase).
pub const HTTP_HEADER_PREFIX: &str = "ce-";

/// True when the headers carry a binary-mode event (`ce-specversion` is present).
pub fn is_binary_mode<'a>(mut header_names: impl Iterator<Item = &'a str>) -> bool {
    header_names.any(|name| name.eq_ignore_ascii_case("ce-specversion"))
}

/// Reads a binary-mode event from its `ce-*` headers (name, value; other headers are passed
/// over), its `Content-Type` and its body. An empty body is an event without data, whatever
/// `Content-Type` came with it (none is kept). Extension
/// values arrive as strings: the binding does not carry their types.
pub fn from_http_binary<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Event, EventError> {
    let mut fields = RawFields::default();
    let mut names = std::collections::HashSet::new();
    for (name, value) in headers {
        let Some(attr) = strip_prefix_ignore_case(name, HTTP_HEADER_PREFIX) else {
            continue;
        };
        let attr = attr.to_ascii_lowercase();
        if names.len() >= MAX_ATTRIBUTES {
            fields.too_many = true;
            break;
        }
        if matches!(attr.as_str(), "data" | "datacontenttype") {
            return Err(EventError::Invalid {
                name: name.to_owned(),
                reason: "in binary mode the body is `data` and `Content-Type` its \
                         `datacontenttype`"
                    .into(),
            });
        }
        if !names.insert(attr.clone()) && fields.duplicate.is_none() {
            fields.duplicate = Some(attr.clone());
        }
        let text = std::str::from_utf8(value)
            .ok()
            .and_then(|v| percent_encoding::percent_decode_str(v).decode_utf8().ok())
            .ok_or_else(|| EventError::Invalid {
                name: name.to_owned(),
                reason: "not UTF-8 once percent-decoded".into(),
            })?;
        fields
            .attrs
            .push((attr.into(), Value::String(text.into_owned())));
    }
    // An empty body is an event without data, and a `Content-Type` beside it describes no data:
    // it is not kept. Several senders put one on every request (the JavaScript SDK's
    // `HTTP.binary` puts `application/json; charset=utf-8`, curl's `-d ''` a form type); kept,
    // it would go to Kafka as a `content-type` header over an empty value, which the Kafka
    // binding reads as empty data of that type (and the JavaScript SDK cannot read at all).
    if let Some(ct) = content_type.filter(|_| !body.is_empty()) {
        fields
            .attrs
            .push(("datacontenttype".into(), Value::String(ct.to_owned())));
    }
    let json = content_type.is_some_and(is_json_media_type);
    if json && !body.is_empty() {
        let text = std::str::from_utf8(body)
            .map_err(|e| EventError::Syntax(format!("the JSON body is not UTF-8: {e}")))?;
        let raw = RawValue::from_string(text.to_owned())
            .map_err(|e| EventError::Syntax(e.to_string()))?;
        fields.data = Some(raw);
    }
    let mut event = Event::validate(fields)?;
    if !json && !body.is_empty() {
        // Validated above as an attribute, and dropped there for want of data: the body is it.
        event.data = Some(Data::Binary(body.to_vec()));
        event.datacontenttype = content_type.map(str::to_owned);
    }
    Ok(event)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExtensionValue;

    fn event(headers: &[(&str, &str)], ct: Option<&str>, body: &[u8]) -> Result<Event, EventError> {
        from_http_binary(headers.iter().map(|(k, v)| (*k, v.as_bytes())), ct, body)
    }

    const BASE: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "b-1"),
        ("ce-source", "/billing"),
        ("ce-type", "invoice.paid"),
    ];

    #[test]
    fn attributes_come_from_headers_and_data_from_the_body() {
        let mut h = BASE.to_vec();
        h.extend([
            ("ce-subject", "caf%C3%A9 %25"),
            ("ce-partitionkey", "cust-7"),
            ("ce-region", "eu"),
            ("x-other", "ignored"),
        ]);
        let e = event(&h, Some("application/json"), br#"{"amount": 5}"#).unwrap();
        assert_eq!((e.id.as_str(), e.source.as_str()), ("b-1", "/billing"));
        assert_eq!(e.subject.as_deref(), Some("café %"));
        assert_eq!(e.partitionkey.as_deref(), Some("cust-7"));
        assert_eq!(
            e.extensions.get("region"),
            Some(&ExtensionValue::String("eu".into()))
        );
        assert!(matches!(&e.data, Some(Data::Json(raw)) if raw.get() == r#"{"amount": 5}"#));
        assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
    }

    #[test]
    fn any_media_type_is_data_as_it_came() {
        let bytes = [0u8, 159, 146, 150];
        let e = event(&BASE, Some("application/octet-stream"), &bytes).unwrap();
        assert_eq!(
            e.datacontenttype.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(e.data.unwrap().as_bytes(), bytes);
        let e = event(&BASE, Some("text/xml"), b"<a/>").unwrap();
        assert_eq!(e.data.unwrap().as_bytes(), b"<a/>");
        let e = event(&BASE, None, b"").unwrap();
        assert!(e.data.is_none() && e.datacontenttype.is_none());
    }

    /// The JavaScript SDK sends `Content-Type: application/json; charset=utf-8` with the empty
    /// body of an event without data: the event has no data and no `datacontenttype`, so its
    /// Kafka record is an empty value without a `content-type` header, which every SDK reads as
    /// an event without data.
    #[test]
    fn an_empty_body_is_no_data_whatever_its_content_type() {
        for ct in [
            "application/json; charset=utf-8",
            "application/x-www-form-urlencoded",
            "application/octet-stream",
        ] {
            let e = event(&BASE, Some(ct), b"").unwrap();
            assert!(e.data.is_none(), "{ct}");
            assert_eq!(e.datacontenttype, None, "{ct}");
            let record = crate::binding::to_record(&e);
            assert_eq!(record.value.as_deref(), Some(&b""[..]));
            assert_eq!(record.header(crate::binding::CONTENT_TYPE_HEADER), None);
            assert_eq!(crate::binding::from_record(&record).unwrap(), e);
        }
    }

    #[test]
    fn the_rules_of_structured_mode_apply() {
        assert!(is_binary_mode(
            ["Content-Type", "CE-SpecVersion"].into_iter()
        ));
        assert!(!is_binary_mode(["content-type"].into_iter()));
        let missing = event(&BASE[..3], None, b"").unwrap_err();
        assert_eq!(missing, EventError::Missing("type"));
        let bad_json = event(&BASE, Some("application/json"), b"{nope").unwrap_err();
        assert!(bad_json.is_syntax());
        let mut h = BASE.to_vec();
        h.push(("ce-id", "again"));
        assert!(matches!(
            event(&h, None, b"").unwrap_err(),
            EventError::Duplicate(_)
        ));
        let mut h = BASE.to_vec();
        h.push(("ce-data", "x"));
        assert!(event(&h, None, b"").is_err());
        let mut h = BASE.to_vec();
        h.push(("ce-Bad_Name", "x"));
        assert!(event(&h, None, b"").is_err());
        let long = "x".repeat(crate::envelope::MAX_ID_LEN + 1);
        let h = [BASE[0], ("ce-id", long.as_str()), BASE[2], BASE[3]];
        assert!(event(&h, None, b"").is_err());
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(event(&BASE, Some("application/json"), deep.as_bytes()).is_err());
        let not_utf8 = event(&[BASE[0], BASE[1], BASE[2], ("ce-type", "%FF")], None, b"");
        assert!(not_utf8.is_err());
    }
}
