//! JSON Schemas per event type against the real three-broker cluster: versions registered
//! through the admin API, valid events written with the version in `dataschema`, invalid
//! ones refused with the validation error (per event in a batch) or — by the service's
//! policy — written to its error topic with the error attached, the audit log of it all,
//! the bounds, and a second proxy on the same store following a change.

use std::time::{Duration, Instant};

use courier_e2e::{TestProxy, event_json, header, read_by_id, unique};
use rdkafka::message::Message;
use serde_json::{Value, json};

const TOKEN: &str = "admin-s3cret";

async fn call(
    proxy: &TestProxy,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    courier_e2e::admin_call(proxy, TOKEN, method, path, body).await
}

fn order(id: &str, source: &str, data: Value) -> Value {
    event_json(id, source, json!({"type": "order.placed", "data": data}))
}

fn v1() -> Value {
    json!({"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}})
}

fn v2() -> Value {
    json!({
        "type": "object",
        "required": ["amount", "currency"],
        "properties": {"amount": {"type": "number"}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}
    })
}

async fn start() -> TestProxy {
    let proxy = TestProxy::start(|c| c.admin.token = Some(TOKEN.into())).await;
    proxy.wait_serving().await;
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_checked_against_the_version_they_name_or_the_latest() {
    let proxy = start().await;
    let service = unique("schemas");
    let source = format!("/{service}/api");
    let path = format!("/admin/api/schemas/{service}/order.placed");
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        &path,
        Some(json!({"schema": v1()})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    let uri_v1 = format!("courier:schema/{service}/order.placed/1");
    assert_eq!(body["dataschema"], uri_v1);
    let (status, body) = call(
        &proxy,
        reqwest::Method::POST,
        &path,
        Some(json!({"schema": v2()})),
    )
    .await;
    assert_eq!((status, body["version"].clone()), (201, json!(2)), "{body}");
    let uri_v2 = format!("courier:schema/{service}/order.placed/2");

    // Without dataschema: the latest version, named on the record.
    let (status, body) = proxy
        .publish(
            "/v1/events",
            &order(
                "latest-ok",
                &source,
                json!({"amount": 5, "currency": "EUR"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // With dataschema: that version (v1 needs no currency).
    let mut named = order("v1-ok", &source, json!({"amount": 5}));
    named["dataschema"] = json!(uri_v1);
    let (status, body) = proxy.publish("/v1/events", &named).await;
    assert_eq!(status, 200, "{body}");
    // Invalid against the latest: 422 with the validation error.
    let (status, problem) = proxy
        .publish(
            "/v1/events",
            &order("latest-bad", &source, json!({"amount": "five"})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:courier:problem:schema-violation");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(&uri_v2) && detail.contains("/amount") && detail.contains("currency"),
        "{detail}"
    );
    // An unknown version: 422 unknown-schema.
    let mut unknown = order("v9", &source, json!({"amount": 5}));
    unknown["dataschema"] = json!(format!("courier:schema/{service}/order.placed/9"));
    let (status, problem) = proxy.publish("/v1/events", &unknown).await;
    assert_eq!(
        (status, problem["type"].clone()),
        (422, json!("urn:courier:problem:unknown-schema")),
        "{problem}"
    );
    // Another type of the service: not checked, as before.
    let other = event_json("other-type", &source, json!({"data": "anything"}));
    assert_eq!(proxy.publish("/v1/events", &other).await.0, 200);

    // A batch: a status per event, the valid ones written.
    let batch = json!([
        order("batch-ok", &source, json!({"amount": 1, "currency": "USD"})),
        order(
            "batch-bad",
            &source,
            json!({"amount": 1, "currency": "usd"})
        ),
        order(
            "batch-ok-2",
            &source,
            json!({"amount": 2, "currency": "JPY"})
        ),
    ]);
    let (status, body) = proxy.publish("/v1/events", &batch).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(
        (body["delivered"].clone(), body["invalid"].clone()),
        (json!(2), json!(1)),
        "{body}"
    );
    let bad = &body["results"][1];
    assert_eq!(
        (bad["code"].clone(), bad["status"].clone()),
        (json!(422), json!("invalid"))
    );
    assert_eq!(
        bad["problem"]["type"],
        "urn:courier:problem:schema-violation"
    );
    assert!(
        bad["problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("/currency"),
        "{bad}"
    );

    let topic = format!("{service}.events");
    let (seen, _) = read_by_id(&[&topic], 5, Duration::from_secs(30)).await;
    assert_eq!(
        header(&seen["latest-ok"], "ce_dataschema").as_deref(),
        Some(uri_v2.as_str())
    );
    assert_eq!(
        header(&seen["v1-ok"], "ce_dataschema").as_deref(),
        Some(uri_v1.as_str())
    );
    assert_eq!(
        header(&seen["batch-ok"], "ce_dataschema").as_deref(),
        Some(uri_v2.as_str())
    );
    assert_eq!(header(&seen["other-type"], "ce_dataschema"), None);
    for refused in ["latest-bad", "v9", "batch-bad"] {
        assert!(
            !seen.contains_key(refused),
            "{refused} was refused and not written"
        );
    }

    // The audit log has both registrations, by the operator who made them.
    let (_, log) = call(
        &proxy,
        reqwest::Method::GET,
        "/admin/api/audit?action=schema.",
        None,
    )
    .await;
    let mine: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == format!("{service}/order.placed"))
        .collect();
    assert_eq!(mine.len(), 2, "{log}");
    assert!(
        mine.iter()
            .all(|e| e["action"] == "schema.register" && e["actor"] == "alice")
    );
    assert_eq!(mine[0]["after"]["version"], 2);
    assert_eq!(mine[0]["after"]["schema"], v2());

    // Listed, read back, deleted (audited), and then no longer checked.
    let (_, list) = call(&proxy, reqwest::Method::GET, "/admin/api/schemas", None).await;
    let listed = list["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["service"] == service.as_str())
        .unwrap();
    assert_eq!(
        (listed["versions"].clone(), listed["latest"].clone()),
        (json!([1, 2]), json!(2))
    );
    let (status, one) = call(&proxy, reqwest::Method::GET, &format!("{path}/1"), None).await;
    assert_eq!((status, one["schema"].clone()), (200, v1()));
    let (status, body) = call(&proxy, reqwest::Method::DELETE, &path, None).await;
    assert_eq!((status, body["deleted"].clone()), (200, json!(2)), "{body}");
    let (status, _) = proxy
        .publish(
            "/v1/events",
            &order("after-delete", &source, json!({"amount": "x"})),
        )
        .await;
    assert_eq!(status, 200, "no schema: not checked");
    let (_, log) = call(
        &proxy,
        reqwest::Method::GET,
        "/admin/api/audit?action=schema.delete",
        None,
    )
    .await;
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["target"] == format!("{service}/order.placed")),
        "{log}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_topic_policy_keeps_invalid_events_with_their_error() {
    let proxy = start().await;
    let service = unique("schemaerr");
    let source = format!("/{service}");
    let path = format!("/admin/api/schemas/{service}/order.placed");
    assert_eq!(
        call(
            &proxy,
            reqwest::Method::POST,
            &path,
            Some(json!({"schema": v2()}))
        )
        .await
        .0,
        201
    );
    let (status, body) = call(
        &proxy,
        reqwest::Method::PUT,
        &format!("/admin/api/schemas-policy/{service}"),
        Some(json!({"on_invalid": "error-topic"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["on_invalid"][&service], "error-topic");

    let batch = json!([
        order(
            "kept-valid",
            &source,
            json!({"amount": 1, "currency": "EUR"})
        ),
        order("kept-invalid", &source, json!({"amount": "lots"})),
    ]);
    let (status, body) = proxy.publish("/v1/events", &batch).await;
    assert_eq!(status, 200, "both accepted: {body}");
    let error_topic = format!("{service}.error.schema-violation");
    assert_eq!(body["results"][0]["topic"], format!("{service}.events"));
    assert_eq!(body["results"][1]["topic"], error_topic);

    let (seen, _) = read_by_id(&[&error_topic], 1, Duration::from_secs(30)).await;
    let record = &seen["kept-invalid"];
    assert_eq!(
        record.payload(),
        Some(&br#"{"amount":"lots"}"#[..]),
        "the data as sent"
    );
    assert_eq!(header(record, "ce_category").as_deref(), Some("error"));
    assert_eq!(
        header(record, "ce_errortype").as_deref(),
        Some("schema-violation")
    );
    assert_eq!(header(record, "ce_type").as_deref(), Some("order.placed"));
    assert_eq!(
        header(record, "ce_dataschema"),
        Some(format!("courier:schema/{service}/order.placed/1"))
    );
    let error = header(record, "ce_schemaviolation").unwrap();
    assert!(
        error.contains("/amount") && error.contains("currency"),
        "{error}"
    );

    let (_, log) = call(
        &proxy,
        reqwest::Method::GET,
        "/admin/api/audit?action=schema.policy",
        None,
    )
    .await;
    let entry = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == service.as_str())
        .unwrap();
    assert_eq!(entry["before"]["on_invalid"], "reject");
    assert_eq!(entry["after"]["on_invalid"], "error-topic");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_out_of_bounds_or_invalid_are_refused_and_audited() {
    let proxy = start().await;
    let service = unique("schemabounds");
    let path = format!("/admin/api/schemas/{service}/big");
    let big = json!({"type": "object", "description": "x".repeat(70 * 1024)});
    let (status, problem) = call(
        &proxy,
        reqwest::Method::POST,
        &path,
        Some(json!({"schema": big})),
    )
    .await;
    assert_eq!(status, 413, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("65536"),
        "{problem}"
    );
    for (schema, why) in [
        (json!({"type": "nonsense"}), "not a JSON Schema"),
        (
            json!({"$ref": "http://127.0.0.1:9/x.json"}),
            "refers outside itself",
        ),
        (json!([1]), "not an object"),
    ] {
        let (status, problem) = call(
            &proxy,
            reqwest::Method::POST,
            &path,
            Some(json!({"schema": schema})),
        )
        .await;
        assert_eq!(status, 400, "{why}: {problem}");
    }
    let (status, _) = call(
        &proxy,
        reqwest::Method::POST,
        "/admin/api/schemas/Not_A_Service/t",
        Some(json!({"schema": {}})),
    )
    .await;
    assert_eq!(status, 400);
    let (_, list) = call(&proxy, reqwest::Method::GET, "/admin/api/schemas", None).await;
    assert!(
        !list["types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["service"] == service.as_str())
    );
    let (_, log) = call(
        &proxy,
        reqwest::Method::GET,
        "/admin/api/audit?action=schema.register",
        None,
    )
    .await;
    let refusals: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == format!("{service}/big"))
        .collect();
    assert_eq!(refusals.len(), 4, "{log}");
    assert!(refusals.iter().all(|e| e["outcome"] != "ok"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_sharing_the_store_follows_a_new_schema() {
    let first = start().await;
    let url = first.config.dlq.url.clone();
    let second = TestProxy::start(|c| {
        c.admin.token = Some(TOKEN.into());
        c.dlq.url = url;
    })
    .await;
    second.wait_serving().await;
    let service = unique("schemafleet");
    let source = format!("/{service}");
    let path = format!("/admin/api/schemas/{service}/order.placed");
    assert_eq!(
        call(
            &first,
            reqwest::Method::POST,
            &path,
            Some(json!({"schema": v1()}))
        )
        .await
        .0,
        201
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = second
            .publish("/v1/events", &order(&unique("f"), &source, json!({})))
            .await;
        if status == 422 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second proxy never checked the new schema"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    second.stop().await;
    first.stop().await;
}
