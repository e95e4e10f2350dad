//! HEC requests, their answers, and indexer acknowledgement.

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::elasticsearch::{document, event_time};
use crate::sink::{Rejection, Sink, SinkError, SinkRecord};

/// Where and how the Splunk sink writes.
#[derive(Debug, Clone)]
pub struct SplunkConfig {
    /// The HEC base URL (`https://splunk:8088`).
    pub url: String,
    /// The HEC token.
    pub token: String,
    /// The Splunk index (none: the token's default).
    pub index: Option<String>,
    /// The sourcetype of every event.
    pub sourcetype: String,
    /// The request channel (a GUID); one is made up when none is given.
    pub channel: Option<String>,
    /// Whether a batch counts as written only once Splunk acknowledged indexing it (the
    /// default). Then an answer without an ack id — acknowledgement off for the token —
    /// stops the sink with an error instead of committing what may not be indexed; turn
    /// it off only for a token without acknowledgement, where a 200 is all Splunk gives.
    pub require_ack: bool,
    /// How long a batch may stay unacknowledged before it is sent again.
    pub ack_timeout: Duration,
    /// Interval between acknowledgement polls.
    pub ack_poll_interval: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// First wait after a refused or failed request.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for SplunkConfig {
    fn default() -> Self {
        Self {
            url: "https://127.0.0.1:8088".into(),
            token: String::new(),
            index: None,
            sourcetype: "courier:event".into(),
            channel: None,
            require_ack: true,
            ack_timeout: Duration::from_secs(60),
            ack_poll_interval: Duration::from_millis(500),
            request_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// One HEC event object: Splunk's `time` (epoch seconds), `source`, `sourcetype`, `index`,
/// the event itself and indexed `fields`.
pub fn hec_event(record: &SinkRecord, config: &SplunkConfig) -> serde_json::Value {
    let time = event_time(&record.event, &record.origin);
    let doc: serde_json::Value =
        serde_json::from_slice(&document(&record.event, &record.origin)).unwrap_or_default();
    let mut out = serde_json::json!({
        "time": time.timestamp_millis() as f64 / 1000.0,
        "source": record.event.source,
        "sourcetype": config.sourcetype,
        "event": doc,
        "fields": {"id": record.event.id, "topic": record.origin.topic, "category": record.event.category.as_str()},
    });
    if let Some(index) = &config.index {
        out["index"] = index.clone().into();
    }
    out
}

/// An HEC answer body (`{"text":"Success","code":0,"ackId":7}`, or an error with
/// `invalid-event-number`).
#[derive(Debug, Deserialize)]
struct HecAnswer {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: i64,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct AckAnswer {
    acks: std::collections::HashMap<String, bool>,
}

enum Sent {
    /// Accepted; confirmed once this ack id is true (none: acknowledgement is off).
    Accepted(Option<u64>),
    /// Event `n` of the request is invalid; the request was refused.
    Invalid { n: usize, message: String },
    /// Try again later.
    Retry(String),
}

/// Writes to Splunk's HTTP Event Collector with indexer acknowledgement.
#[derive(Debug)]
pub struct SplunkSink {
    http: reqwest::Client,
    config: SplunkConfig,
    channel: String,
}

impl SplunkSink {
    /// A sink for `config`.
    pub fn new(config: SplunkConfig) -> Result<Self, SinkError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| SinkError::Fatal(format!("HTTP client: {e}")))?;
        let channel = config
            .channel
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        Ok(Self {
            http,
            config,
            channel,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.url.trim_end_matches('/'))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        courier_consumer_main::retry::doubling(
            self.config.initial_backoff,
            self.config.max_backoff,
            attempt,
        )
    }

    async fn send(&self, body: Vec<u8>) -> Sent {
        let response = match self
            .http
            .post(self.url("/services/collector/event"))
            .header("Authorization", format!("Splunk {}", self.config.token))
            .header("X-Splunk-Request-Channel", &self.channel)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Sent::Retry(e.to_string()),
        };
        let status = response.status();
        let answer: Option<HecAnswer> = response.json().await.ok();
        let text = answer
            .as_ref()
            .map_or(String::new(), |a| format!("{} (code {})", a.text, a.code));
        match (status.as_u16(), answer) {
            (200, Some(a)) => Sent::Accepted(a.ack_id),
            (200, None) => Sent::Accepted(None),
            (
                400,
                Some(HecAnswer {
                    invalid_event_number: Some(n),
                    ..
                }),
            ) => Sent::Invalid { n, message: text },
            // 503 server busy, 429, 5xx; 400/401/403 without an event to blame are a
            // configuration matter (token, channel) an operator fixes: wait and try again.
            (status, _) => Sent::Retry(format!("HTTP {status}: {text}")),
        }
    }

    /// Polls until `ack` is true; false when the ack timeout passed first.
    async fn acknowledged(&self, ack: u64, cancel: &CancellationToken) -> Result<bool, SinkError> {
        let deadline = tokio::time::Instant::now() + self.config.ack_timeout;
        let body = serde_json::json!({"acks": [ack]});
        while tokio::time::Instant::now() < deadline {
            let answer = self
                .http
                .post(self.url("/services/collector/ack"))
                .query(&[("channel", &self.channel)])
                .header("Authorization", format!("Splunk {}", self.config.token))
                .header("X-Splunk-Request-Channel", &self.channel)
                .json(&body)
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => match r.json::<AckAnswer>().await {
                    Ok(a) if a.acks.get(&ack.to_string()).copied().unwrap_or(false) => {
                        return Ok(true);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable ack answer"),
                },
                Ok(r) => tracing::warn!(status = %r.status(), "ack poll refused"),
                Err(e) => tracing::warn!(error = %e, "ack poll failed"),
            }
            if !courier_consumer_main::retry::sleep_unless_cancelled(
                self.config.ack_poll_interval,
                cancel,
            )
            .await
            {
                return Err(SinkError::Cancelled);
            }
        }
        Ok(false)
    }
}

impl Sink for SplunkSink {
    fn name(&self) -> &'static str {
        "splunk"
    }

    async fn prepare(&self, _cancel: &CancellationToken) -> Result<(), SinkError> {
        if self.config.token.is_empty() {
            return Err(SinkError::Fatal("a Splunk HEC token is required".into()));
        }
        Ok(())
    }

    async fn write(
        &self,
        batch: &[SinkRecord],
        cancel: &CancellationToken,
    ) -> Result<Vec<Rejection>, SinkError> {
        let events: Vec<Vec<u8>> = batch
            .iter()
            .map(|r| serde_json::to_vec(&hec_event(r, &self.config)).unwrap_or_default())
            .collect();
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut rejections = Vec::new();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let body: Vec<u8> = pending
                .iter()
                .flat_map(|&i| events[i].iter().copied())
                .collect();
            let wait = match self.send(body).await {
                Sent::Accepted(None) if self.config.require_ack => {
                    return Err(SinkError::Fatal(
                        "HEC accepted a batch without an ack id: indexer acknowledgement is \
                         off for this token, so nothing says the events were indexed; turn \
                         it on for the token (or set require_ack off to accept a 200 as \
                         written)"
                            .into(),
                    ));
                }
                Sent::Accepted(None) => return Ok(rejections),
                Sent::Accepted(Some(ack)) => {
                    if self.acknowledged(ack, cancel).await? {
                        return Ok(rejections);
                    }
                    tracing::warn!(
                        ack,
                        events = pending.len(),
                        "batch not acknowledged in time; sending it again"
                    );
                    false
                }
                Sent::Invalid { n, message } if n < pending.len() => {
                    let index = pending.remove(n);
                    tracing::warn!(index, %message, "event refused by HEC");
                    rejections.push(Rejection {
                        index,
                        class: "splunk.InvalidEvent".into(),
                        message,
                    });
                    false
                }
                Sent::Invalid { message, .. } | Sent::Retry(message) => {
                    tracing::warn!(%message, attempt, "HEC request failed; retrying");
                    true
                }
            };
            if wait && !pending.is_empty() {
                attempt += 1;
                if !courier_consumer_main::retry::sleep_unless_cancelled(
                    self.backoff(attempt),
                    cancel,
                )
                .await
                {
                    return Err(SinkError::Cancelled);
                }
            }
        }
        Ok(rejections)
    }
}
