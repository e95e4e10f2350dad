//! The OpenAPI document at `/openapi.json`: it parses, is OpenAPI 3.1, names every route of
//! the API, and every operation it names is served by the router (none falls through to the
//! "no such endpoint" fallback).

use courier_e2e::{TestProxy, http};
use serde_json::Value;

/// Every route of the API (the admin page's HTML and assets aside), as the README lists it.
const ROUTES: [(&str, &str); 26] = [
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
