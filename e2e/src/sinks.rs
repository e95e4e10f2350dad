//! Fixtures for consumer and sink tests: the test Elasticsearch node, the consumer
//! binaries as child processes, publishing through a proxy, and a Splunk HTTP Event
//! Collector double.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Environment variable holding the test Elasticsearch node's URL.
pub const ES_URL_ENV: &str = "COURIER_TEST_ES_URL";
/// Environment variable holding the test Elasticsearch node's directory (for pause/resume).
pub const ES_DIR_ENV: &str = "COURIER_TEST_ES_DIR";

/// The test Elasticsearch node's URL. Panics with instructions when none was started.
pub fn es_url() -> String {
    std::env::var(ES_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{ES_URL_ENV} is not set: run the suite with `scripts/test.sh`, which starts a \
             single-node Elasticsearch, or `scripts/elasticsearch/node.sh start --dir DIR` \
             and `. DIR/env`"
        )
    })
}

/// Runs `scripts/elasticsearch/node.sh <action> --dir $COURIER_TEST_ES_DIR`.
pub fn es_node(action: &str) {
    let dir = std::env::var(ES_DIR_ENV).unwrap_or_else(|_| panic!("{ES_DIR_ENV} is not set"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/elasticsearch/node.sh");
    let status = Command::new(script)
        .args([action, "--dir", &dir])
        .stdout(Stdio::null())
        .status()
        .expect("run node.sh");
    assert!(status.success(), "node.sh {action} failed");
}

/// `_count` of the indices matching `pattern` after a refresh; None when Elasticsearch did
/// not answer.
pub async fn es_count(http: &reqwest::Client, pattern: &str) -> Option<u64> {
    let base = es_url();
    let _ = http
        .post(format!(
            "{base}/{pattern}/_refresh?ignore_unavailable=true&allow_no_indices=true"
        ))
        .send()
        .await;
    let r = http
        .get(format!(
            "{base}/{pattern}/_count?ignore_unavailable=true&allow_no_indices=true"
        ))
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    v["count"].as_u64()
}

/// Polls `_count` of `pattern` until it is `want` or `timeout` passed; the last count.
pub async fn es_wait_count(pattern: &str, want: u64, timeout: Duration) -> u64 {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let deadline = Instant::now() + timeout;
    let mut last = 0;
    while Instant::now() < deadline {
        if let Some(n) = es_count(&http, pattern).await {
            last = n;
            if n >= want {
                return n;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last
}

/// Orders `from..from + n` of service `svc`: ids `{svc}-{i}`, source `/{svc}`, type
/// `order.placed`, data `{"order": i, "amount": i}`.
pub fn orders(svc: &str, from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("{svc}-{i}"), "source": format!("/{svc}"),
                   "type": "order.placed", "data": {"order": i, "amount": i}})
        })
        .collect()
}

/// Publishes `events` through the proxy at `base` in batches of `batch`; panics unless
/// every event is durable (in Kafka, or in the proxy's store).
pub async fn publish(base: &str, events: &[Value], batch: usize) {
    let http = crate::http();
    for chunk in events.chunks(batch.max(1)) {
        let r = http
            .post(format!("{base}/v1/events"))
            .header("content-type", "application/cloudevents-batch+json")
            .json(&chunk)
            .send()
            .await
            .expect("publish");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        // 202 (or a 207 of delivered and stored events): the proxy's store has what
        // Kafka did not take in time, and delivers it shortly.
        let durable = matches!(status, 200 | 202)
            || (status == 207 && body["invalid"] == 0 && body["failed"] == 0);
        assert!(durable, "publish answered {status}: {body}");
    }
}

/// A consumer binary running as a child process, logging to a file.
#[derive(Debug)]
pub struct ConsumerProcess {
    child: Child,
}

impl ConsumerProcess {
    /// Starts `name` with `args`, appending its output to `log`.
    pub fn start(name: &str, args: &[String], log: &Path) -> Self {
        Self::start_with_env(name, args, &[], log)
    }

    /// [`Self::start`] with extra environment variables.
    pub fn start_with_env(name: &str, args: &[String], env: &[(&str, String)], log: &Path) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("consumer log");
        let child = Command::new(crate::chaos::binary(name))
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start consumer");
        Self { child }
    }

    /// Sends a signal (`-9`, `-TERM`) and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> ExitStatus {
        crate::chaos::signal_and_wait(&mut self.child, "consumer", signal, within)
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A failure the HEC double answers the next event request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HecFault {
    /// 503 `{"text":"Server is busy","code":9}`; nothing indexed.
    Busy,
    /// 400 `{"text":"Invalid data format","code":6,"invalid-event-number":n}`; nothing indexed.
    InvalidEvent(usize),
    /// 200 with an ack id that never turns true; nothing indexed.
    NeverAck,
    /// Indexer acknowledgement off for the token: 200 without an ack id; indexed.
    AckOff,
}

#[derive(Debug, Default)]
struct HecState {
    token: String,
    faults: VecDeque<HecFault>,
    next_ack: u64,
    /// Acked ids per channel.
    acked: Vec<(String, u64)>,
    indexed: Vec<Value>,
    requests: usize,
}

/// A local double of Splunk's HTTP Event Collector with indexer acknowledgement on: token
/// auth (`Authorization: Splunk <token>`), a required `X-Splunk-Request-Channel`, batches of
/// concatenated event objects (each needs a non-blank `event`), ack ids per channel and
/// `POST /services/collector/ack`; faults are scripted per request.
#[derive(Debug, Clone)]
pub struct HecDouble {
    state: Arc<Mutex<HecState>>,
    /// Its address.
    pub addr: SocketAddr,
}

fn hec_answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn hec_boxed(status: StatusCode, body: Value) -> Box<Response> {
    Box::new(hec_answer(status, body))
}

fn hec_check(
    state: &HecState,
    headers: &HeaderMap,
    query_channel: Option<&String>,
) -> Result<String, Box<Response>> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match auth.strip_prefix("Splunk ") {
        None => {
            return Err(hec_boxed(
                StatusCode::UNAUTHORIZED,
                json!({"text": "Token is required", "code": 2}),
            ));
        }
        Some(t) if t != state.token => {
            return Err(hec_boxed(
                StatusCode::FORBIDDEN,
                json!({"text": "Invalid token", "code": 4}),
            ));
        }
        Some(_) => {}
    }
    headers
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_channel.cloned())
        .filter(|c| uuid::Uuid::parse_str(c).is_ok())
        .ok_or_else(|| {
            hec_boxed(
                StatusCode::BAD_REQUEST,
                json!({"text": "Data channel is missing", "code": 10}),
            )
        })
}

