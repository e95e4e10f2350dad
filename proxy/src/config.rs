//! The proxy's configuration: one serde tree, read from defaults, then a TOML file, then
//! `COURIER_*` environment variables (`__` separates levels:
//! `COURIER_KAFKA__BOOTSTRAP_SERVERS`), then command-line flags. An unknown key is a startup
//! error that names it. Every default is chosen for zero loss.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use courier_shared::TopicPolicy;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The `[dlq]` section: the proxy's store (events Kafka did not acknowledge in time, and
/// beside them the settings, API keys, schemas and audit log: see [`crate::store`]) and the
/// retry scheduler ([`crate::retry`]). The section and its keys keep their names: deployed
/// configurations, the Helm chart and the `COURIER_DLQ__*` variables use them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Store events Kafka did not acknowledge in time (202). Off: such events get 503.
    pub enabled: bool,
    /// `sqlite:PATH` (embedded default) or `postgres://…` (several proxies sharing a store).
    pub url: String,
    /// Write requests waiting for a group commit; beyond it: 503 + Retry-After.
    pub write_queue: usize,
    /// Delivery attempts before an event is parked for an operator.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub backoff_initial_ms: u64,
    /// Each further retry waits this many times longer…
    pub backoff_factor: f64,
    /// …up to this delay.
    pub backoff_max_ms: u64,
    /// Events the scheduler claims per round.
    pub batch: usize,
    /// How often the scheduler looks for due events when idle.
    pub poll_interval_ms: u64,
    /// How long a redelivery waits for Kafka's acknowledgement.
    pub ack_timeout_ms: u64,
    /// Disk kept free beside a SQLite store (a file of zeros) so that redelivery and replay
    /// still work when the disk fills up; 0: none.
    pub reserve_bytes: u64,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "sqlite:courier-dlq.db".to_owned(),
            write_queue: 4_096,
            max_attempts: 5,
            backoff_initial_ms: 1_000,
            backoff_factor: 4.0,
            backoff_max_ms: 300_000,
            batch: 5_000,
            poll_interval_ms: 500,
            ack_timeout_ms: 30_000,
            reserve_bytes: 16 * 1024 * 1024,
        }
    }
}

/// `COURIER_*` variables that are not configuration keys: the config file's path (a flag's
/// variable) and the scripts' own settings. Every other `COURIER_*` variable must name a key,
/// so a typo is a startup error.
const NOT_CONFIG: [&str; 3] = ["config", "cache", "keep_logs"];

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// How to reach Kafka and how to produce.
    pub kafka: KafkaConfig,
    /// Size limits on what clients send.
    pub limits: LimitsConfig,
    /// The delivery pipeline.
    pub delivery: DeliveryConfig,
    /// Topic naming and auto-creation.
    pub topics: TopicPolicy,
    /// The store and the retry scheduler (`[dlq]`: see [`DlqConfig`]).
    pub dlq: DlqConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// API keys of the publish endpoints.
    pub auth: AuthConfig,
    /// HTTPS on the listener; unset: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// The async runtime.
    pub runtime: RuntimeConfig,
}

/// The async runtime's threads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads of the async runtime; 0: one fewer than the cores the process may use
    /// (cgroup quotas included), at least one. The core left over is for librdkafka's own
    /// threads (one per broker, its main thread, the delivery reports), which take a fifth of
    /// the proxy's CPU; as many workers as cores only compete with them and with each other
    /// (work stealing, wake-ups, memory freed on another thread), and cost more CPU per event
    /// for the same throughput (measured in the README's benchmark section).
    pub worker_threads: usize,
}

impl RuntimeConfig {
    /// The number of worker threads to start.
    pub fn workers(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        cores.saturating_sub(1).max(1)
    }
}

/// The listener's certificate (HTTPS with rustls: TLS 1.2 and 1.3, HTTP/2 by ALPN).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_path: std::path::PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: std::path::PathBuf,
}

/// The admin API's credential.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token for `/admin/api`; unset disables the admin API.
    pub token: Option<String>,
}

/// Authentication of the publish endpoints by per-service API keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Publishing needs an API key, and the key names the service. Off only for local
    /// development: every caller may then claim any service (logged as a warning at start).
    pub enabled: bool,
    /// Keys declared here, by their SHA-256 (for deployments without a store; keys made
    /// through the admin API live in the store).
    pub keys: Vec<ConfigKey>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: Vec::new(),
        }
    }
}

/// An API key declared in the configuration file: `[[auth.keys]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigKey {
    /// The service the key speaks for.
    pub service: String,
    /// SHA-256 of the key, 64 hex digits (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// An operator's note.
    #[serde(default)]
    pub label: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            kafka: KafkaConfig::default(),
            limits: LimitsConfig::default(),
            delivery: DeliveryConfig::default(),
            topics: TopicPolicy::default(),
            dlq: DlqConfig::default(),
            admin: AdminConfig::default(),
            auth: AuthConfig::default(),
            tls: None,
            runtime: RuntimeConfig::default(),
        }
    }
}

