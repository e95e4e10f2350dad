//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! - `courier_events_total{service,topic,outcome}`: events answered `delivered` (200),
//!   `stored` (202), `duplicate` (a resend within the dedupe window, answered with its first
//!   outcome) or `refused`; `courier_events_refused_total{service,reason}` with the
//!   problem code as the reason; `courier_auth_refused_total{service,reason}` for the
//!   refusals of authentication and authorisation (`unauthenticated`, `spoofed_source`, `acl`,
//!   `policy`);
//! - `courier_redelivered_total{topic}`, `courier_redelivery_failures_total{topic}`,
//!   `courier_parked_total{topic}`: what the retry scheduler did;
//! - `courier_http_requests_total{route,method,status}` and
//!   `courier_http_request_duration_seconds{route}`;
//! - `courier_kafka_ack_seconds`: from hand-over to the producer to Kafka's acknowledgement;
//! - `courier_kafka_producers_replaced_total`: producers replaced after a fatal error;
//! - `courier_intake_queue_events`, `courier_dlq_events{state}`: read at scrape time;
//! - `courier_kafka_producer_*` and `courier_kafka_broker_*{broker}`: librdkafka's own
//!   statistics, every `kafka.statistics_interval_ms`.
//!
//! One registry per proxy instance (not a process-global one), so proxies started side by
//! side in one test process count apart.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rdkafka::Statistics;

/// What happened to an event.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum EventOutcome {
    /// Acknowledged by Kafka (200).
    Delivered,
    /// Committed to the store (202).
    Stored,
    /// Refused (4xx/5xx).
    Refused,
    /// Sent again within the dedupe window: answered with its first outcome, not written again.
    Duplicate,
}

impl EncodeLabelValue for EventOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Delivered => "delivered",
            Self::Stored => "stored",
            Self::Refused => "refused",
            Self::Duplicate => "duplicate",
        })
    }
}

/// Labels of `courier_events_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The publishing service (`unknown` before it could be read).
    pub service: String,
    /// The topic (empty before it was routed).
    pub topic: String,
    /// The outcome.
    pub outcome: EventOutcome,
}

/// Labels of `courier_events_refused_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The publishing service (`unknown` before it could be read).
    pub service: String,
    /// The problem code (`invalid-event`, `topic-not-allowed`, …).
    pub reason: String,
}

/// A topic label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// The topic.
    pub topic: String,
}

/// Labels of `courier_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route pattern (`/v1/topics/{topic}/events`), or `unmatched`.
    pub route: &'static str,
    /// The method.
    pub method: &'static str,
    /// The status code.
    pub status: u16,
}

/// A route label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern.
    pub route: &'static str,
}

/// The route pattern as a `&'static str`: the label of every request, without an allocation
/// per request. The router's patterns are a fixed, small set, so each is kept once for the
/// life of the process.
pub fn route_label(pattern: &str) -> &'static str {
    static ROUTES: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
    let known = |routes: &[&'static str]| routes.iter().copied().find(|r| *r == pattern);
    if let Some(r) = known(
        &ROUTES
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    ) {
        return r;
    }
    let mut routes = ROUTES
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    known(&routes).unwrap_or_else(|| {
        let r: &'static str = Box::leak(pattern.to_owned().into_boxed_str());
        routes.push(r);
        r
    })
}

/// A DLQ state label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `pending` or `parked`.
    pub state: String,
}

