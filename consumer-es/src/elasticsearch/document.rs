//! The documents the sink indexes, their index names and the index template: pure
//! functions over events, tested without Elasticsearch.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use courier_consumer_main::{Event, Origin};
use courier_shared::envelope::{Data, ExtensionValue};
use serde::Serialize;
use serde_json::value::RawValue;

/// An index name template, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexName {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Date(String),
}

impl IndexName {
    /// Parses `courier-{topic}-{yyyy.MM.dd}`-style templates.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in index template `{template}`"))?
                + open;
            let token = &rest[open + 1..close];
            if token == "topic" {
                parts.push(Part::Topic);
            } else {
                let mut fmt = token.to_owned();
                for (java, strftime) in [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H")] {
                    fmt = fmt.replace(java, strftime);
                }
                if fmt
                    .chars()
                    .any(|c| c.is_ascii_alphabetic() && !"YmdH".contains(c))
                {
                    return Err(format!(
                        "unknown date pattern `{token}` in index template `{template}`"
                    ));
                }
                parts.push(Part::Date(fmt));
            }
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        match parts.first() {
            Some(Part::Text(t)) if !t.starts_with(['-', '_', '+']) => {}
            _ => {
                return Err(format!(
                    "index template `{template}` must start with a literal prefix"
                ));
            }
        }
        Ok(Self { parts })
    }

    /// The index for an event of `topic` at `time`.
    pub fn render(&self, topic: &str, time: &DateTime<Utc>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Topic => out.push_str(topic),
                Part::Date(f) => out.push_str(&time.format(f).to_string()),
            }
        }
        out.to_ascii_lowercase()
    }

    /// The pattern of every index it renders (`courier-*`), for the index template.
    pub fn pattern(&self) -> String {
        match self.parts.first() {
            Some(Part::Text(t)) => format!("{}*", t.to_ascii_lowercase()),
            _ => "*".into(),
        }
    }
}

/// The time an event is filed under: its `time`, else its record's timestamp — both fixed,
/// so a replay lands in the same index as the first write.
pub fn event_time(event: &Event, origin: &Origin) -> DateTime<Utc> {
    event
        .time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            origin
                .timestamp_ms
                .and_then(DateTime::from_timestamp_millis)
        })
        .unwrap_or(DateTime::UNIX_EPOCH)
}

#[derive(Serialize)]
struct KafkaMeta<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    category: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errortype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partitionkey: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, ExtensionValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    kafka: KafkaMeta<'a>,
}

/// The document `_id` of an event: its identity is (`source`, `id`), so two sources that use
/// the same id make two documents, and a replay of one event overwrites its own. The id stays
/// readable after a fixed-length digest of the source (16 hex digits of its SHA-256, then `:`);
/// an id longer than 495 bytes makes an `_id` Elasticsearch refuses (512 bytes), and that event
/// is dead-lettered.
pub fn document_id(event: &Event) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(event.source.as_bytes());
    let mut id = String::with_capacity(17 + event.id.len());
    for byte in &digest[..8] {
        let _ = write!(id, "{byte:02x}");
    }
    id.push(':');
    id.push_str(&event.id);
    id
}

