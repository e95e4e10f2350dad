//! Sends one batch to the proxies until every event in it has a final outcome: delivered,
//! stored, refused for good, or out of time.
//!
//! A batch is a CloudEvents JSON array (`POST /v1/events`, `application/cloudevents-batch+json`)
//! and the proxy answers per event. Events answered `failed` — and every event of a request
//! that got no answer, or a whole-request 429/503 — are sent again with the same ids after a
//! backoff with jitter that honours `Retry-After`, so a proxy that already took one answers
//! with its first outcome instead of writing it twice. With several proxies, a failure moves
//! the client to the next one at once; it only waits once every proxy has failed in a row.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;

use crate::client::{Pending, Shared};
use crate::error::{DeliveryStatus, Error};

/// Content type of a JSON batch of CloudEvents.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// The proxies, and which one requests go to.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    /// `{base}/v1/events` per proxy.
    endpoints: Vec<String>,
    preferred: AtomicUsize,
    backoff_initial: Duration,
    backoff_max: Duration,
    retry_for: Duration,
}

/// What one request came to.
enum Answer {
    /// The proxy answered per event (200, 202, 207, 422 and usually 429/503).
    PerEvent {
        results: Vec<EventAnswer>,
        retry_after: Option<Duration>,
    },
    /// No per-event answer, and sending again may help (no connection, timeout, 5xx, 429).
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The request was refused as a whole for a reason a resend would not change.
    Refused { status: u16, problem: String },
}

#[derive(Debug, Deserialize)]
struct BatchBody {
    results: Vec<EventAnswer>,
}

#[derive(Debug, Deserialize)]
struct EventAnswer {
    status: String,
    code: u16,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    problem: Option<ProblemBody>,
}

#[derive(Debug, Deserialize)]
struct ProblemBody {
    #[serde(rename = "type")]
    ty: Option<String>,
    detail: Option<String>,
}

impl ProblemBody {
    fn describe(&self) -> String {
        match (&self.ty, &self.detail) {
            (Some(t), Some(d)) => format!("{t}: {d}"),
            (Some(t), None) => t.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => "no detail".into(),
        }
    }
}

impl Transport {
    pub(crate) fn new(
        http: reqwest::Client,
        bases: &[String],
        backoff_initial: Duration,
        backoff_max: Duration,
        retry_for: Duration,
    ) -> Self {
        Self {
            http,
            endpoints: bases
                .iter()
                .map(|b| format!("{}/v1/events", b.trim_end_matches('/')))
                .collect(),
            preferred: AtomicUsize::new(0),
            backoff_initial,
            backoff_max,
            retry_for,
        }
    }

    /// Delivers `batch` (retrying what may be retried) and reports each event's outcome.
    pub(crate) async fn deliver(&self, shared: &Arc<Shared>, mut pending: Vec<Pending>) {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            let endpoint = self.preferred.load(Ordering::Relaxed) % self.endpoints.len();
            if attempt > 0 {
                shared.stats.resent.add(pending.len());
            }
            let answer = self.post(endpoint, &pending).await;
            let (reason, retry_after) = match answer {
                Answer::PerEvent {
                    results,
                    retry_after,
                } if results.len() == pending.len() => {
                    let mut again = Vec::new();
                    let mut last = String::new();
                    for (p, r) in pending.into_iter().zip(results) {
                        match r.status.as_str() {
                            "delivered" | "stored" => {
                                let status = match (r.status.as_str(), r.partition, r.offset) {
                                    ("delivered", Some(partition), Some(offset)) => {
                                        DeliveryStatus::Delivered { partition, offset }
                                    }
                                    _ => DeliveryStatus::Stored,
                                };
                                shared.accept(p, status, r.topic);
                            }
                            "failed" => {
                                last = r
                                    .problem
                                    .map_or_else(|| format!("HTTP {}", r.code), |pb| pb.describe());
                                again.push(p);
                            }
                            _ => {
                                let problem = r
                                    .problem
                                    .map_or_else(|| r.status.clone(), |pb| pb.describe());
                                shared.complete(
                                    p,
                                    Err(Error::Refused {
                                        status: r.code,
                                        problem,
                                    }),
                                );
                            }
                        }
                    }
                    pending = again;
                    (last, retry_after)
                }
                Answer::PerEvent { results, .. } => (
                    format!(
                        "the proxy answered for {} events instead of {}",
                        results.len(),
                        pending.len()
                    ),
                    None,
                ),
                Answer::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
                Answer::Refused { status, problem } => {
                    for p in pending {
                        let problem = problem.clone();
                        shared.complete(p, Err(Error::Refused { status, problem }));
                    }
                    return;
                }
            };
            if pending.is_empty() {
                return;
            }
            // Move to the next proxy; another batch failing at the same time may have already.
            let next = (endpoint + 1) % self.endpoints.len();
            let _ = self.preferred.compare_exchange(
                endpoint,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            attempt += 1;
            let wait = self.wait_before(attempt, retry_after);
            if started.elapsed() + wait > self.retry_for {
                tracing::error!(
                    events = pending.len(),
                    first_id = %pending[0].id,
                    error = %reason,
                    "events not accepted by any proxy within the retry deadline"
                );
                for p in pending {
                    let last = reason.clone();
                    shared.complete(p, Err(Error::Undelivered { last }));
                }
                return;
            }
            tracing::debug!(events = pending.len(), attempt, error = %reason, ?wait, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// No wait while there is another proxy to try in this round; then exponential backoff
    /// (×2 per round, capped) with jitter in its upper half, and never less than the
    /// proxy's `Retry-After`.
    fn wait_before(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let n = u32::try_from(self.endpoints.len()).unwrap_or(u32::MAX);
        if !attempt.is_multiple_of(n) {
            return Duration::ZERO;
        }
        let round = (attempt / n).saturating_sub(1).min(20);
        let backoff = self
            .backoff_initial
            .saturating_mul(1 << round)
            .min(self.backoff_max);
        let jittered = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
        jittered.max(retry_after.unwrap_or_default())
    }

    async fn post(&self, endpoint: usize, pending: &[Pending]) -> Answer {
        let size = pending.iter().map(|p| p.json.len() + 1).sum::<usize>() + 1;
        let mut body = Vec::with_capacity(size);
        body.push(b'[');
        for (i, p) in pending.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&p.json);
        }
        body.push(b']');
        let url = &self.endpoints[endpoint];
        let response = match self
            .http
            .post(url)
            .header(CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Answer::Retry {
                    reason: format!("{url}: {e}"),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                // The answer was lost on the way: the proxy may have taken the events, and the
                // resend (same ids) is answered with their first outcome.
                return Answer::Retry {
                    reason: format!("{url}: reading the answer: {e}"),
                    retry_after,
                };
            }
        };
        if let Ok(batch) = serde_json::from_slice::<BatchBody>(&bytes) {
            return Answer::PerEvent {
                results: batch.results,
                retry_after,
            };
        }
        let problem = serde_json::from_slice::<ProblemBody>(&bytes).map_or_else(
            |_| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            |p| p.describe(),
        );
        // Worth sending again (same ids; the proxy answers a resend with the first outcome):
        // a busy or failing proxy, and answers that do not come from a Courier proxy's
        // publish endpoint — a success whose body is unreadable (the events may be in Kafka)
        // or a 404 from something in front of it.
        if status.is_server_error()
            || status.is_success()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::NOT_FOUND
        {
            Answer::Retry {
                reason: format!("{url}: HTTP {status}: {problem}"),
                retry_after,
            }
        } else {
            Answer::Refused {
                status: status.as_u16(),
                problem,
            }
        }
    }
}