/// A broker label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabels {
    /// `host:port/id` as librdkafka names it.
    pub broker: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// Every metric of one proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Events by service, topic and outcome.
    pub events: Family<EventLabels, Counter>,
    /// Refused events by service and reason.
    pub refused: Family<RefusedLabels, Counter>,
    /// Authentication and authorisation refusals by service and reason.
    pub auth_refused: Family<RefusedLabels, Counter>,
    /// Stored events the scheduler delivered.
    pub redelivered: Family<TopicLabels, Counter>,
    /// Failed redelivery attempts.
    pub redelivery_failures: Family<TopicLabels, Counter>,
    /// Stored events parked.
    pub parked: Family<TopicLabels, Counter>,
    /// HTTP requests.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP request durations.
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Hand-over to acknowledgement.
    pub ack_latency: Histogram,
    /// Producers replaced after librdkafka declared them unusable.
    pub producers_replaced: Counter,
    /// Events in the intake queue (set at scrape time).
    pub queue_depth: Gauge,
    /// Stored events by state (set at scrape time).
    pub dlq_events: Family<StateLabels, Gauge>,
    producer_queue_messages: Gauge,
    producer_queue_bytes: Gauge,
    producer_tx_messages: Gauge<u64, AtomicU64>,
    producer_tx_bytes: Gauge<u64, AtomicU64>,
    broker_up: Family<BrokerLabels, Gauge>,
    broker_rtt_avg: Family<BrokerLabels, Gauge<f64, AtomicU64>>,
    broker_rtt_p99: Family<BrokerLabels, Gauge<f64, AtomicU64>>,
    broker_outbuf: Family<BrokerLabels, Gauge>,
    broker_tx_errors: Family<BrokerLabels, Gauge<u64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("courier")),
            events: Family::default(),
            refused: Family::default(),
            auth_refused: Family::default(),
            redelivered: Family::default(),
            redelivery_failures: Family::default(),
            parked: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            ack_latency: latency_histogram(),
            producers_replaced: Counter::default(),
            queue_depth: Gauge::default(),
            dlq_events: Family::default(),
            producer_queue_messages: Gauge::default(),
            producer_queue_bytes: Gauge::default(),
            producer_tx_messages: Gauge::default(),
            producer_tx_bytes: Gauge::default(),
            broker_up: Family::default(),
            broker_rtt_avg: Family::default(),
            broker_rtt_p99: Family::default(),
            broker_outbuf: Family::default(),
            broker_tx_errors: Family::default(),
        };
        m.register();
        m
    }
}

impl Metrics {
    fn register(&self) {
        let Ok(mut r) = self.registry.lock() else {
            return;
        };
        r.register(
            "events",
            "Events by service, topic and outcome",
            self.events.clone(),
        );
        r.register(
            "events_refused",
            "Refused events by service and problem code",
            self.refused.clone(),
        );
        r.register(
            "auth_refused",
            "Requests (unauthenticated) and events (spoofed_source, acl, policy) refused by \
             authentication or authorisation, by service and reason",
            self.auth_refused.clone(),
        );
        r.register(
            "redelivered",
            "Stored events the retry scheduler delivered",
            self.redelivered.clone(),
        );
        r.register(
            "redelivery_failures",
            "Failed redelivery attempts of stored events",
            self.redelivery_failures.clone(),
        );
        r.register(
            "parked",
            "Stored events parked for an operator",
            self.parked.clone(),
        );
        r.register("http_requests", "HTTP requests", self.http_requests.clone());
        r.register(
            "http_request_duration_seconds",
            "HTTP request durations",
            self.http_duration.clone(),
        );
        r.register(
            "kafka_ack_seconds",
            "From hand-over to the producer to Kafka's acknowledgement",
            self.ack_latency.clone(),
        );
        r.register(
            "kafka_producers_replaced",
            "Producers replaced after librdkafka declared them unusable (a fatal error)",
            self.producers_replaced.clone(),
        );
        r.register(
            "intake_queue_events",
            "Events handed to the producer and not yet reported on",
            self.queue_depth.clone(),
        );
        r.register(
            "dlq_events",
            "Events in the store by state",
            self.dlq_events.clone(),
        );
        r.register(
            "kafka_producer_queue_messages",
            "Messages in librdkafka's producer queue",
            self.producer_queue_messages.clone(),
        );
        r.register(
            "kafka_producer_queue_bytes",
            "Bytes in librdkafka's producer queue",
            self.producer_queue_bytes.clone(),
        );
        r.register(
            "kafka_producer_tx_messages",
            "Messages librdkafka sent to brokers since start",
            self.producer_tx_messages.clone(),
        );
        r.register(
            "kafka_producer_tx_bytes",
            "Message bytes librdkafka sent to brokers since start",
            self.producer_tx_bytes.clone(),
        );
        r.register(
            "kafka_broker_up",
            "1 when librdkafka's connection to the broker is up",
            self.broker_up.clone(),
        );
        r.register(
            "kafka_broker_rtt_avg_seconds",
            "Average request round trip to the broker",
            self.broker_rtt_avg.clone(),
        );
        r.register(
            "kafka_broker_rtt_p99_seconds",
            "99th percentile request round trip to the broker",
            self.broker_rtt_p99.clone(),
        );
        r.register(
            "kafka_broker_outbuf_requests",
            "Requests waiting to be sent to the broker",
            self.broker_outbuf.clone(),
        );
        r.register(
            "kafka_broker_tx_errors",
            "Transmission errors to the broker since start",
            self.broker_tx_errors.clone(),
        );
    }

