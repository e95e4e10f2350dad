//! The consumers' operations endpoints against the real cluster and Elasticsearch:
//! `/readyz` turns 200 once the consumer is in its group (and, for the sink, Elasticsearch
//! answered) and 503 on shutdown; `/metrics` counts every record handled, dead-lettered and
//! indexed, and the lag of each partition drains to 0; both binaries serve them on `--listen`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_consumer_es::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use courier_consumer_es::{PipelineConfig, PipelineStats, pipeline};
use courier_consumer_main::ops::{self, Ops};
use courier_consumer_main::{Consumer, ConsumerConfig, Handler, HandlerError, Received};
use courier_e2e::proxy_process::free_port;
use courier_e2e::sinks::{ConsumerProcess, es_url, orders, publish};
use courier_e2e::{TestProxy, bootstrap, http, unique};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The operations endpoints of `ops` on an ephemeral loopback port.
struct OpsServer {
    base: String,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    async fn start(ops: Ops) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let task = tokio::spawn(ops::serve(listener, ops, stop.clone()));
        Self { base, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn status(base: &str, path: &str) -> Option<u16> {
    http()
        .get(format!("{base}{path}"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn metrics(base: &str) -> String {
    let r = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.expect("metrics text")
}

/// The value of the sample `series` (name and labels, as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (bounded) until `/readyz` answers `want`; panics with the last body otherwise.
async fn wait_ready(base: &str, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(r) = http().get(format!("{base}/readyz")).send().await {
            let code = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if code == want {
                return;
            }
            last = Some((code, body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz of {base} did not answer {want} within {within:?}; last: {last:?}");
}

/// Waits (bounded) until `check` holds for the metrics text; panics with it otherwise.
async fn wait_metrics(base: &str, within: Duration, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let text = metrics(base).await;
        if check(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {within:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every partition of `topic` in the lag gauge (at least one), all at 0.
fn lag_drained(text: &str, topic: &str) -> bool {
    let prefix = format!("courier_consumer_lag_records{{topic=\"{topic}\",");
    let lags: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    !lags.is_empty() && lags.iter().all(|&l| l == 0.0)
}

/// Succeeds, but for events flagged `poison`.
#[derive(Debug, Clone)]
struct Orders;

impl Handler for Orders {
    type Payload = Value;

    async fn handle(&self, e: Received<Value>) -> Result<(), HandlerError> {
        if e.data["poison"] == true {
            return Err(HandlerError::fatal("poison order").with_class("test.PoisonOrder"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_runtime_is_ready_once_assigned_and_counts_what_it_handled() {
    const N: usize = 120;
    let proxy = TestProxy::start(|_| {}).await;
    let svc = unique("ops");
    let topic = format!("{svc}.events");
    // The topic exists before the consumer subscribes to it by name.
    publish(&proxy.url(""), &orders(&svc, 0, N), 60).await;

    let mut config = ConsumerConfig::default();
    config.kafka.bootstrap_servers = bootstrap();
    config.kafka.group_id = unique("ops-main-");
    config.kafka.statistics_interval_ms = 300;
    let consumer = Consumer::builder(config)
        .route(&topic, Orders)
        .unwrap()
        .build()
        .unwrap();
    let server = OpsServer::start(consumer.ops()).await;
    assert_eq!(status(&server.base, "/healthz").await, Some(200));
    assert_eq!(
        status(&server.base, "/readyz").await,
        Some(503),
        "not ready before joining the group"
    );

    let shutdown = CancellationToken::new();
    let run = tokio::spawn(consumer.run(shutdown.clone()));
    wait_ready(&server.base, 200, Duration::from_secs(60)).await;

    let poison = json!({"specversion": "1.0", "id": format!("{svc}-poison"),
        "source": format!("/{svc}"), "type": "order.placed", "data": {"poison": true}});
    publish(&proxy.url(""), &[poison], 1).await;
    let handled =
        format!("courier_consumer_records_total{{topic=\"{topic}\",outcome=\"handled\"}}");
    let dead = format!(
        "courier_consumer_dead_letters_total{{topic=\"{topic}\",class=\"test.PoisonOrder\"}}"
    );
    wait_metrics(
        &server.base,
        Duration::from_secs(90),
        "every record handled and the poison dead-lettered",
        |t| sample(t, &handled) == Some(N as f64) && sample(t, &dead) == Some(1.0),
    )
    .await;
    // The offsets are committed every second and the lag read from librdkafka's statistics:
    // it drains to 0 on every partition.
    wait_metrics(&server.base, Duration::from_secs(30), "lag 0", |t| {
        lag_drained(t, &topic)
    })
    .await;
    let text = metrics(&server.base).await;
    assert!(
        sample(&text, "courier_consumer_handler_duration_seconds_count")
            .is_some_and(|n| n >= (N + 1) as f64),
        "{text}"
    );
    assert!(
        sample(&text, "courier_consumer_assigned_partitions").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    println!("{text}");

    shutdown.cancel();
    run.await.unwrap().unwrap();
    // The endpoints outlive the consumer: not ready any more, still alive.
    assert_eq!(status(&server.base, "/readyz").await, Some(503));
    assert_eq!(status(&server.base, "/healthz").await, Some(200));
    server.stop().await;
    proxy.stop().await;
}

fn es_sink(url: String) -> Arc<ElasticsearchSink> {
    Arc::new(
        ElasticsearchSink::new(ElasticsearchConfig {
            url,
            replicas: 0,
            request_timeout: Duration::from_secs(3),
            max_backoff: Duration::from_millis(500),
            ..ElasticsearchConfig::default()
        })
        .expect("sink"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sink_is_ready_once_elasticsearch_answered_and_counts_what_it_indexed() {
    const N: usize = 150;
    let proxy = TestProxy::start(|_| {}).await;
    let svc = unique("opses");
    let topic = format!("{svc}.events");
    let mut events = orders(&svc, 0, N);
    // `amount` is mapped as a number by the first batch; a string contradicts it.
    publish(&proxy.url(""), &events, 50).await;

    let mut config = PipelineConfig::default();
    config.kafka.bootstrap_servers = bootstrap();
    config.kafka.group_id = unique("ops-es-");
    config.kafka.statistics_interval_ms = 300;
    config.topics = vec![topic.clone()];
    config.batch.max_wait = Duration::from_millis(100);
    let ops = Ops::new();
    let server = OpsServer::start(ops.clone()).await;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(pipeline::run_with_ops(
        es_sink(es_url()),
        config,
        Arc::new(PipelineStats::default()),
        ops,
        shutdown.clone(),
    ));
    wait_ready(&server.base, 200, Duration::from_secs(60)).await;
    let handled =
        format!("courier_consumer_records_total{{topic=\"{topic}\",outcome=\"handled\"}}");
    wait_metrics(
        &server.base,
        Duration::from_secs(90),
        "every record indexed",
        |t| sample(t, &handled) == Some(N as f64),
    )
    .await;

    events = vec![json!({"specversion": "1.0", "id": format!("{svc}-mapping"),
        "source": format!("/{svc}"), "type": "order.placed", "data": {"amount": "lots"}})];
    publish(&proxy.url(""), &events, 1).await;
    let rejected = r#"courier_sink_errors_total{sink="elasticsearch",kind="item_rejected"}"#;
    let dead =
        format!("courier_consumer_records_total{{topic=\"{topic}\",outcome=\"dead_lettered\"}}");
    wait_metrics(
        &server.base,
        Duration::from_secs(90),
        "the mapping failure counted and dead-lettered",
        |t| sample(t, rejected) == Some(1.0) && sample(t, &dead) == Some(1.0),
    )
    .await;
    wait_metrics(&server.base, Duration::from_secs(30), "lag 0", |t| {
        lag_drained(t, &topic)
    })
    .await;
    let text = metrics(&server.base).await;
    assert_eq!(sample(&text, &handled), Some(N as f64), "{text}");
    assert!(
        sample(&text, "courier_consumer_batch_duration_seconds_count").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    println!("{text}");

    shutdown.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(status(&server.base, "/readyz").await, Some(503));
    server.stop().await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sink_is_not_ready_while_elasticsearch_does_not_answer() {
    // A port nothing listens on.
    let dead_url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut config = PipelineConfig::default();
    config.kafka.bootstrap_servers = bootstrap();
    config.kafka.group_id = unique("ops-es-down-");
    config.topics = vec![unique("ops-none.events")];
    let ops = Ops::new();
    let server = OpsServer::start(ops.clone()).await;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(pipeline::run_with_ops(
        es_sink(dead_url),
        config,
        Arc::new(PipelineStats::default()),
        ops,
        shutdown.clone(),
    ));
    let prepare = r#"courier_sink_errors_total{sink="elasticsearch",kind="prepare"}"#;
    wait_metrics(
        &server.base,
        Duration::from_secs(30),
        "failed preparations",
        |t| sample(t, prepare).is_some_and(|n| n >= 2.0),
    )
    .await;
    let r = http()
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["sink_ready"], false, "{body}");
    shutdown.cancel();
    run.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_binaries_serve_their_endpoints_on_listen() {
    const N: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(|_| {}).await;
    let svc = unique("opsbin");
    let topic = format!("{svc}.events");
    publish(&proxy.url(""), &orders(&svc, 0, N), 40).await;
    let (main_port, es_port) = (free_port().unwrap(), free_port().unwrap());
    let pattern = format!(r"^{svc}\.events$");
    let main_args: Vec<String> = vec![
        "--listen".into(),
        format!("127.0.0.1:{main_port}"),
        "--bootstrap-servers".into(),
        bootstrap(),
        "--group".into(),
        unique("ops-bin-main-"),
        "--orders".into(),
        pattern.clone(),
        "--metadata-refresh-ms".into(),
        "1000".into(),
    ];
    let es_args: Vec<String> = vec![
        "--bootstrap-servers".into(),
        bootstrap(),
        "--group".into(),
        unique("ops-bin-es-"),
        "--topics".into(),
        pattern,
        "--metadata-refresh-ms".into(),
        "1000".into(),
        "--es-url".into(),
        es_url(),
        "--es-replicas".into(),
        "0".into(),
        "--batch-wait-ms".into(),
        "100".into(),
    ];
    let mut main = ConsumerProcess::start(
        "courier-consumer-main",
        &main_args,
        &dir.path().join("main.log"),
    );
    // The listen address from the environment, as a deployment sets it.
    let mut es = ConsumerProcess::start_with_env(
        "courier-consumer-es",
        &es_args,
        &[("COURIER_CONSUMER_LISTEN", format!("127.0.0.1:{es_port}"))],
        &dir.path().join("es.log"),
    );
    let handled =
        format!("courier_consumer_records_total{{topic=\"{topic}\",outcome=\"handled\"}}");
    for port in [main_port, es_port] {
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&base, 200, Duration::from_secs(90)).await;
        assert_eq!(status(&base, "/healthz").await, Some(200));
        wait_metrics(
            &base,
            Duration::from_secs(90),
            "every record handled",
            |t| sample(t, &handled) == Some(N as f64),
        )
        .await;
    }
    assert!(
        main.signal_and_wait("-TERM", Duration::from_secs(40))
            .success()
    );
    assert!(
        es.signal_and_wait("-TERM", Duration::from_secs(40))
            .success()
    );
    proxy.stop().await;
}