/// Kafka connection and producer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `client.id`.
    pub client_id: String,
    /// `compression.type` of produced batches.
    pub compression: String,
    /// `linger.ms`: how long the producer waits to fill a batch. 20 ms rather than librdkafka's
    /// 5: fewer, fuller produce requests cost the proxy and the brokers far less CPU per event
    /// (measured with `courier-bench`, see the README).
    pub linger_ms: u64,
    /// `message.timeout.ms`: how long librdkafka keeps retrying one record.
    pub message_timeout_ms: u64,
    /// Timeout of metadata and admin requests.
    pub request_timeout_ms: u64,
    /// How often librdkafka reports the producer's statistics to the metrics; 0: never.
    pub statistics_interval_ms: u64,
    /// Extra librdkafka properties, applied last (e.g. `security.protocol`).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            client_id: "courier-proxy".to_owned(),
            compression: "lz4".to_owned(),
            linger_ms: 20,
            message_timeout_ms: 30_000,
            request_timeout_ms: 5_000,
            statistics_interval_ms: 5_000,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Timeout of metadata and admin requests.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// What a request may carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest single event (record key + value + headers), in bytes. Keep it at or below the
    /// topics' `max.message.bytes` (Kafka's default is about 1 MiB).
    pub max_event_bytes: usize,
    /// Most events in one batch or NDJSON body.
    pub max_batch_events: usize,
    /// Requests handled at once; more wait for a slot before their body is read, which bounds
    /// the memory bodies take to about this many times `max_body_bytes`.
    pub max_concurrent_requests: usize,
    /// Open connections at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Connections the kernel completes and queues before the proxy accepts them (the
    /// listen backlog; Linux caps it at `net.core.somaxconn`, 4,096 by default). A burst of
    /// new connections beyond it has its handshakes dropped, and those clients wait out a
    /// retransmit (a second or more).
    pub listen_backlog: u32,
    /// Most header fields in one request (HTTP/1); beyond: 431.
    pub max_headers: usize,
    /// Largest request head (HTTP/1 read buffer, HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
    /// Time to receive a request's head, and an idle connection's next one.
    pub header_read_timeout_ms: u64,
    /// Time to receive a whole request body; beyond: 408. Slow-body clients hold a request
    /// slot at most this long.
    pub body_read_timeout_ms: u64,
    /// Events per second one service may publish (bursts up to as many); beyond: 429 with
    /// `Retry-After`. 0: no limit.
    pub service_events_per_sec: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 * 1024 * 1024,
            max_event_bytes: 1_000_000,
            max_batch_events: 1_000,
            max_concurrent_requests: 512,
            max_connections: 4_096,
            listen_backlog: 4_096,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            service_events_per_sec: 0,
        }
    }
}