    /// Counts `n` events of one service and topic with the same outcome.
    pub fn record_events(&self, service: &str, topic: &str, outcome: EventOutcome, n: u64) {
        self.events
            .get_or_create(&EventLabels {
                service: service.to_owned(),
                topic: topic.to_owned(),
                outcome,
            })
            .inc_by(n);
    }

    /// Counts `n` refusals of one service for one reason.
    pub fn record_refusals(&self, service: &str, reason: &str, n: u64) {
        self.refused
            .get_or_create(&RefusedLabels {
                service: service.to_owned(),
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts `n` authentication or authorisation refusals of one service and reason.
    pub fn record_auth_refusals(&self, service: &str, reason: &str, n: u64) {
        self.auth_refused
            .get_or_create(&RefusedLabels {
                service: service.to_owned(),
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts `n` topic-labelled events of the retry scheduler (nothing when `n` is 0, so no
    /// series appears for an outcome a topic never had).
    pub fn count_topic(family: &Family<TopicLabels, Counter>, topic: &str, n: u64) {
        if n == 0 {
            return;
        }
        family
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .inc_by(n);
    }

    /// Takes in librdkafka's statistics.
    pub fn record_kafka(&self, stats: &Statistics) {
        self.producer_queue_messages
            .set(i64::try_from(stats.msg_cnt).unwrap_or(i64::MAX));
        self.producer_queue_bytes
            .set(i64::try_from(stats.msg_size).unwrap_or(i64::MAX));
        self.producer_tx_messages
            .set(u64::try_from(stats.txmsgs).unwrap_or(0));
        self.producer_tx_bytes
            .set(u64::try_from(stats.txmsg_bytes).unwrap_or(0));
        for (name, broker) in &stats.brokers {
            // librdkafka's bootstrap entries (nodeid -1) are not brokers of the cluster.
            if broker.nodeid < 0 {
                continue;
            }
            let labels = BrokerLabels {
                broker: name.clone(),
            };
            self.broker_up
                .get_or_create(&labels)
                .set(i64::from(broker.state == "UP"));
            self.broker_outbuf
                .get_or_create(&labels)
                .set(broker.outbuf_cnt);
            self.broker_tx_errors
                .get_or_create(&labels)
                .set(broker.txerrs);
            if let Some(rtt) = &broker.rtt {
                // librdkafka reports microseconds.
                self.broker_rtt_avg
                    .get_or_create(&labels)
                    .set(rtt.avg as f64 / 1e6);
                self.broker_rtt_p99
                    .get_or_create(&labels)
                    .set(rtt.p99 as f64 / 1e6);
            }
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_the_exposition() {
        let m = Metrics::default();
        m.record_events("billing", "billing.events", EventOutcome::Delivered, 1);
        m.record_events("billing", "billing.events", EventOutcome::Delivered, 1);
        m.record_refusals("billing", "topic-not-allowed", 1);
        m.ack_latency.observe(0.003);
        let text = m.encode();
        assert!(
            text.contains(
                r#"courier_events_total{service="billing",topic="billing.events",outcome="delivered"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"courier_events_refused_total{service="billing",reason="topic-not-allowed"} 1"#
        ));
        assert!(text.contains("courier_kafka_ack_seconds_count 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