async fn hec_event(
    State(state): State<Arc<Mutex<HecState>>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    s.requests += 1;
    let channel = match hec_check(&s, &headers, q.get("channel")) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut events = Vec::new();
    for (n, item) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .enumerate()
    {
        match item {
            Ok(v) if v.get("event").is_some_and(|e| !e.is_null() && e != "") => events.push(v),
            Ok(v) if v.get("event").is_some() => {
                return hec_answer(
                    StatusCode::BAD_REQUEST,
                    json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": n}),
                );
            }
            Ok(_) => {
                return hec_answer(
                    StatusCode::BAD_REQUEST,
                    json!({"text": "Event field is required", "code": 12, "invalid-event-number": n}),
                );
            }
            Err(_) => {
                return hec_answer(
                    StatusCode::BAD_REQUEST,
                    json!({"text": "Invalid data format", "code": 6, "invalid-event-number": n}),
                );
            }
        }
    }
    if events.is_empty() {
        return hec_answer(
            StatusCode::BAD_REQUEST,
            json!({"text": "No data", "code": 5}),
        );
    }
    let fault = s.faults.pop_front();
    let ack = s.next_ack;
    match fault {
        Some(HecFault::Busy) => hec_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"text": "Server is busy", "code": 9}),
        ),
        Some(HecFault::InvalidEvent(n)) => hec_answer(
            StatusCode::BAD_REQUEST,
            json!({"text": "Invalid data format", "code": 6, "invalid-event-number": n}),
        ),
        Some(HecFault::NeverAck) => {
            s.next_ack += 1;
            hec_answer(
                StatusCode::OK,
                json!({"text": "Success", "code": 0, "ackId": ack}),
            )
        }
        Some(HecFault::AckOff) => {
            s.indexed.extend(events);
            hec_answer(StatusCode::OK, json!({"text": "Success", "code": 0}))
        }
        None => {
            s.next_ack += 1;
            s.indexed.extend(events);
            s.acked.push((channel, ack));
            hec_answer(
                StatusCode::OK,
                json!({"text": "Success", "code": 0, "ackId": ack}),
            )
        }
    }
}

async fn hec_ack(
    State(state): State<Arc<Mutex<HecState>>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let s = state.lock().unwrap();
    let channel = match hec_check(&s, &headers, q.get("channel")) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Some(ids) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["acks"].as_array().cloned())
    else {
        return hec_answer(
            StatusCode::BAD_REQUEST,
            json!({"text": "Invalid data format", "code": 6}),
        );
    };
    let mut acks = serde_json::Map::new();
    for id in ids.iter().filter_map(Value::as_u64) {
        let done = s.acked.iter().any(|(c, a)| *c == channel && *a == id);
        acks.insert(id.to_string(), Value::Bool(done));
    }
    hec_answer(StatusCode::OK, json!({"acks": acks}))
}

impl HecDouble {
    /// Starts the double on an ephemeral port, accepting `token`.
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(Mutex::new(HecState {
            token: token.to_owned(),
            ..HecState::default()
        }));
        let app = axum::Router::new()
            .route("/services/collector/event", axum::routing::post(hec_event))
            .route("/services/collector/ack", axum::routing::post(hec_ack))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, addr }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next event requests with these faults, in order.
    pub fn script(&self, faults: &[HecFault]) {
        self.state
            .lock()
            .unwrap()
            .faults
            .extend(faults.iter().copied());
    }

    /// Events indexed (acknowledged), in order.
    pub fn indexed(&self) -> Vec<Value> {
        self.state.lock().unwrap().indexed.clone()
    }

    /// Event requests received.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }
}
