//! OpenTelemetry traces, end to end: a caller's W3C `traceparent` makes the proxy's request
//! span (a `courier-proxy` process exporting over OTLP/HTTP to a collector double) part of the
//! caller's trace; the record in Kafka carries the request span's context; the main server's
//! consumer runtime handles the event in a span that continues that trace. With no endpoint
//! configured, the proxy exports nothing and adds no header.
//!
//! One test per file on purpose: the consumer half installs this process's global subscriber.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use courier_consumer_main::{Consumer, ConsumerConfig, Handler, HandlerError, Received};
use courier_e2e::chaos::ProxyProcess;
use courier_e2e::{bootstrap, event_json, header, http, read_by_id, unique};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A span as the collector double received it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

type Spans = Arc<Mutex<Vec<Exported>>>;

/// An OTLP/HTTP collector double: decodes `/v1/traces` exports (protobuf) and keeps the spans.
async fn collector() -> (String, Spans) {
    async fn export(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
        let mut spans = spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Exported {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
        // An empty `ExportTraceServiceResponse`: everything accepted.
        Vec::new()
    }
    let spans = Spans::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits (bounded) for a span matching `pred` to reach the collector.
async fn wait_span(spans: &Spans, what: &str, pred: impl Fn(&Exported) -> bool) -> Exported {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = spans.lock().unwrap().iter().find(|s| pred(s)) {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {what} span within 30 s; received: {:#?}",
            spans.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug, Default, Clone)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Handler for Seen {
    type Payload = Value;

    async fn handle(&self, e: Received<Value>) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(e.event.id);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trace_runs_from_the_caller_through_the_proxy_and_kafka_to_the_handler() {
    let (endpoint, spans) = collector().await;
    // The consumer runtime in this process exports to the same collector.
    let _telemetry = courier_telemetry::init_with_endpoint(
        "courier-e2e-consumer",
        &format!("{endpoint}/v1/traces"),
    )
    .expect("telemetry");
    assert!(courier_telemetry::traces_on());

    let state = tempfile::tempdir().unwrap();
    let traced_proxy = ProxyProcess::start(
        &bootstrap(),
        state.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let plain_dir = tempfile::tempdir().unwrap();
    let plain_proxy = ProxyProcess::start(&bootstrap(), plain_dir.path(), &[]).await;

    let svc = unique("traced-");
    let topic = format!("{svc}.events");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let publish = |base: String, id: &'static str| {
        let body = event_json(id, &format!("/{svc}/api"), json!({}));
        async move {
            let resp = http()
                .post(format!("{base}/v1/events"))
                .header("content-type", "application/cloudevents+json")
                .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{id}: {}", resp.text().await.unwrap());
        }
    };
    publish(traced_proxy.base.clone(), "traced-1").await;
    // The same trace header through a proxy without an endpoint: no export, no header.
    publish(plain_proxy.base.clone(), "plain-1").await;

    // The proxy's request span is the caller's child, in the caller's trace.
    let request = wait_span(&spans, "proxy request", |s| {
        s.service == "courier-proxy" && s.name == "request" && s.trace_id == trace_id
    })
    .await;
    assert_eq!(request.parent_span_id, caller_span);
    let produce = wait_span(&spans, "kafka.produce", |s| {
        s.name == "kafka.produce" && s.trace_id == trace_id
    })
    .await;
    assert_eq!(produce.parent_span_id, request.span_id);

    // The records: the traced one carries the request span's context, the other none.
    let (records, _) = read_by_id(&[&topic], 2, Duration::from_secs(30)).await;
    let traced = &records["traced-1"];
    let parent = header(traced, "traceparent").expect("a traceparent header");
    assert_eq!(parent, format!("00-{trace_id}-{}-01", request.span_id));
    assert_eq!(header(&records["plain-1"], "traceparent"), None);

    // The handler runs in a span of the same trace, the proxy's request span its parent.
    let seen = Seen::default();
    let mut config = ConsumerConfig::default();
    config.kafka.bootstrap_servers = bootstrap();
    config.kafka.group_id = unique("traced-main-");
    let runtime = Consumer::builder(config)
        .route(&format!(r"^{svc}\..*"), seen.clone())
        .unwrap()
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(runtime.run(stop.clone()));
    let consume = wait_span(&spans, "consume", |s| {
        s.service == "courier-e2e-consumer" && s.name == "consume" && s.trace_id == trace_id
    })
    .await;
    assert_eq!(consume.parent_span_id, request.span_id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.0.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    let mut handled = seen.0.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, ["plain-1", "traced-1"]);

    drop(plain_proxy);
    drop(traced_proxy);
}
