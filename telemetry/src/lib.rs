//! Logging and optional OpenTelemetry traces for Courier's processes.
//!
//! Logs: JSON lines when stdout is not a terminal (services, CI), human ones otherwise;
//! `RUST_LOG` filters (default `info`).
//!
//! Traces are off unless an OTLP endpoint is configured the standard OpenTelemetry way:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL, e.g. `http://collector:4318/v1/traces`)
//! or `OTEL_EXPORTER_OTLP_ENDPOINT` (the base, `/v1/traces` is added). They are exported as
//! OTLP over HTTP/protobuf from a background thread in batches; `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)` and `OTEL_BSP_*` are honoured,
//! and `OTEL_TRACES_EXPORTER=none` turns them off again.
//!
//! Context crosses process boundaries as W3C Trace Context: [`continue_http`] makes a request's
//! span a child of the caller's `traceparent`, [`record_headers`] gives the headers that carry
//! a span's context on a Kafka record, and [`continue_record`] makes a consumer's span a child
//! of the producer's. All three do nothing while traces are off.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Header names (HTTP and Kafka) of W3C Trace Context.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Set once, when traces are exported.
static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

/// Keeps the trace exporter running; dropping it sends what it still holds (bounded by
/// `OTEL_BSP_EXPORT_TIMEOUT`).
#[derive(Debug)]
#[must_use = "traces stop being exported when this is dropped"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces_on(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace exporter: {e}");
        }
    }
}

/// Where traces go, from the environment; `None` when they are off.
fn otlp_endpoint() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none") {
        return None;
    }
    var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// Installs logging, and trace export when an OTLP endpoint is configured in the environment.
/// `service` names the process in traces unless `OTEL_SERVICE_NAME` does. Call once, first
/// thing in `main`.
pub fn init(service: &str) -> Result<Telemetry, Error> {
    install(service, otlp_endpoint().map(Endpoint::FromEnvironment))
}

/// As [`init`], with traces sent to `traces_url` (the full URL, `…/v1/traces`) whatever the
/// environment says: for programs that keep their settings elsewhere, and tests.
pub fn init_with_endpoint(service: &str, traces_url: &str) -> Result<Telemetry, Error> {
    install(service, Some(Endpoint::Url(traces_url.to_owned())))
}

enum Endpoint {
    /// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`, read by the exporter itself.
    FromEnvironment(String),
    Url(String),
}

fn install(service: &str, endpoint: Option<Endpoint>) -> Result<Telemetry, Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer();
    let fmt = if std::io::stdout().is_terminal() {
        fmt.boxed()
    } else {
        fmt.json().flatten_event(true).with_span_list(false).boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    let Some(endpoint) = endpoint else {
        registry.try_init().map_err(|e| Error(e.to_string()))?;
        return Ok(Telemetry { provider: None });
    };
    if std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p.trim() == "grpc") {
        return Err(Error(
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: Courier exports traces over OTLP/HTTP \
             (http/protobuf) only; point the endpoint at the collector's HTTP port (4318)"
                .into(),
        ));
    }
    let builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    let (builder, endpoint) = match endpoint {
        Endpoint::FromEnvironment(url) => (builder, url),
        Endpoint::Url(url) => (builder.with_endpoint(url.clone()), url),
    };
    let exporter = builder
        .build()
        .map_err(|e| Error(format!("OTLP exporter for {endpoint}: {e}")))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("courier");
    registry
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|e| Error(e.to_string()))?;
    let _ = PROPAGATOR.set(TraceContextPropagator::new());
    tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// Why logging or tracing could not be installed.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "telemetry: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// Whether traces are exported (and context propagated).
pub fn traces_on() -> bool {
    PROPAGATOR.get().is_some()
}

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes `span` a child of the trace context in these HTTP headers (W3C `traceparent`), if
/// they carry one.
pub fn continue_http(span: &tracing::Span, headers: &http::HeaderMap) {
    let Some(propagator) = PROPAGATOR.get() else {
        return;
    };
    if !headers.contains_key(TRACE_HEADERS[0]) {
        return;
    }
    let cx = propagator.extract(&HttpHeaders(headers));
    let _ = span.set_parent(cx);
}

struct RecordHeaders<'a>(Vec<(&'a str, &'a str)>);

impl Extractor for RecordHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// Makes `span` a child of the trace context carried by a Kafka record's headers, if any.
pub fn continue_record<'a>(
    span: &tracing::Span,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    let Some(propagator) = PROPAGATOR.get() else {
        return;
    };
    let found: Vec<(&str, &str)> = headers
        .into_iter()
        .filter(|(k, _)| TRACE_HEADERS.contains(k))
        .filter_map(|(k, v)| Some((k, std::str::from_utf8(v).ok()?)))
        .collect();
    if found.is_empty() {
        return;
    }
    let _ = span.set_parent(propagator.extract(&RecordHeaders(found)));
}

#[derive(Default)]
struct Collected(Vec<(String, Vec<u8>)>);

impl Injector for Collected {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value.into_bytes()));
    }
}

/// The headers that carry `span`'s trace context to a consumer (`traceparent`, and
/// `tracestate` when there is one); none while traces are off or the span is not recorded.
pub fn record_headers(span: &tracing::Span) -> Vec<(String, Vec<u8>)> {
    let Some(propagator) = PROPAGATOR.get() else {
        return Vec::new();
    };
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut out = Collected::default();
    propagator.inject_context(&cx, &mut out);
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_propagated_while_traces_are_off() {
        // No subscriber with the OpenTelemetry layer and no propagator: every helper is inert.
        let span = tracing::info_span!("request");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        continue_http(&span, &headers);
        continue_record(&span, [("traceparent", b"00-x".as_slice())]);
        assert!(record_headers(&span).is_empty());
        assert!(!traces_on());
    }
}
