//! Header mapping, Kafka record → event (what the consumers read from any producer): never a
//! panic; a record that reads as an event maps back onto a record that reads as the same
//! event, and that mapping is canonical.
#![no_main]

use arbitrary::Arbitrary;
use courier_fuzz::check_binary_mode;
use courier_shared::{KafkaRecord, from_record};
use libfuzzer_sys::fuzz_target;

/// Header names drawn mostly from the binding's own, so records often read as events.
#[derive(Arbitrary, Debug)]
enum Name {
    Attribute(Attribute),
    Extension(String),
    ContentType,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Attribute {
    Specversion,
    Id,
    Source,
    Type,
    Subject,
    Time,
    Dataschema,
    Category,
    Errortype,
    Partitionkey,
    Datacontenttype,
}

#[derive(Arbitrary, Debug)]
enum Value {
    /// `1.0`, `event`, `log`, `error`, `application/json`: the values that matter.
    Known(u8),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Name, Value)>,
}

const KNOWN: [&str; 7] = [
    "1.0",
    "event",
    "log",
    "error",
    "application/json",
    "text/plain",
    "application/cloudevents+json; charset=utf-8",
];

fuzz_target!(|input: Input| {
    let headers = input
        .headers
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Attribute(a) => format!("ce_{}", format!("{a:?}").to_ascii_lowercase()),
                Name::Extension(s) => format!("ce_{s}"),
                Name::ContentType => "content-type".to_owned(),
                Name::Other(s) => s,
            };
            let value = match value {
                Value::Known(i) => KNOWN[usize::from(i) % KNOWN.len()].as_bytes().to_vec(),
                Value::Text(s) => s.into_bytes(),
                Value::Bytes(b) => b,
            };
            (name.into(), value.into())
        })
        .collect();
    let record = KafkaRecord {
        key: input.key,
        value: input.value,
        headers,
    };
    if let Ok(event) = from_record(&record) {
        // What was read payload-wise is what the record carried; an empty value is no data.
        assert_eq!(
            event.data.as_ref().map(|d| d.as_bytes()),
            record.value.as_deref().filter(|v| !v.is_empty())
        );
        check_binary_mode(&event);
    }
});
