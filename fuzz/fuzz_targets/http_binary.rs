//! The CloudEvents HTTP binary mode (`ce-*` headers, body as data): never a panic; an accepted
//! event satisfies the envelope's invariants and bounds, carries the body as its data, and
//! maps onto a Kafka record and back losslessly.
#![no_main]

use arbitrary::Arbitrary;
use courier_fuzz::{check_binary_mode, check_event};
use courier_shared::Data;
use courier_shared::envelope::{MAX_ID_LEN, MAX_NAME_LEN, MAX_TEXT_LEN};
use courier_shared::http_binding::from_http_binary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Name {
    Attribute(u8),
    Extension(String),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Known(u8),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(Name, Value)>,
    content_type: Option<Value>,
    body: Vec<u8>,
}

const ATTRIBUTES: [&str; 12] = [
    "ce-specversion",
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-subject",
    "ce-time",
    "ce-dataschema",
    "ce-category",
    "ce-errortype",
    "ce-partitionkey",
    "CE-Id",
    "ce-data",
];

const KNOWN: [&str; 9] = [
    "1.0",
    "/billing",
    "error",
    "application/json",
    "text/plain",
    "2025-01-02T03:04:05Z",
    "https://example.com/s",
    "caf%C3%A9",
    "%ZZ",
];

fn text(v: Value) -> Vec<u8> {
    match v {
        Value::Known(i) => KNOWN[usize::from(i) % KNOWN.len()].as_bytes().to_vec(),
        Value::Text(s) => s.into_bytes(),
        Value::Bytes(b) => b,
    }
}

fuzz_target!(|input: Input| {
    let headers: Vec<(String, Vec<u8>)> = input
        .headers
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Attribute(i) => ATTRIBUTES[usize::from(i) % ATTRIBUTES.len()].to_owned(),
                Name::Extension(s) => format!("ce-{s}"),
                Name::Other(s) => s,
            };
            (name, text(value))
        })
        .collect();
    let content_type = input
        .content_type
        .map(|v| String::from_utf8_lossy(&text(v)).into_owned());
    let parsed = from_http_binary(
        headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        content_type.as_deref(),
        &input.body,
    );
    if let Ok(event) = parsed {
        check_event(&event);
        assert!(event.id.len() <= MAX_ID_LEN && event.ty.len() <= MAX_NAME_LEN);
        assert!(event.source.len() <= MAX_TEXT_LEN);
        match &event.data {
            None => assert!(input.body.is_empty()),
            // JSON data is the body's value: serde_json leaves the whitespace around it out.
            Some(Data::Json(raw)) => assert_eq!(raw.get().as_bytes(), input.body.trim_ascii()),
            Some(data) => assert_eq!(data.as_bytes(), input.body.as_slice()),
        }
        check_binary_mode(&event);
    }
});