/// The document of an event. JSON object data is indexed as `data` (dynamic, typed
/// fields); other JSON and text as `data_text`; anything else as `data_base64`.
pub fn document(event: &Event, origin: &Origin) -> Vec<u8> {
    use base64::Engine as _;
    let (mut data, mut data_text, mut data_base64) = (None, None, None);
    match &event.data {
        Some(Data::Json(raw)) if raw.get().trim_start().starts_with('{') => {
            data = Some(raw.as_ref())
        }
        Some(Data::Json(raw)) => data_text = Some(raw.get()),
        Some(Data::Binary(bytes)) => match std::str::from_utf8(bytes) {
            Ok(text) => data_text = Some(text),
            Err(_) => data_base64 = Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        },
        None => {}
    }
    let doc = Doc {
        timestamp: event_time(event, origin).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        id: &event.id,
        source: &event.source,
        ty: &event.ty,
        subject: event.subject.as_deref(),
        time: event.time.as_deref(),
        category: event.category.as_str(),
        errortype: event.errortype.as_deref(),
        partitionkey: event.partitionkey.as_deref(),
        datacontenttype: event.datacontenttype.as_deref(),
        dataschema: event.dataschema.as_deref(),
        extensions: &event.extensions,
        data,
        data_text,
        data_base64,
        kafka: KafkaMeta {
            topic: &origin.topic,
            partition: origin.partition,
            offset: origin.offset,
            timestamp: origin.timestamp_ms,
        },
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// The index template for Courier's indices: the CloudEvents attributes as keywords and
/// dates, extension attributes `flattened`, `data` a dynamic object (typed, searchable
/// fields; a document whose field contradicts the mapping is refused and dead-lettered).
pub fn index_template(pattern: &str, shards: u32, replicas: u32) -> serde_json::Value {
    let keyword = serde_json::json!({"type": "keyword"});
    let date = serde_json::json!({"type": "date", "format": "strict_date_optional_time_nanos||epoch_millis"});
    serde_json::json!({
        "index_patterns": [pattern],
        "priority": 100,
        "template": {
            "settings": {"number_of_shards": shards, "number_of_replicas": replicas},
            "mappings": {
                "dynamic": "strict",
                "date_detection": false,
                "properties": {
                    "@timestamp": date,
                    "id": keyword, "source": keyword, "type": keyword, "subject": keyword,
                    "time": date, "category": keyword, "errortype": keyword,
                    "partitionkey": keyword, "datacontenttype": keyword, "dataschema": keyword,
                    "extensions": {"type": "flattened"},
                    "data": {"type": "object", "dynamic": true},
                    "data_text": {"type": "text"},
                    "data_base64": {"type": "binary"},
                    "kafka": {"properties": {
                        "topic": keyword,
                        "partition": {"type": "integer"},
                        "offset": {"type": "long"},
                        "timestamp": {"type": "date", "format": "epoch_millis"},
                    }},
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            topic: "billing.events".into(),
            partition: 2,
            offset: 9,
            timestamp_ms: Some(1_700_000_000_000),
        }
    }

    #[test]
    fn index_names_follow_the_template() {
        let t = IndexName::parse("courier-{topic}-{yyyy.MM.dd}").unwrap();
        let time = DateTime::parse_from_rfc3339("2025-03-04T23:30:00-02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            t.render("billing.events", &time),
            "courier-billing.events-2025.03.05"
        );
        assert_eq!(t.pattern(), "courier-*");
        assert!(IndexName::parse("{topic}").is_err());
        assert!(IndexName::parse("x-{topic").is_err());
        assert!(IndexName::parse("x-{yyyy.QQ}").is_err());
    }

    #[test]
    fn documents_carry_attributes_data_and_origin() {
        let e = Event::from_json(
            br#"{"specversion":"1.0","id":"e1","source":"/billing","type":"t","time":"2025-01-02T03:04:05Z","region":"eu","data":{"amount":5}}"#,
        )
        .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&document(&e, &origin())).unwrap();
        assert_eq!(doc["id"], "e1");
        assert_eq!(doc["@timestamp"], "2025-01-02T03:04:05.000Z");
        assert_eq!(doc["data"]["amount"], 5);
        assert_eq!(doc["extensions"]["region"], "eu");
        assert_eq!(doc["kafka"]["offset"], 9);
        assert_eq!(doc["category"], "event");

        let scalar = Event::from_json(
            br#"{"specversion":"1.0","id":"e2","source":"s","type":"t","data":[1,2]}"#,
        )
        .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&document(&scalar, &origin())).unwrap();
        assert_eq!(doc["data_text"], "[1,2]");
        assert!(doc.get("data").is_none());
        // Without `time`, the record's timestamp: stable across replays.
        assert_eq!(doc["@timestamp"], "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn document_ids_are_source_and_id() {
        let event = |source: &str, id: &str| {
            Event::from_json(
                serde_json::json!({"specversion": "1.0", "id": id, "source": source, "type": "t"})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap()
        };
        let a = document_id(&event("/billing/a", "same"));
        assert_eq!(a, document_id(&event("/billing/a", "same")), "stable");
        assert_ne!(a, document_id(&event("/billing/b", "same")));
        assert!(a.ends_with(":same") && a.len() == 16 + 1 + 4, "{a}");
        // No way to shift characters between source and id and meet another event's `_id`.
        assert_ne!(
            document_id(&event("/x", "a:b")),
            document_id(&event("/x:a", "b"))
        );
    }
}
