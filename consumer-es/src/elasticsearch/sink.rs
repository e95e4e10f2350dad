//! Writing batches with `_bulk`, and reading what happened to each item.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Duration;

use courier_consumer_main::Ops;
use courier_consumer_main::ops::SinkErrorKind;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::indices::IndicesPutIndexTemplateParts;
use elasticsearch::{BulkParts, Elasticsearch};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::config::ElasticsearchConfig;
use super::document::{IndexName, document, event_time, index_template};
use crate::sink::{Rejection, Sink, SinkError, SinkRecord};

/// Indexes events into Elasticsearch with the `elasticsearch` client.
///
/// The client's `ping()` sends `HEAD /`, which some Elasticsearch distributions refuse
/// (405); the sink never pings: readiness is the index template being accepted.
#[derive(Debug)]
pub struct ElasticsearchSink {
    client: Elasticsearch,
    config: ElasticsearchConfig,
    index: IndexName,
    ops: OnceLock<Ops>,
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Debug, Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<BulkItemError>,
}

#[derive(Debug, Deserialize)]
struct BulkItemError {
    #[serde(rename = "type", default)]
    ty: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Why a whole `_bulk` request failed.
#[derive(Debug, PartialEq, Eq)]
enum BulkFailure {
    /// Elasticsearch is down, busy or not reachable, or refuses the credentials: try again.
    /// The kind is [`SinkErrorKind::Unavailable`] (no answer) or [`SinkErrorKind::Status`].
    Transient(SinkErrorKind, String),
    /// The request is too large (413) or refused as a whole (400, e.g. an `_id` over 512
    /// bytes): some document in it is to blame, so it is split until that one is alone.
    Refused(String),
}

/// What to do about one bulk item.
#[derive(Debug, PartialEq, Eq)]
enum ItemOutcome {
    Done,
    Retry,
    Reject { class: String, message: String },
}

fn classify(item: &BulkItem) -> ItemOutcome {
    match item.status {
        200..=299 => ItemOutcome::Done,
        429 | 500..=599 => ItemOutcome::Retry,
        status => {
            let (ty, reason) = item
                .error
                .as_ref()
                .map(|e| (e.ty.as_str(), e.reason.as_deref().unwrap_or("")))
                .unwrap_or(("unknown", ""));
            ItemOutcome::Reject {
                class: format!("elasticsearch.{ty}"),
                message: format!("HTTP {status}: {reason}"),
            }
        }
    }
}

impl ElasticsearchSink {
    /// A sink for `config`.
    pub fn new(config: ElasticsearchConfig) -> Result<Self, SinkError> {
        let index = IndexName::parse(&config.index).map_err(SinkError::Fatal)?;
        let url = config
            .url
            .parse()
            .map_err(|e| SinkError::Fatal(format!("Elasticsearch URL `{}`: {e}", config.url)))?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(config.request_timeout)
            .disable_proxy()
            .build()
            .map_err(|e| SinkError::Fatal(format!("Elasticsearch client: {e}")))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            config,
            index,
            ops: OnceLock::new(),
        })
    }

    /// Counts a failure of Elasticsearch; one that says it is away makes the consumer not
    /// ready until a request succeeds again.
    fn failed(&self, kind: SinkErrorKind, n: u64) {
        if let Some(ops) = self.ops.get() {
            ops.metrics().sink_error(self.name(), kind, n);
            if matches!(
                kind,
                SinkErrorKind::Unavailable | SinkErrorKind::Status | SinkErrorKind::Prepare
            ) {
                ops.health().set_sink_ready(false);
            }
        }
    }

    /// Elasticsearch answered a request.
    fn answered(&self) {
        if let Some(ops) = self.ops.get() {
            ops.health().set_sink_ready(true);
        }
    }

    /// The client, for callers that need more of the API.
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    fn backoff(&self, attempt: u32) -> Duration {
        courier_consumer_main::retry::doubling(
            self.config.initial_backoff,
            self.config.max_backoff,
            attempt,
        )
    }

    async fn put_template(&self) -> Result<(), String> {
        let body = index_template(
            &self.index.pattern(),
            self.config.shards,
            self.config.replicas,
        );
        let response = self
            .client
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name(
                &self.config.template_name,
            ))
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status_code();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "HTTP {status}: {}",
                response.text().await.unwrap_or_default()
            ))
        }
    }

    /// One `_bulk` request for `items` (indices into `batch`); the outcome of each item, or
    /// why the whole request failed.
    async fn bulk(
        &self,
        batch: &[SinkRecord],
        lines: &[Vec<u8>],
        items: &[usize],
    ) -> Result<Vec<ItemOutcome>, BulkFailure> {
        let mut body = Vec::with_capacity(items.iter().map(|&i| lines[i].len() + 128).sum());
        for &i in items {
            let r = &batch[i];
            let action = Action {
                index: Target {
                    index: self
                        .index
                        .render(&r.origin.topic, &event_time(&r.event, &r.origin)),
                    id: super::document::document_id(&r.event),
                },
            };
            serde_json::to_writer(&mut body, &action)
                .map_err(|e| BulkFailure::Refused(e.to_string()))?;
            body.push(b'\n');
            body.extend_from_slice(&lines[i]);
            body.push(b'\n');
        }
        let response = self
            .client
            .bulk(BulkParts::None)
            .filter_path(&[
                "errors",
                "items.*.status",
                "items.*.error.type",
                "items.*.error.reason",
            ])
            .body(vec![bytes::Bytes::from(body)])
            .send()
            .await
            .map_err(|e| BulkFailure::Transient(SinkErrorKind::Unavailable, e.to_string()))?;
        let status = response.status_code();
        if !status.is_success() {
            let message = format!(
                "HTTP {status}: {}",
                response.text().await.unwrap_or_default()
            );
            return Err(match status.as_u16() {
                400 | 413 => BulkFailure::Refused(message),
                _ => BulkFailure::Transient(SinkErrorKind::Status, message),
            });
        }
        let parsed: BulkResponse = response
            .json()
            .await
            .map_err(|e| BulkFailure::Transient(SinkErrorKind::Status, e.to_string()))?;
        if parsed.items.len() != items.len() {
            return Err(BulkFailure::Transient(
                SinkErrorKind::Status,
                format!(
                    "bulk answered {} items for {}",
                    parsed.items.len(),
                    items.len()
                ),
            ));
        }
        Ok(parsed
            .items
            .iter()
            .map(|op| op.values().next().map_or(ItemOutcome::Retry, classify))
            .collect())
    }
}