/// The delivery pipeline between the HTTP handlers and the producer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Capacity of the intake queue: events accepted from clients and not yet acknowledged by
    /// Kafka. When it is full, requests wait up to `enqueue_wait_ms`, then get 429.
    pub queue_capacity: usize,
    /// How long a request waits for room in a full queue before it is refused.
    pub enqueue_wait_ms: u64,
    /// How long a request waits for Kafka's acknowledgement before its events are stored in
    /// the store (202), or refused with 503 when the store is disabled.
    pub ack_timeout_ms: u64,
    /// `Retry-After` (seconds) sent with 429 and 503.
    pub retry_after_secs: u64,
    /// How long shutdown waits for the producer to flush.
    pub shutdown_flush_ms: u64,
    /// Stored events the retry scheduler may have in flight at once (a budget apart from
    /// `queue_capacity`, so redelivery never takes live traffic's room).
    pub redelivery_in_flight: usize,
    /// While Kafka is down, one request per this interval still tries Kafka…
    pub probe_interval_ms: u64,
    /// …waiting at most this long for the acknowledgement before its events are stored.
    pub probe_ack_timeout_ms: u64,
    /// How long the proxy remembers an accepted event's outcome by (source, id), so that a
    /// client's retry gets the first outcome, not a second copy. 0 disables it.
    pub dedupe_window_secs: u64,
    /// Memory the dedupe window may take, in bytes (about 71 per remembered event, whatever
    /// its ids: see [`crate::dedupe::DedupeWindow`]); the oldest go first beyond it. The
    /// default, 16 MiB, remembers about 229,000 events.
    pub dedupe_max_bytes: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 50_000,
            enqueue_wait_ms: 100,
            ack_timeout_ms: 5_000,
            retry_after_secs: 1,
            shutdown_flush_ms: 15_000,
            redelivery_in_flight: 20_000,
            probe_interval_ms: 1_000,
            probe_ack_timeout_ms: 500,
            dedupe_window_secs: 600,
            dedupe_max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a key is unknown or mistyped.
    #[error(transparent)]
    Load(#[from] Box<figment::Error>),
    /// The values are individually fine but do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `file` (if any), then `COURIER_*` variables, then `overrides`
    /// (flags, already shaped like the config tree).
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("COURIER_").split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            !(NOT_CONFIG.contains(&key.as_str()) || key.starts_with("test_"))
        });
        let config: Config = figment
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.limits.max_event_bytes > self.limits.max_body_bytes {
            return invalid("limits.max_event_bytes exceeds limits.max_body_bytes");
        }
        if self.limits.max_batch_events == 0 || self.delivery.queue_capacity == 0 {
            return invalid("limits.max_batch_events and delivery.queue_capacity must be > 0");
        }
        if self.limits.max_batch_events > self.delivery.queue_capacity {
            return invalid("limits.max_batch_events exceeds delivery.queue_capacity");
        }
        if self.dlq.max_attempts == 0 || self.dlq.batch == 0 || self.dlq.write_queue == 0 {
            return invalid("dlq.max_attempts, dlq.batch and dlq.write_queue must be > 0");
        }
        if self.dlq.batch > self.delivery.redelivery_in_flight {
            return invalid("dlq.batch exceeds delivery.redelivery_in_flight");
        }
        for key in &self.auth.keys {
            if key.service.is_empty()
                || courier_shared::topic::normalise_component(&key.service) != key.service
            {
                return Err(ConfigError::Invalid(format!(
                    "auth.keys: `{}` is not a service name (lowercase letters, digits and `-`)",
                    key.service
                )));
            }
            let Some(hash) = crate::secret::parse_hash(&key.sha256) else {
                return Err(ConfigError::Invalid(format!(
                    "auth.keys: the sha256 of service `{}` is not 64 hex digits",
                    key.service
                )));
            };
            if let Some(token) = &self.admin.token
                && crate::secret::hash(token) == hash
            {
                return invalid(
                    "auth.keys: a key is the admin token; the admin token must not publish",
                );
            }
        }
        self.topics
            .clone()
            .compile()
            .map(drop)
            .map_err(|e| ConfigError::Invalid(format!("topics: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn workers_leave_a_core_to_librdkafka() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let default = RuntimeConfig::default().workers();
        assert_eq!(default, cores.saturating_sub(1).max(1));
        assert!(default >= 1 && default <= cores);
        let set = RuntimeConfig { worker_threads: 3 };
        assert_eq!(set.workers(), 3, "a set count is taken as it is");
    }

    #[test]
    fn file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "courier.toml",
                r#"
                listen = "127.0.0.1:9000"
                [kafka]
                bootstrap_servers = "file:1"
                linger_ms = 7
                "#,
            )?;
            jail.set_env("COURIER_KAFKA__BOOTSTRAP_SERVERS", "env:1");
            jail.set_env("COURIER_TEST_BOOTSTRAP", "ignored");
            let flags = serde_json::json!({"listen": "127.0.0.1:9001"});
            let c = Config::load(Some(Path::new("courier.toml")), flags).unwrap();
            assert_eq!(c.listen.port(), 9001);
            assert_eq!(c.kafka.bootstrap_servers, "env:1");
            assert_eq!(c.kafka.linger_ms, 7);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("courier.toml", "[kafka]\nbootstrap_server = \"x\"\n")?;
            let err = Config::load(Some(Path::new("courier.toml")), serde_json::json!({}))
                .unwrap_err()
                .to_string();
            assert!(err.contains("bootstrap_server"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_mistyped_variable_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("COURIER_KAKFA__BOOTSTRAP_SERVERS", "x");
            let err = Config::load(None, serde_json::json!({}))
                .unwrap_err()
                .to_string();
            assert!(err.contains("kakfa"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn config_keys_are_checked() {
        let mut c = Config::default();
        assert!(c.auth.enabled, "auth is on unless turned off");
        c.auth.keys.push(ConfigKey {
            service: "billing".into(),
            sha256: crate::secret::hex(&crate::secret::hash("ck_x")),
            label: String::new(),
        });
        c.validate().unwrap();
        c.admin.token = Some("ck_x".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("admin token")
        );
        c.admin.token = None;
        c.auth.keys[0].sha256 = "abc".into();
        assert!(c.validate().unwrap_err().to_string().contains("64 hex"));
        c.auth.keys[0].sha256 = crate::secret::hex(&crate::secret::hash("ck_x"));
        c.auth.keys[0].service = "Billing".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("service name")
        );
    }

    #[test]
    fn inconsistent_limits_are_refused() {
        let mut c = Config::default();
        c.limits.max_event_bytes = c.limits.max_body_bytes + 1;
        assert!(c.validate().is_err());
        Config::default().validate().unwrap();
    }
}
