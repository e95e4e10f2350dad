//! Authentication and authorisation against the real cluster: per-service API keys made
//! through the admin API (stored hashed), the service identity taken from the key, the topic
//! policy's ownership and ACL for that service, the admin API behind its own credential, and
//! every refusal counted — while the next valid request is served as usual.

use std::time::{Duration, Instant};

use courier_e2e::{TestProxy, event_json, http, read_by_id, unique};
use courier_proxy::config::ConfigKey;
use reqwest::Method;
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-token";

async fn proxy(tweak: impl FnOnce(&mut courier_proxy::Config)) -> TestProxy {
    TestProxy::start(|c| {
        c.auth.enabled = true;
        c.admin.token = Some(ADMIN.into());
        tweak(c);
    })
    .await
}

/// An admin API call with the admin token.
async fn admin(proxy: &TestProxy, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = http()
        .request(method, proxy.url(path))
        .bearer_auth(ADMIN)
        .header("x-courier-actor", "auth-test");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A new key for `service`: (id, key).
async fn create_key(proxy: &TestProxy, service: &str) -> (String, String) {
    let (status, body) = admin(
        proxy,
        Method::POST,
        "/admin/api/keys",
        Some(json!({"service": service, "label": "auth test"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ck_"), "{key}");
    assert_eq!(body["api_key"]["service"], service);
    assert_eq!(
        body["api_key"]["hint"].as_str().unwrap(),
        format!("ck_…{}", &key[key.len() - 4..])
    );
    (body["api_key"]["id"].as_str().unwrap().to_owned(), key)
}

/// Publishes `body` (one event or a batch) with `key` as a bearer token, if any.
async fn publish(
    proxy: &TestProxy,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = proxy.publish_request(path, body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn assert_401(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, what: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["type"], "urn:courier:problem:unauthorized", "{what}");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm="),
        "{what}: {challenge}"
    );
}

/// The value of one sample of `/metrics`, 0 when absent.
async fn metric(proxy: &TestProxy, name_and_labels: &str) -> f64 {
    let text = http()
        .get(proxy.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn publishing_needs_a_valid_key_and_speaks_for_its_service_only() {
    let svc = unique("auth-");
    let other = unique("other-");
    let partner = unique("partner-");
    let partner_topic = format!("{partner}.inbox");
    let proxy = proxy(|c| {
        c.topics.acl = vec![courier_shared::AclEntry {
            service: svc.clone(),
            topics: vec![format!("{partner}.in*")],
        }];
    })
    .await;
    let (_, key) = create_key(&proxy, &svc).await;
    let event = |id: &str, source: &str| event_json(id, source, json!({}));
    let own = event(&unique("e-"), &format!("/{svc}"));

    // No key, a wrong one, the admin token: 401 with a challenge, nothing accepted.
    let (status, headers, body) = publish(&proxy, "/v1/events", None, &own).await;
    assert_401(status, &headers, &body, "no key");
    let wrong = format!("ck_{}", "A".repeat(43));
    let (status, headers, body) = publish(&proxy, "/v1/events", Some(&wrong), &own).await;
    assert_401(status, &headers, &body, "a wrong key");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let (status, headers, body) = publish(&proxy, "/v1/events", Some(ADMIN), &own).await;
    assert_401(status, &headers, &body, "the admin token");

    // The key of the event's own service: delivered to its topic.
    let (status, _, body) = publish(&proxy, "/v1/events", Some(&key), &own).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["topic"], format!("{svc}.events"));
    // `X-Courier-Key` does as well as `Authorization`.
    let response = http()
        .post(proxy.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .header("x-courier-key", &key)
        .body(event(&unique("e-"), &format!("/{svc}")).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Spoofing another service's source: refused per event, the honest one delivered.
    let batch = json!([
        event(&unique("e-"), &format!("/{svc}/api")),
        event(&unique("e-"), &format!("/{other}")),
    ]);
    let (status, _, body) = publish(&proxy, "/v1/events", Some(&key), &batch).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["results"][0]["status"], "delivered", "{body}");
    assert_eq!(body["results"][1]["code"], 403, "{body}");
    assert_eq!(
        body["results"][1]["problem"]["type"],
        "urn:courier:problem:source-not-allowed"
    );
    let (status, _, body) = publish(
        &proxy,
        "/v1/events",
        Some(&key),
        &event(&unique("e-"), &format!("https://{other}.internal/x")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:courier:problem:source-not-allowed");

    // Another service's topic: refused by ownership (the topic need not even exist).
    let (status, _, body) = publish(
        &proxy,
        &format!("/v1/topics/{other}.events/events"),
        Some(&key),
        &own,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:courier:problem:topic-not-allowed");

    // A topic the ACL opens to this service: accepted, and in Kafka.
    let (status, body) = admin(
        &proxy,
        Method::POST,
        "/admin/api/topics",
        Some(json!({"name": partner_topic})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = unique("acl-");
    let (status, _, body) = publish(
        &proxy,
        &format!("/v1/topics/{partner_topic}/events"),
        Some(&key),
        &event(&id, &format!("/{svc}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (read, _) = read_by_id(&[&partner_topic], 1, Duration::from_secs(60)).await;
    assert!(
        read.contains_key(&id),
        "the ACL-allowed event is not in Kafka"
    );
    // The ACL is this service's only: the partner topic's neighbour stays closed.
    let (status, _, body) = publish(
        &proxy,
        &format!("/v1/topics/{partner}.out/events"),
        Some(&key),
        &own,
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // Every refusal is counted by reason.
    assert!(
        metric(
            &proxy,
            r#"courier_auth_refused_total{service="unknown",reason="unauthenticated"}"#
        )
        .await
            >= 3.0
    );
    let spoofed =
        format!(r#"courier_auth_refused_total{{service="{svc}",reason="spoofed_source"}}"#);
    assert_eq!(metric(&proxy, &spoofed).await, 2.0);
    let acl = format!(r#"courier_auth_refused_total{{service="{svc}",reason="acl"}}"#);
    assert_eq!(metric(&proxy, &acl).await, 2.0);

    // And the next valid request is served.
    let (status, _, body) = publish(
        &proxy,
        "/v1/events",
        Some(&key),
        &event(&unique("e-"), &format!("/{svc}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    proxy.stop().await;
}

#[tokio::test]
async fn revoked_and_rotated_keys_are_refused_and_only_hashes_are_stored() {
    let svc = unique("keys-");
    let proxy = proxy(|_| {}).await;
    let ok = |key: String| {
        let proxy = &proxy;
        let svc = svc.clone();
        async move {
            let e = event_json(&unique("e-"), &format!("/{svc}"), json!({}));
            let (status, headers, body) = publish(proxy, "/v1/events", Some(&key), &e).await;
            (status, headers, body)
        }
    };

    // Revoked: refused from the next request on.
    let (revoked_id, revoked) = create_key(&proxy, &svc).await;
    assert_eq!(ok(revoked.clone()).await.0, 200);
    let (status, body) = admin(
        &proxy,
        Method::POST,
        &format!("/admin/api/keys/{revoked_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["api_key"]["state"], "revoked");
    let (status, headers, body) = ok(revoked.clone()).await;
    assert_401(status, &headers, &body, "a revoked key");
    let (status, _) = admin(
        &proxy,
        Method::POST,
        &format!("/admin/api/keys/{revoked_id}/rotate"),
        None,
    )
    .await;
    assert_eq!(status, 409, "a revoked key is not rotated back to life");

    // Rotated: the old secret is refused at once, the new one accepted.
    let (id, old) = create_key(&proxy, &svc).await;
    let (status, body) = admin(
        &proxy,
        Method::POST,
        &format!("/admin/api/keys/{id}/rotate"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let new = body["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let (status, headers, body) = ok(old.clone()).await;
    assert_401(status, &headers, &body, "a rotated-out key");
    assert_eq!(ok(new.clone()).await.0, 200);

    // Rotated with a grace period: both secrets work until it ends.
    let (status, body) = admin(
        &proxy,
        Method::POST,
        &format!("/admin/api/keys/{id}/rotate"),
        Some(json!({"grace_secs": 600})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let newest = body["key"].as_str().unwrap().to_owned();
    assert!(body["api_key"]["previous_until_ms"].is_i64(), "{body}");
    assert_eq!(
        ok(new.clone()).await.0,
        200,
        "the previous secret in its grace"
    );
    assert_eq!(ok(newest.clone()).await.0, 200);
    // Revoking ends the grace too.
    admin(
        &proxy,
        Method::POST,
        &format!("/admin/api/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(ok(new.clone()).await.0, 401);
    assert_eq!(ok(newest.clone()).await.0, 401);

    // The list shows keys without secrets or hashes; revoked ones on request.
    let (_, active) = admin(&proxy, Method::GET, "/admin/api/keys", None).await;
    assert!(
        !active["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["service"] == svc),
        "{active}"
    );
    let (_, all) = admin(&proxy, Method::GET, "/admin/api/keys?revoked=true", None).await;
    let mine: Vec<&Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["service"] == svc)
        .collect();
    assert_eq!(mine.len(), 2, "{all}");

    // Every change is in the audit log, and no secret is.
    let (_, audit) = admin(&proxy, Method::GET, "/admin/api/audit?action=key.", None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["key.create", "key.rotate", "key.revoke"] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    let listed = format!("{all}{audit}");
    let secrets = [&revoked, &old, &new, &newest];
    for secret in secrets {
        assert!(!listed.contains(&secret[3..]), "a secret is shown");
    }

    // The database holds each key's SHA-256, never the key: read its files as they are.
    let rows = proxy.dlq().await.api_keys(true).await.unwrap();
    let row = rows.iter().find(|r| r.id == revoked_id).unwrap();
    assert_eq!(
        row.key_hash,
        courier_proxy::auth::hex(&courier_proxy::auth::hash(&revoked))
    );
    let path = proxy.config.dlq.url.strip_prefix("sqlite:").unwrap();
    let dir = std::path::Path::new(path).parent().unwrap();
    let mut bytes = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let file = file.unwrap().path();
        if file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("dlq.db")
        {
            bytes.extend(std::fs::read(&file).unwrap());
        }
    }
    let raw = String::from_utf8_lossy(&bytes);
    assert!(
        raw.contains(&row.key_hash),
        "the scan does not see the table"
    );
    for secret in secrets {
        assert!(
            !raw.contains(&secret[3..]),
            "a clear key is in the database"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn the_admin_api_has_its_own_credential() {
    let svc = unique("adm-");
    let proxy = proxy(|_| {}).await;
    let (_, key) = create_key(&proxy, &svc).await;
    for (what, token) in [
        ("no credential", None),
        ("a wrong token", Some("not-the-token")),
        ("a publish key", Some(key.as_str())),
    ] {
        let mut request = http().get(proxy.url("/admin/api/keys"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap();
        assert_401(status, &headers, &body, what);
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("courier-admin")
        );
    }
    // Creating a key for something that is not a service name is refused.
    let (status, body) = admin(
        &proxy,
        Method::POST,
        "/admin/api/keys",
        Some(json!({"service": "Not A Service"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = admin(&proxy, Method::GET, "/admin/api/keys", None).await;
    assert_eq!(status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn proxies_on_one_store_follow_each_others_keys() {
    let svc = unique("follow-");
    let first = proxy(|_| {}).await;
    // One SQLite file for both: the second opens it once the first has migrated it.
    first.wait_serving().await;
    let url = first.config.dlq.url.clone();
    let second = proxy(|c| c.dlq.url = url).await;
    second.wait_serving().await;
    let (id, key) = create_key(&first, &svc).await;
    let status_on = |proxy: &TestProxy| {
        let request = http()
            .post(proxy.url("/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .bearer_auth(&key)
            .body(event_json(&unique("e-"), &format!("/{svc}"), json!({})).to_string());
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Within a few seconds the other proxy knows the key…
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_on(&second).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the second proxy never took the key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …and that it was revoked (the first at once).
    admin(
        &first,
        Method::POST,
        &format!("/admin/api/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status_on(&first).await, 401);
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_on(&second).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the second proxy never saw the revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn keys_of_the_configuration_file_work_without_a_store() {
    let svc = unique("cfg-");
    let key = courier_proxy::auth::generate();
    let proxy = proxy(|c| {
        c.dlq.enabled = false;
        c.auth.keys = vec![ConfigKey {
            service: svc.clone(),
            sha256: courier_proxy::auth::hex(&courier_proxy::auth::hash(&key)),
            label: "from the file".into(),
        }];
    })
    .await;
    let e = event_json(&unique("e-"), &format!("/{svc}"), json!({}));
    let (status, _, body) = publish(&proxy, "/v1/events", Some(&key), &e).await;
    assert_eq!(status, 200, "{body}");
    let (status, headers, body) = publish(&proxy, "/v1/events", None, &e).await;
    assert_401(status, &headers, &body, "no key");
    proxy.stop().await;

    // Off only when said so: then no key is needed (and none checked).
    let open = TestProxy::start(|c| c.auth.enabled = false).await;
    let (status, _, body) = publish(&open, "/v1/events", None, &e).await;
    assert_eq!(status, 200, "{body}");
    open.stop().await;
}

#[tokio::test]
async fn the_client_sends_its_key() {
    let svc = unique("client-");
    let proxy = proxy(|_| {}).await;
    let (_, key) = create_key(&proxy, &svc).await;
    let client = courier::Client::builder(svc.as_str())
        .proxy(proxy.url(""))
        .api_key(key)
        .build()
        .unwrap();
    let delivery = client
        .publish_and_wait(courier::Event::new("auth.checked"))
        .await
        .unwrap();
    assert_eq!(delivery.topic, format!("{svc}.events"));
    client.shutdown().await;
    // Without the key the proxy refuses, and the client reports it instead of retrying.
    let keyless = courier::Client::builder(svc.as_str())
        .proxy(proxy.url(""))
        .retry_for(Duration::from_secs(20))
        .build()
        .unwrap();
    let refused = keyless
        .publish_and_wait(courier::Event::new("auth.checked"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    keyless.shutdown().await;
    proxy.stop().await;
}

/// `dlq.enabled = false` turns off the 202 path only: keys made through the admin API, the
/// audit log (and the policy) still live in the store, and an event Kafka cannot take is
/// refused with 503, not stored.
#[tokio::test]
async fn without_the_202_path_keys_and_the_audit_log_still_work() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let svc = unique("no202-");
    let proxy = proxy(|c| {
        c.dlq.enabled = false;
        c.kafka.bootstrap_servers = dead.to_string();
        c.kafka.request_timeout_ms = 500;
        c.delivery.ack_timeout_ms = 500;
    })
    .await;
    let (id, key) = create_key(&proxy, &svc).await;
    let (_, audit) = admin(&proxy, Method::GET, "/admin/api/audit?action=key.", None).await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "key.create" && e["target"].as_str() == Some(id.as_str())),
        "{audit}"
    );
    let e = event_json(&unique("e-"), &format!("/{svc}"), json!({}));
    let (status, headers, body) = publish(&proxy, "/v1/events", Some(&key), &e).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    let (pending, parked) = proxy.dlq().await.counts().await.unwrap();
    assert_eq!(
        (pending, parked),
        (0, 0),
        "nothing stored with dlq.enabled = false"
    );
    proxy.stop().await;
}
