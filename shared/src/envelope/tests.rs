use super::*;

fn ok(json: &str) -> Event {
    Event::from_json(json.as_bytes()).unwrap()
}

fn err(json: &str) -> EventError {
    Event::from_json(json.as_bytes()).unwrap_err()
}

#[test]
fn minimal_event_gets_defaults_and_an_id() {
    let e = ok(r#"{"specversion":"1.0","source":"/billing","type":"invoice.paid"}"#);
    assert_eq!(e.category, Category::Event);
    assert!(e.id_assigned);
    assert_eq!(uuid::Uuid::parse_str(&e.id).unwrap().get_version_num(), 7);
    assert!(e.data.is_none());
    assert!(e.datacontenttype.is_none());
}

#[test]
fn data_is_kept_byte_for_byte() {
    let e = ok(r#"{"specversion":"1.0","id":"a","source":"s","type":"t","data":{"b": [1, 2.50]}}"#);
    assert_eq!(e.data.unwrap().as_bytes(), br#"{"b": [1, 2.50]}"#);
    assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
}

#[test]
fn string_data_with_a_non_json_type_is_the_text_itself() {
    let e = ok(
        r#"{"specversion":"1.0","source":"s","type":"t","datacontenttype":"text/xml","data":"<much wow=\"xml\"/>"}"#,
    );
    assert_eq!(e.data.unwrap().as_bytes(), br#"<much wow="xml"/>"#);
}

#[test]
fn attribute_count_is_bounded() {
    let mut json = String::from(r#"{"specversion":"1.0","source":"s","type":"t""#);
    for i in 0..100 {
        json.push_str(&format!(r#","x{i}":"v""#));
    }
    json.push('}');
    assert!(matches!(err(&json), EventError::Shape(m) if m.contains("at most")));
}

#[test]
fn attribute_lengths_are_bounded() {
    let with = |name: &str, len: usize| {
        let v = serde_json::json!({"specversion": "1.0", "source": "/s", "type": "t",
            name: "x".repeat(len)});
        Event::from_json(v.to_string().as_bytes())
    };
    for (name, max) in [
        ("id", MAX_ID_LEN),
        ("type", MAX_NAME_LEN),
        ("source", MAX_TEXT_LEN),
        ("subject", MAX_TEXT_LEN),
        ("partitionkey", MAX_TEXT_LEN),
        ("errortype", MAX_NAME_LEN),
        ("region", MAX_TEXT_LEN),
    ] {
        assert!(with(name, max).is_ok(), "{name} at its limit");
        match with(name, max + 1) {
            Err(EventError::Invalid { name: n, reason }) => {
                assert_eq!(n, name);
                assert!(reason.contains(&format!("at most {max}")), "{reason}");
            }
            other => panic!("{name} over its limit: {other:?}"),
        }
    }
    // A 900,000-character id is refused like any other over the limit.
    assert!(with("id", 900_000).is_err());
}

#[test]
fn json_data_is_bounded_at_what_consumers_read() {
    let nested = |depth: usize| {
        format!(
            r#"{{"specversion":"1.0","source":"s","type":"t","data":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    assert!(Event::from_json(nested(MAX_DATA_DEPTH).as_bytes()).is_ok());
    let deep = err(&nested(MAX_DATA_DEPTH + 1));
    assert!(
        matches!(&deep, EventError::Invalid { name, reason } if name == "data" && reason.contains("deeper than 64")),
        "{deep:?}"
    );
    // What serde_json readers (the consumers) fail on is refused, not written.
    let e = err(&nested(100_000));
    assert!(matches!(e, EventError::Invalid { .. }), "{e:?}");
    let objects = format!(
        r#"{{"specversion":"1.0","source":"s","type":"t","data":{}1{}}}"#,
        r#"{"a":"#.repeat(MAX_DATA_DEPTH + 1),
        "}".repeat(MAX_DATA_DEPTH + 1)
    );
    assert!(err(&objects).to_string().contains("deeper than"));
    let huge = err(r#"{"specversion":"1.0","source":"s","type":"t","data":{"n":[1e400]}}"#);
    assert!(matches!(huge, EventError::Invalid { name, .. } if name == "data"));
    // Large integers and long decimals are numbers a double holds: accepted as sent.
    let e = ok(
        r#"{"specversion":"1.0","source":"s","type":"t","data":{"n":123456789012345678901234567890,"x":-0.1e-400}}"#,
    );
    assert!(e.data.unwrap().as_bytes().starts_with(br#"{"n":1234"#));
}

#[test]
fn errortype_implies_error_and_is_required_for_it() {
    let e = ok(r#"{"specversion":"1.0","source":"s","type":"t","errortype":"timeout"}"#);
    assert_eq!(e.category, Category::Error);
    assert_eq!(
        err(r#"{"specversion":"1.0","source":"s","type":"t","category":"error"}"#),
        EventError::Missing("errortype")
    );
    assert!(matches!(
        err(r#"{"specversion":"1.0","source":"s","type":"t","category":"log","errortype":"x"}"#),
        EventError::Invalid { name, .. } if name == "errortype"
    ));
}

#[test]
fn refusals_name_the_attribute() {
    assert_eq!(
        err(r#"{"source":"s","type":"t"}"#),
        EventError::Missing("specversion")
    );
    assert_eq!(
        err(r#"{"specversion":"1.0","type":"t"}"#),
        EventError::Missing("source")
    );
    assert_eq!(
        err(r#"{"specversion":"1.0","source":"s","type":"t","type":"u"}"#),
        EventError::Duplicate("type".into())
    );
    for (json, attr) in [
        (
            r#"{"specversion":"0.3","source":"s","type":"t"}"#,
            "specversion",
        ),
        (r#"{"specversion":"1.0","source":"s","type":5}"#, "type"),
        (
            r#"{"specversion":"1.0","source":"a b","type":"t"}"#,
            "source",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t","time":"yesterday"}"#,
            "time",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t","Bad":"x"}"#,
            "Bad",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t","ext":{"a":1}}"#,
            "ext",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t","ext":1.5}"#,
            "ext",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t","data_base64":"!!"}"#,
            "data_base64",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t","data":1,"data_base64":"AA=="}"#,
            "data_base64",
        ),
        (
            r#"{"specversion":"1.0","source":"s","type":"t","category":"metric"}"#,
            "category",
        ),
    ] {
        match err(json) {
            EventError::Invalid { name, .. } => assert_eq!(name, attr, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    }
}

/// Found by the `envelope` fuzz target: a body that is not UTF-8 was refused as an
/// invalid event (422) when serde saw a wrong shape before the bad bytes.
#[test]
fn a_body_that_is_not_utf8_is_a_syntax_error_whatever_its_shape() {
    for body in [
        &b"[\"\xff\"]"[..],
        b"{\"specversion\":1,\"x\":\"\xc3\"}",
        b"7\xff",
    ] {
        let e = Event::from_json(body).unwrap_err();
        assert!(e.is_syntax(), "{e}");
    }
    let e = Event::batch_from_json(b"{\"a\":\"\xff\"}").unwrap_err();
    assert!(e.is_syntax(), "{e}");
}

/// A number beyond `f64` is valid JSON, so an event carrying one is an invalid event
/// (422), not malformed JSON (400).
#[test]
fn a_huge_number_is_json_that_makes_an_invalid_event() {
    let e = err(r#"{"specversion":"1.0","source":"s","type":"t","n":1e400}"#);
    assert!(!e.is_syntax(), "{e}");
    let e = err("1e400");
    assert!(!e.is_syntax(), "{e}");
}

#[test]
fn syntax_and_shape_errors_are_told_apart() {
    assert!(err(r#"{"specversion":"1.0""#).is_syntax());
    assert!(err("not json").is_syntax());
    assert!(!err("[1,2]").is_syntax());
    assert!(!err("42").is_syntax());
}

#[test]
fn batches_validate_each_event() {
    let out = Event::batch_from_json(
        br#"[{"specversion":"1.0","source":"s","type":"t"}, {"source":"s"}, 3]"#,
    )
    .unwrap();
    assert!(out[0].is_ok());
    assert_eq!(out[1], Err(EventError::Missing("specversion")));
    assert!(matches!(out[2], Err(EventError::Shape(_))));
    assert!(
        Event::batch_from_json(b"{}")
            .unwrap_err()
            .to_string()
            .contains("sequence")
    );
    assert!(Event::batch_from_json(b"[").unwrap_err().is_syntax());
}

#[test]
fn ndjson_lines_are_independent() {
    let body = b"{\"specversion\":\"1.0\",\"source\":\"s\",\"type\":\"t\"}\n\n{oops\n  \n";
    let out = Event::batch_from_ndjson(body);
    assert_eq!(out.len(), 2);
    assert!(out[0].is_ok());
    assert!(out[1].as_ref().unwrap_err().is_syntax());
}

#[test]
fn attribute_names_with_escapes_are_the_same_names() {
    // Names are borrowed from the body unless they hold escapes; either way `id` is `id`.
    let e = Event::from_json(
        br#"{"specversion":"1.0","i\u0064":"x-1","source":"s","typ\u0065":"t","data":{"k":1}}"#,
    )
    .unwrap();
    assert_eq!((e.id.as_str(), e.ty.as_str()), ("x-1", "t"));
    assert_eq!(
        err(r#"{"specversion":"1.0","source":"s","type":"t","typ\u0065":"u"}"#),
        EventError::Duplicate("type".into())
    );
    assert_eq!(
        err(r#"{"specversion":"1.0","source":"s","type":"t","data":1,"d\u0061ta":2}"#),
        EventError::Duplicate("data".into())
    );
}

/// The one-pass read of a batch gives each element exactly what reading it alone gives, and
/// a batch it cannot read in one pass (an element that is not an object) is read element by
/// element with the same outcome.
#[test]
fn a_batch_is_read_as_its_elements_alone() {
    let elements = [
        r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","data":{"n":1}}"#,
        r#"{"specversion":"1.0","source":"/s"}"#,
        r#"{"specversion":"1.0","id":"b","source":"/s","type":"t","id":"c"}"#,
        r#"{"specversion":"1.0","id":"d","source":"/s","type":"t","data":[[[1e400]]]}"#,
        r#"{"specversion":"1.0","id":"e","source":"/s","type":"t","x\u0041":"y"}"#,
        r#"{"specversion":"1.0","id":"f","source":"/s","type":"t","category":"error"}"#,
    ];
    let alone: Vec<_> = elements
        .iter()
        .map(|e| Event::from_json(e.as_bytes()))
        .collect();
    let batch = format!("[{}]", elements.join(","));
    assert_eq!(Event::batch_from_json(batch.as_bytes()).unwrap(), alone);
    assert!(alone[0].is_ok() && alone.iter().any(Result::is_err));

    let with_scalars = format!("[{},7,\"x\",{}]", elements[0], elements[1]);
    let out = Event::batch_from_json(with_scalars.as_bytes()).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(out[0], alone[0]);
    assert!(matches!(&out[1], Err(EventError::Shape(_))), "{:?}", out[1]);
    assert!(matches!(&out[2], Err(EventError::Shape(_))), "{:?}", out[2]);
    assert_eq!(out[3], alone[1]);
}
