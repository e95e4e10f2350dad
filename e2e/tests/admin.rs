//! The topic policy and the admin API against the real three-broker cluster: ownership and
//! allow/deny refusals, policy changes in force on the next event (and on another proxy
//! sharing the store, and after a restart), topics created from templates and read back from
//! the brokers, configs altered, consumer-group lag, deletion with a confirmation token, and
//! the audit log of all of it.

use std::time::{Duration, Instant};

use courier_e2e::{TestProxy, bootstrap, event_json, http, unique};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

const TOKEN: &str = "admin-s3cret";

fn kafka_admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap()
}

/// A request to the admin API as operator `actor`; returns status and JSON body.
async fn call(
    proxy: &TestProxy,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    courier_e2e::admin_call(proxy, TOKEN, method, path, body).await
}

/// Topic configs as the brokers report them.
async fn broker_configs(topic: &str) -> std::collections::HashMap<String, String> {
    let configs = kafka_admin()
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let config = configs.into_iter().next().unwrap().unwrap();
    config
        .entries
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

fn partitions_of(topic: &str) -> usize {
    let metadata = kafka_admin()
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

async fn audit(proxy: &TestProxy, action: &str) -> Vec<Value> {
    let (status, v) = call(
        proxy,
        reqwest::Method::GET,
        &format!("/admin/api/audit?action={action}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["entries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_outside_its_prefix_is_refused_with_403() {
    let proxy = TestProxy::start(|c| {
        c.topics.shared = vec!["shared-audit.*".into()];
        c.admin.token = Some(TOKEN.into());
        c.kafka.statistics_interval_ms = 200;
    })
    .await;
    let service = unique("owner");
    let other = unique("intruder");
    let admin = kafka_admin();
    for topic in [format!("{service}.orders"), "shared-audit.trail".to_owned()] {
        let created = admin
            .create_topics(
                [&rdkafka::admin::NewTopic::new(
                    &topic,
                    1,
                    rdkafka::admin::TopicReplication::Fixed(3),
                )],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        assert!(
            matches!(
                &created[0],
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))
            ),
            "{created:?}"
        );
    }
    let path = format!("/v1/topics/{service}.orders/events");
    let (status, problem) = proxy
        .publish(
            &path,
            &event_json("spoof-1", &format!("/{other}"), json!({})),
        )
        .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["type"], "urn:courier:problem:topic-not-allowed");
    assert!(problem["detail"].as_str().unwrap().contains(&other));

    // Both topics were just created: the proxy may not see them in its metadata yet (404).
    let (owned, v) = proxy
        .publish_once_known(
            &path,
            &event_json("own-1", &format!("/{service}"), json!({})),
        )
        .await;
    assert_eq!(owned, 200, "the owner publishes to its own topic: {v}");
    let (shared, v) = proxy
        .publish_once_known(
            "/v1/topics/shared-audit.trail/events",
            &event_json(&unique("s-"), &format!("/{other}"), json!({})),
        )
        .await;
    assert_eq!(shared, 200, "a shared topic takes any service: {v}");

    // In a batch, only the foreign event is refused.
    let batch = json!([
        event_json("b-1", &format!("/{service}"), json!({})),
        event_json("b-2", &format!("/{other}"), json!({})),
    ]);
    let resp = http()
        .post(proxy.url(&path))
        .header("content-type", "application/cloudevents-batch+json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 207);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["results"][0]["code"], 200);
    assert_eq!(v["results"][1]["code"], 403);
    assert_eq!(
        v["results"][1]["problem"]["type"],
        "urn:courier:problem:topic-not-allowed"
    );
    // The same counts, by service and reason, in the Prometheus metrics; librdkafka's
    // statistics come every 200 ms here.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = http()
            .get(proxy.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("courier_kafka_broker_up{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        text.contains(&format!(
            r#"courier_events_refused_total{{service="{other}",reason="topic-not-allowed"}} 2"#
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        r#"courier_events_total{{service="{service}",topic="{service}.orders",outcome="delivered"}} 2"#
    )), "{text}");
    assert!(text.contains(r#"courier_http_requests_total{route="/v1/topics/{topic}/events",method="POST",status="403"} 1"#), "{text}");
    assert!(text.contains("courier_kafka_ack_seconds_count"), "{text}");
    assert!(
        text.contains(r#"courier_dlq_events{state="pending"} 0"#),
        "{text}"
    );
    assert_eq!(
        text.matches("courier_kafka_broker_up{").count(),
        3,
        "one line per broker of the three: {text}"
    );
    let stats = call(&proxy, reqwest::Method::GET, "/admin/api/stats", None)
        .await
        .1;
    assert!(stats["now"]["refused"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["now"]["delivered"].as_u64().unwrap() >= 2, "{stats}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_takes_effect_on_the_next_event_everywhere_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("shared.db").display());
    let settings = |c: &mut courier_proxy::Config| {
        c.dlq.url = url.clone();
        c.admin.token = Some(TOKEN.into());
    };
    let proxy = TestProxy::start(settings).await;
    let service = unique("policy");
    let log = |id: &str| event_json(id, &format!("/{service}"), json!({"category": "log"}));

    let (status, first) = proxy.publish("/v1/events", &log("l-1")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["topic"], format!("{service}.logs"));
    // A second proxy on the same store, started once the first has migrated it.
    let peer = TestProxy::start(settings).await;

    let (_, current) = call(&proxy, reqwest::Method::GET, "/admin/api/policy", None).await;
    assert_eq!(current["version"], 0);
    let mut policy = current["policy"].clone();
    policy["naming"]["log_template"] = json!("{service}.applogs");
    policy["templates"].as_array_mut().unwrap().insert(
        0,
        json!({"name": "logs", "pattern": "*.applogs", "partitions": 2, "retention_ms": 3_600_000}),
    );
    policy["deny"] = json!(["*.error.forbidden"]);

    let invalid = json!({"version": 0, "policy": {"templates": []}});
    let (status, problem) = call(
        &proxy,
        reqwest::Method::PUT,
        "/admin/api/policy",
        Some(invalid),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at least one topic template")
    );

    let (status, saved) = call(
        &proxy,
        reqwest::Method::PUT,
        "/admin/api/policy",
        Some(json!({"version": 0, "policy": policy})),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["version"], 1);
    let (status, _) = call(
        &proxy,
        reqwest::Method::PUT,
        "/admin/api/policy",
        Some(json!({"version": 0, "policy": policy})),
    )
    .await;
    assert_eq!(status, 409, "an edit of an old version is refused");

    // The next event on this proxy follows the new policy, created from the new template.
    let (status, next) = proxy.publish("/v1/events", &log("l-2")).await;
    assert_eq!(status, 200, "{next}");
    let new_topic = format!("{service}.applogs");
    assert_eq!(next["topic"], new_topic.as_str());
    assert_eq!(partitions_of(&new_topic), 2);
    assert_eq!(
        broker_configs(&new_topic)
            .await
            .get("retention.ms")
            .map(String::as_str),
        Some("3600000")
    );
    let denied = event_json(
        "e-1",
        &format!("/{service}"),
        json!({"errortype": "forbidden"}),
    );
    let (status, problem) = proxy.publish("/v1/events", &denied).await;
    assert_eq!(status, 403);
    assert!(
        problem["detail"].as_str().unwrap().contains("denied"),
        "{problem}"
    );

    // Auto-creation off: an existing topic still takes events, a new one is not created.
    policy["auto_create"] = json!(false);
    let (status, saved) = call(
        &proxy,
        reqwest::Method::PUT,
        "/admin/api/policy",
        Some(json!({"version": 1, "policy": policy})),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    let fresh = event_json(
        "e-2",
        &format!("/{service}"),
        json!({"errortype": "brand-new"}),
    );
    let (status, problem) = proxy.publish("/v1/events", &fresh).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["type"], "urn:courier:problem:unknown-topic");
    assert_eq!(partitions_of(&format!("{service}.error.brand-new")), 0);
    let (status, _) = proxy.publish("/v1/events", &log("l-2b")).await;
    assert_eq!(status, 200, "an existing topic still takes events");

    // The peer sharing the store follows within its polling interval.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut topic = Value::Null;
    while Instant::now() < deadline {
        topic = peer.publish("/v1/events", &log(&unique("p-"))).await.1["topic"].clone();
        if topic == new_topic.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        topic,
        new_topic.as_str(),
        "the peer follows the saved policy"
    );
    peer.stop().await;

    let entries = audit(&proxy, "policy.").await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    let (ok, failed) = (&entries[1], &entries[2]);
    assert_eq!(ok["actor"], "alice");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["before"]["naming"]["log_template"], "{service}.logs");
    assert_eq!(ok["after"]["naming"]["log_template"], "{service}.applogs");
    assert!(failed["outcome"].as_str().unwrap().contains("at least one"));
    proxy.stop().await;

    // A restart keeps the saved policy over the configuration file's.
    let restarted = TestProxy::start(settings).await;
    let (_, v) = call(&restarted, reqwest::Method::GET, "/admin/api/policy", None).await;
    assert_eq!(v["version"], 2);
    let (status, again) = restarted.publish("/v1/events", &log("l-3")).await;
    assert_eq!(status, 200);
    assert_eq!(again["topic"], new_topic.as_str());
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_from_templates_listed_altered_and_deleted() {
    use reqwest::Method;
    let proxy = TestProxy::start(|c| {
        c.admin.token = Some(TOKEN.into());
        c.topics.deny = vec!["*.secret".into()];
    })
    .await;
    let service = unique("catalog");
    let topic = format!("{service}.orders");
    let create = json!({"name": topic, "template": "errors"});

    let anonymous = http()
        .post(proxy.url("/admin/api/topics"))
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );

    let (status, created) = call(
        &proxy,
        Method::POST,
        "/admin/api/topics",
        Some(create.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["replication_factor"], 3);
    assert_eq!(created["partitions"], 3);
    // A 201 means the topic is listed already (what the admin page shows next).
    let (status, listed) = call(&proxy, Method::GET, "/admin/api/topics", None).await;
    assert_eq!(status, 200);
    assert!(
        listed["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == topic.as_str() && t["partitions"] == 3),
        "the topic just created is listed at once: {listed}"
    );
    assert_eq!(partitions_of(&topic), 3);
    let configs = broker_configs(&topic).await;
    assert_eq!(
        configs.get("min.insync.replicas").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("1209600000")
    );

    let (status, _) = call(&proxy, Method::POST, "/admin/api/topics", Some(create)).await;
    assert_eq!(status, 409, "creating it twice is a conflict");
    for (body, expected) in [
        (json!({"name": format!("{service}.secret")}), 403),
        (json!({"name": "bad name"}), 422),
        (
            json!({"name": format!("{service}.x"), "template": "nope"}),
            400,
        ),
        (
            json!({"name": format!("{service}.x"), "partitions": 0}),
            400,
        ),
        (json!({"nom": "x"}), 400),
    ] {
        let (status, problem) = call(
            &proxy,
            Method::POST,
            "/admin/api/topics",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body} → {problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:courier:problem:")
        );
    }

    // Five events on one partition; a group that committed offset 3 lags by 2.
    for i in 0..5 {
        let e = event_json(
            &format!("o-{i}"),
            &format!("/{service}"),
            json!({"partitionkey": "k"}),
        );
        let (status, v) = proxy
            .publish(&format!("/v1/topics/{topic}/events"), &e)
            .await;
        assert_eq!(status, 200, "{v}");
    }
    let (_, one) = proxy
        .publish(
            &format!("/v1/topics/{topic}/events"),
            &event_json("o-0", &format!("/{service}"), json!({"partitionkey": "k"})),
        )
        .await;
    let partition = one["partition"].as_i64().unwrap() as i32;
    let group = unique("lag-");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, partition, Offset::Offset(3))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();

    let (status, list) = call(&proxy, Method::GET, "/admin/api/topics", None).await;
    assert_eq!(status, 200);
    let row = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == topic.as_str())
        .expect("the new topic is listed")
        .clone();
    assert_eq!(row["partitions"], 3);
    assert_eq!(row["replication_factor"], 3);
    assert_eq!(row["health"], "healthy");
    assert_eq!(row["end_offsets"], 5);

    let (status, detail) = call(
        &proxy,
        Method::GET,
        &format!("/admin/api/topics/{topic}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    let t = &detail["topic"];
    assert_eq!(t["partition_list"].as_array().unwrap().len(), 3);
    for p in t["partition_list"].as_array().unwrap() {
        assert_eq!(p["isr"].as_array().unwrap().len(), 3, "{p}");
        assert!(p["leader"].as_i64().unwrap() >= 0);
    }
    let lag = t["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == group.as_str())
        .unwrap_or_else(|| panic!("group {group} in {detail}"));
    assert_eq!(lag["lag"], 2);
    assert_eq!(
        detail["template"], "default",
        "the template its name matches"
    );

    let (status, altered) = call(
        &proxy,
        Method::PATCH,
        &format!("/admin/api/topics/{topic}/configs"),
        Some(json!({"configs": {"retention.ms": "3600000", "cleanup.policy": null}})),
    )
    .await;
    assert_eq!(status, 200, "{altered}");
    let configs = broker_configs(&topic).await;
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert_eq!(
        configs.get("min.insync.replicas").map(String::as_str),
        Some("2"),
        "an alteration keeps the other configs set on the topic"
    );

    let path = format!("/admin/api/topics/{topic}");
    let (status, _) = call(&proxy, Method::DELETE, &path, None).await;
    assert_eq!(status, 400, "deleting needs a confirmation token");
    let (_, other) = call(
        &proxy,
        Method::POST,
        &format!("/admin/api/topics/{service}.other/delete-token"),
        None,
    )
    .await;
    let (status, _) = call(
        &proxy,
        Method::DELETE,
        &format!("{path}?confirm={}", other["token"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(
        status, 403,
        "another topic's token does not delete this one"
    );
    let (_, token) = call(&proxy, Method::POST, &format!("{path}/delete-token"), None).await;
    let (status, _) = call(
        &proxy,
        Method::DELETE,
        &format!("{path}?confirm={}", token["token"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    while partitions_of(&topic) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(partitions_of(&topic), 0, "the topic is gone");

    let entries = audit(&proxy, "topic.").await;
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with(&service))
        })
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions[0], ("topic.delete", "ok"));
    assert_eq!(actions[1], ("topic.alter", "ok"));
    assert!(actions.contains(&("topic.create", "ok")), "{actions:?}");
    assert!(
        actions
            .iter()
            .filter(|(a, o)| *a == "topic.create" && *o != "ok")
            .count()
            >= 2,
        "refused creations are audited too: {actions:?}"
    );
    let alter = entries
        .iter()
        .find(|e| e["action"] == "topic.alter")
        .unwrap();
    assert_eq!(alter["before"]["retention.ms"], "1209600000");
    assert_eq!(alter["after"]["retention.ms"], "3600000");
    assert_eq!(alter["actor"], "alice");
    proxy.stop().await;
}
