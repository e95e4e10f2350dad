//! The OpenAPI document at `/openapi.json`: it parses, is OpenAPI 3.1, names every route of
//! the API, and every operation it names is served by the router (none falls through to the
//! "no such endpoint" fallback).

use courier_e2e::{TestProxy, http};
use serde_json::Value;

/// Every route of the API (the admin page's HTML and assets aside), as the README lists it.
const ROUTES: [(&str, &str); 32] = [
    ("post", "/v1/events"),
    ("post", "/v1/topics/{topic}/events"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/admin/api/topics"),
    ("post", "/admin/api/topics"),
    ("get", "/admin/api/topics/{name}"),
    ("delete", "/admin/api/topics/{name}"),
    ("patch", "/admin/api/topics/{name}/configs"),
    ("post", "/admin/api/topics/{name}/delete-token"),
    ("get", "/admin/api/policy"),
    ("put", "/admin/api/policy"),
    ("post", "/admin/api/policy/preview"),
    ("get", "/admin/api/dlq"),
    ("get", "/admin/api/dlq/counts"),
    ("get", "/admin/api/dlq/{seq}"),
    ("post", "/admin/api/dlq/replay"),
    ("post", "/admin/api/dlq/discard"),
    ("get", "/admin/api/keys"),
    ("post", "/admin/api/keys"),
    ("post", "/admin/api/keys/{id}/rotate"),
    ("post", "/admin/api/keys/{id}/revoke"),
    ("get", "/admin/api/schemas"),
    ("get", "/admin/api/schemas/{service}/{type}"),
    ("post", "/admin/api/schemas/{service}/{type}"),
    ("delete", "/admin/api/schemas/{service}/{type}"),
    ("get", "/admin/api/schemas/{service}/{type}/{version}"),
    ("put", "/admin/api/schemas-policy/{service}"),
    ("get", "/admin/api/stats"),
    ("get", "/admin/api/audit"),
];

#[tokio::test]
async fn the_document_lists_every_route_and_the_router_serves_each() {
    let proxy = TestProxy::start(|c| {
        c.auth.enabled = true;
        c.admin.token = Some("openapi-admin".into());
    })
    .await;
    let response = http().get(proxy.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(
        documented, expected,
        "the document and the API's routes differ"
    );

    // Operation ids name one operation each (OpenAPI requires it; schemathesis selects by them).
    let mut ids: Vec<&str> = documented
        .iter()
        .map(|(m, p)| {
            paths[p.as_str()][m.as_str()]["operationId"]
                .as_str()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids repeat: {ids:?}");

    for (method, path) in &documented {
        let operation = &paths[path.as_str()][method.as_str()];
        // Errors are problem documents, and each operation says who may call it.
        assert!(
            operation["responses"]["default"].is_object(),
            "{method} {path}"
        );
        if path.starts_with("/admin/") {
            assert!(
                operation["security"][0]["admin_token"].is_array(),
                "{method} {path}"
            );
        }
        if path.starts_with("/v1/") {
            assert!(
                operation["security"][0]["api_key"].is_array(),
                "{method} {path}"
            );
        }
        let concrete = path
            .replace("{topic}", "openapi.none")
            .replace("{name}", "openapi.none")
            .replace("{seq}", "1")
            .replace("{id}", "key-none");
        let answer = http()
            .request(method.to_uppercase().parse().unwrap(), proxy.url(&concrete))
            .bearer_auth("openapi-admin")
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path} is not routed: {body}");
        assert!(
            !body.contains("no such endpoint"),
            "{method} {path} is not routed: {body}"
        );
    }
    // Found by schemathesis: a sequence number out of range was answered in plain text.
    let answer = http()
        .get(proxy.url("/admin/api/dlq/9223372036854775808"))
        .bearer_auth("openapi-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(
        answer.headers()["content-type"],
        courier_shared::problem::PROBLEM_JSON
    );
    proxy.stop().await;
}

/// What schemathesis found in the admin API, each answered as the document now says.
#[tokio::test]
async fn the_admin_api_answers_as_its_document_says() {
    let proxy = TestProxy::start(|c| c.admin.token = Some("openapi-admin".into())).await;
    let call = |method: &str, path: &str, body: Option<&str>| {
        let mut request = http()
            .request(method.parse().unwrap(), proxy.url(path))
            .bearer_auth("openapi-admin");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let content_type = answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            (status, content_type, body)
        }
    };
    let cases: [(&str, &str, Option<&str>, u16); 14] = [
        // An integral number is an integer however it is written (JSON Schema's reading).
        (
            "POST",
            "/admin/api/dlq/replay",
            Some(r#"{"seqs": [4272245853099774.0, 2e0]}"#),
            200,
        ),
        (
            "POST",
            "/admin/api/dlq/replay",
            Some(r#"{"seqs": [1.5]}"#),
            400,
        ),
        // `seqs` or a filter, exactly one; a filter is an object, not an array of its fields.
        ("POST", "/admin/api/dlq/replay", Some("{}"), 400),
        (
            "POST",
            "/admin/api/dlq/replay",
            Some(r#"{"seqs": []}"#),
            400,
        ),
        (
            "POST",
            "/admin/api/dlq/replay",
            Some(r#"{"seqs": [1], "filter": {}}"#),
            400,
        ),
        (
            "POST",
            "/admin/api/dlq/replay",
            Some(r#"{"filter": [null, null]}"#),
            400,
        ),
        (
            "POST",
            "/admin/api/dlq/replay",
            Some(r#"{"filter": {}, "seqs": null}"#),
            400,
        ),
        (
            "POST",
            "/admin/api/dlq/replay",
            Some(r#"{"filter": {"state": "parked"}}"#),
            200,
        ),
        // A body is an object.
        ("POST", "/admin/api/keys", Some(r#"["svc", "label"]"#), 400),
        // A discard's reason is not blank, Rust's whitespace included (U+0085).
        (
            "POST",
            "/admin/api/dlq/discard",
            Some("{\"seqs\": [1], \"reason\": \"\u{85}\"}"),
            400,
        ),
        (
            "POST",
            "/admin/api/dlq/discard",
            Some(r#"{"seqs": [1], "reason": "duplicate"}"#),
            200,
        ),
        // A service name as the document's pattern has it: no surrounding blanks.
        (
            "POST",
            "/admin/api/keys",
            Some(r#"{"service": " billing"}"#),
            400,
        ),
        // A confirmation token that is not the topic's is refused as such (403), not as a
        // malformed request.
        (
            "DELETE",
            "/admin/api/topics/openapi.none?confirm=1.x",
            None,
            403,
        ),
        ("DELETE", "/admin/api/topics/openapi.none", None, 400),
    ];
    for (method, path, body, expected) in cases {
        let (status, content_type, answer) = call(method, path, body).await;
        assert_eq!(status, expected, "{method} {path} {body:?}: {answer}");
        if status >= 400 {
            assert_eq!(
                content_type,
                courier_shared::problem::PROBLEM_JSON,
                "{method} {path}"
            );
        }
    }
    // A rotation's body is optional: none, or `null`, rotates without a grace period.
    let (status, _, created) = call(
        "POST",
        "/admin/api/keys",
        Some(r#"{"service": "openapi", "label": "rotation"}"#),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let rotate = format!(
        "/admin/api/keys/{}/rotate",
        created["api_key"]["id"].as_str().unwrap()
    );
    for body in [None, Some("null"), Some(r#"{"grace_secs": 60.0}"#)] {
        let (status, _, rotated) = call("POST", &rotate, body).await;
        assert_eq!(status, 200, "{body:?}: {rotated}");
        assert!(rotated["key"].as_str().unwrap().starts_with("ck_"));
        assert!(rotated["api_key"]["rotated_ms"].is_i64());
    }
    proxy.stop().await;
}