/// A `_bulk` action line, `{"index":{"_index":…,"_id":…}}`, written without building a
/// JSON value per document.
#[derive(serde::Serialize)]
struct Action {
    index: Target,
}

#[derive(serde::Serialize)]
struct Target {
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_id")]
    id: String,
}

impl Sink for ElasticsearchSink {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn observe(&self, ops: &Ops) {
        // The first pipeline to run the sink gets its failures.
        let _ = self.ops.set(ops.clone());
    }

    async fn prepare(&self, cancel: &CancellationToken) -> Result<(), SinkError> {
        let mut attempt = 0;
        loop {
            match self.put_template().await {
                Ok(()) => {
                    tracing::info!(template = %self.config.template_name, pattern = %self.index.pattern(), "index template installed");
                    return Ok(());
                }
                Err(e) => {
                    attempt += 1;
                    self.failed(SinkErrorKind::Prepare, 1);
                    tracing::warn!(error = %e, attempt, "Elasticsearch not ready; waiting");
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
        }
    }

    async fn write(
        &self,
        batch: &[SinkRecord],
        cancel: &CancellationToken,
    ) -> Result<Vec<Rejection>, SinkError> {
        let lines: Vec<Vec<u8>> = batch
            .iter()
            .map(|r| document(&r.event, &r.origin))
            .collect();
        // Groups of items still to write, first to go at the front.
        let mut groups: VecDeque<Vec<usize>> = VecDeque::from([(0..batch.len()).collect()]);
        let mut rejections = Vec::new();
        let mut attempt = 0u32;
        while let Some(group) = groups.pop_front() {
            let again = match self.bulk(batch, &lines, &group).await {
                Ok(outcomes) => {
                    self.answered();
                    let mut retry = Vec::new();
                    for (&i, outcome) in group.iter().zip(outcomes) {
                        match outcome {
                            ItemOutcome::Done => {}
                            ItemOutcome::Retry => retry.push(i),
                            ItemOutcome::Reject { class, message } => {
                                self.failed(SinkErrorKind::ItemRejected, 1);
                                rejections.push(Rejection {
                                    index: i,
                                    class,
                                    message,
                                });
                            }
                        }
                    }
                    if !retry.is_empty() {
                        self.failed(SinkErrorKind::ItemRetried, retry.len() as u64);
                        tracing::info!(items = retry.len(), "bulk items to retry (429/5xx)");
                    }
                    retry
                }
                Err(BulkFailure::Refused(message)) if group.len() > 1 => {
                    self.failed(SinkErrorKind::RequestRefused, 1);
                    tracing::warn!(%message, docs = group.len(), "bulk request refused; splitting it to find the document to blame");
                    let (first, second) = group.split_at(group.len() / 2);
                    groups.push_front(second.to_vec());
                    groups.push_front(first.to_vec());
                    continue;
                }
                Err(BulkFailure::Refused(message)) => {
                    self.failed(SinkErrorKind::RequestRefused, 1);
                    rejections.push(Rejection {
                        index: group[0],
                        class: "elasticsearch.request_refused".into(),
                        message,
                    });
                    Vec::new()
                }
                Err(BulkFailure::Transient(kind, message)) => {
                    self.failed(kind, 1);
                    tracing::warn!(error = %message, docs = group.len(), attempt, "bulk request failed; retrying");
                    group
                }
            };
            if again.is_empty() {
                attempt = 0;
                continue;
            }
            groups.push_front(again);
            attempt += 1;
            if !courier_consumer_main::retry::sleep_unless_cancelled(self.backoff(attempt), cancel)
                .await
            {
                return Err(SinkError::Cancelled);
            }
        }
        rejections.sort_by_key(|r| r.index);
        Ok(rejections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_classified_by_status() {
        let item = |status, ty: &str| BulkItem {
            status,
            error: Some(BulkItemError {
                ty: ty.into(),
                reason: Some("why".into()),
            }),
        };
        assert_eq!(
            classify(&BulkItem {
                status: 201,
                error: None
            }),
            ItemOutcome::Done
        );
        assert_eq!(
            classify(&item(429, "es_rejected_execution_exception")),
            ItemOutcome::Retry
        );
        assert_eq!(
            classify(&item(503, "unavailable_shards_exception")),
            ItemOutcome::Retry
        );
        assert_eq!(
            classify(&item(400, "document_parsing_exception")),
            ItemOutcome::Reject {
                class: "elasticsearch.document_parsing_exception".into(),
                message: "HTTP 400: why".into()
            }
        );
    }
}
