//! Topic management on the produce path: routes an event through the naming policy and makes
//! sure its topic exists, creating it on first use from the configured template.
//!
//! Known topics are cached, so the hot path is one read lock. The first request for an
//! unknown topic checks the cluster, and creates the topic when allowed. Concurrent first
//! requests for the same topic queue on one per-topic lock and reuse its outcome; a failure
//! is remembered for a moment, so a Kafka outage costs one metadata timeout per topic, not
//! one per waiting request.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use courier_shared::TopicError;
use courier_shared::policy::{CompiledPolicy, Refusal};
use courier_shared::topic::{check_collision, validate_topic_name};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaRespErr;

pub mod admin;

use crate::config::KafkaConfig;
use crate::delivery::producer_config;

/// Why a topic is not available for publishing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnsureError {
    /// The name is illegal or collides with an existing topic.
    #[error(transparent)]
    Name(#[from] TopicError),
    /// The topic does not exist and this request may not create it.
    #[error("topic `{0}` does not exist")]
    Unknown(String),
    /// The policy does not let it be created.
    #[error(transparent)]
    Policy(#[from] Refusal),
    /// Kafka could not be asked or refused to create it.
    #[error("Kafka: {0}")]
    Kafka(String),
    /// The service had as many topics created as the policy allows for now.
    #[error(
        "service `{service}` had {limit} topics created in the last {interval_secs} s, as many \
         as the policy allows; `{topic}` is not created"
    )]
    CreationLimited {
        /// The service.
        service: String,
        /// The topic not created.
        topic: String,
        /// The policy's `creation.per_service`.
        limit: u32,
        /// The policy's `creation.interval_secs`.
        interval_secs: u64,
        /// Seconds until the service's window starts again.
        retry_after_secs: u64,
    },
}

/// Whether a missing topic may be created, and on whose account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation<'a> {
    /// It must exist already (an explicit topic).
    Never,
    /// On first publish by this service: within the policy's `creation` limits.
    ForService(&'a str),
    /// For an event already accepted (the retry scheduler): the promise was made, so the
    /// topic is created whatever the count.
    Accepted,
}

/// Topics created per service in the current window (fixed windows: simple, and the bound
/// holds within a factor of two at a window's edge).
#[derive(Debug, Default)]
struct CreationCounts {
    by_service: HashMap<String, (Instant, u32)>,
}

/// Services tracked at most; beyond it, finished windows are dropped, and a service that
/// still finds no room is refused creation until one ends.
const MAX_CREATION_COUNTERS: usize = 10_000;

impl CreationCounts {
    /// Takes one creation from `service`'s window; `Err(seconds until it restarts)` when none
    /// is left.
    fn take(&mut self, service: &str, limit: u32, interval: Duration) -> Result<(), u64> {
        let now = Instant::now();
        if !self.by_service.contains_key(service) && self.by_service.len() >= MAX_CREATION_COUNTERS
        {
            self.by_service
                .retain(|_, (start, _)| now.duration_since(*start) < interval);
            if self.by_service.len() >= MAX_CREATION_COUNTERS {
                return Err(interval.as_secs().max(1));
            }
        }
        let (start, count) = self
            .by_service
            .entry(service.to_owned())
            .or_insert((now, 0));
        if now.duration_since(*start) >= interval {
            (*start, *count) = (now, 0);
        }
        if *count >= limit {
            let left = interval.saturating_sub(now.duration_since(*start));
            return Err(left.as_secs().max(1));
        }
        *count += 1;
        Ok(())
    }

    /// Whether `service` has a creation left, without taking it.
    fn has_room(&self, service: &str, limit: u32, interval: Duration) -> bool {
        self.by_service
            .get(service)
            .is_none_or(|(start, count)| *count < limit || start.elapsed() >= interval)
    }
}

/// The cluster as the proxy last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Number of brokers in the metadata.
    pub brokers: usize,
}

/// Routes events to topics and creates topics on demand.
pub struct TopicManager {
    policy: ArcSwap<CompiledPolicy>,
    producer: crate::delivery::CurrentProducer,
    admin: AdminClient<DefaultClientContext>,
    offsets: Arc<rdkafka::consumer::BaseConsumer>,
    kafka: KafkaConfig,
    timeout: Duration,
    known: RwLock<HashSet<String>>,
    pending: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Failure>>>>>,
    most_brokers_seen: AtomicUsize,
    creations: Mutex<CreationCounts>,
    cluster_replication: tokio::sync::OnceCell<i32>,
}

/// A failed check, remembered for [`FAILURE_TTL`].
#[derive(Debug)]
struct Failure {
    at: Instant,
    error: EnsureError,
}

/// How long a failed check answers for the same topic without asking Kafka again.
const FAILURE_TTL: Duration = Duration::from_secs(1);
/// Beyond this many topics being checked, entries nobody waits on are dropped.
const MAX_PENDING: usize = 1_024;

impl std::fmt::Debug for TopicManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicManager")
            .field("policy", &self.policy.load().policy())
            .finish_non_exhaustive()
    }
}

impl TopicManager {
    /// Uses the producer in use for metadata and a separate admin client for creation.
    pub fn new(
        policy: CompiledPolicy,
        kafka: &KafkaConfig,
        producer: crate::delivery::CurrentProducer,
    ) -> Result<Self, KafkaError> {
        let mut admin_config = producer_config(kafka, &Default::default());
        admin_config.set("client.id", format!("{}-admin", kafka.client_id));
        Ok(Self {
            policy: ArcSwap::from_pointee(policy),
            producer,
            admin: admin_config.create()?,
            offsets: Arc::new(admin::offsets_client(kafka)?),
            kafka: kafka.clone(),
            timeout: kafka.request_timeout(),
            known: RwLock::new(HashSet::new()),
            pending: Mutex::new(HashMap::new()),
            most_brokers_seen: AtomicUsize::new(0),
            creations: Mutex::new(CreationCounts::default()),
            cluster_replication: tokio::sync::OnceCell::new(),
        })
    }

    /// The policy in force. Hold the snapshot for a whole request, so one request sees one
    /// policy.
    pub fn policy(&self) -> Arc<CompiledPolicy> {
        self.policy.load_full()
    }

    /// Puts a new policy in force for every following request.
    pub fn set_policy(&self, policy: CompiledPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// Makes sure `topic` exists, creating it as `creation` allows when auto-creation is on.
    pub async fn ensure(&self, topic: &str, creation: Creation<'_>) -> Result<(), EnsureError> {
        if self.is_known(topic) {
            return Ok(());
        }
        validate_topic_name(topic)?;
        let slot = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING {
                pending.retain(|_, slot| Arc::strong_count(slot) > 1);
            }
            pending.entry(topic.to_owned()).or_default().clone()
        };
        let mut last_failure = slot.lock().await;
        if self.is_known(topic) {
            return Ok(());
        }
        if let Some(f) = last_failure
            .as_ref()
            .filter(|f| f.at.elapsed() < FAILURE_TTL)
        {
            return Err(f.error.clone());
        }
        let deadline = self.timeout * 2;
        let outcome = tokio::time::timeout(deadline, self.check_or_create(topic, creation))
            .await
            .unwrap_or_else(|_| Err(EnsureError::Kafka(format!("no answer within {deadline:?}"))));
        match outcome {
            Ok(()) => {
                self.remember(topic);
                drop(last_failure);
                if let Ok(mut pending) = self.pending.lock() {
                    pending.remove(topic);
                }
                Ok(())
            }
            // "Does not exist" was a quick, definite answer: asking again is cheap.
            Err(
                error @ (EnsureError::Unknown(_)
                | EnsureError::Name(_)
                | EnsureError::Policy(_)
                | EnsureError::CreationLimited { .. }),
            ) => Err(error),
            Err(error) => {
                *last_failure = Some(Failure {
                    at: Instant::now(),
                    error: error.clone(),
                });
                Err(error)
            }
        }
    }

    fn remember(&self, topic: &str) {
        if let Ok(mut known) = self.known.write() {
            known.insert(topic.to_owned());
        }
    }

    fn is_known(&self, topic: &str) -> bool {
        self.known.read().is_ok_and(|k| k.contains(topic))
    }

    /// Forgets a topic Kafka no longer knows (deleted behind the proxy's back), so the next
    /// event checks, and re-creates, it.
    pub fn forget(&self, topic: &str) {
        if let Ok(mut known) = self.known.write() {
            known.remove(topic);
        }
    }

    /// Whether `service` could still have a topic created now (for events stored while Kafka
    /// cannot be asked: they must not slip past the limit).
    pub fn creation_allowed(&self, service: &str) -> bool {
        let policy = self.policy();
        let limits = policy.creation_limits();
        self.creations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .has_room(
                service,
                limits.per_service,
                Duration::from_secs(limits.interval_secs),
            )
    }

    fn take_creation(&self, service: &str, topic: &str) -> Result<(), EnsureError> {
        let policy = self.policy();
        let limits = policy.creation_limits();
        self.creations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(
                service,
                limits.per_service,
                Duration::from_secs(limits.interval_secs),
            )
            .map_err(|retry_after_secs| EnsureError::CreationLimited {
                service: service.to_owned(),
                topic: topic.to_owned(),
                limit: limits.per_service,
                interval_secs: limits.interval_secs,
                retry_after_secs,
            })
    }

    async fn check_or_create(
        &self,
        topic: &str,
        creation: Creation<'_>,
    ) -> Result<(), EnsureError> {
        let create = creation != Creation::Never && self.policy.load().auto_create();
        let metadata = self.metadata().await?;
        // Present but without a leader yet (just created) still counts: delivery waits for it.
        if metadata.topics().iter().any(|t| {
            t.name() == topic
                && t.error() != Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        }) {
            return Ok(());
        }
        if !create {
            return Err(EnsureError::Unknown(topic.to_owned()));
        }
        check_collision(topic, metadata.topics().iter().map(|t| t.name()))?;
        if let Creation::ForService(service) = creation {
            self.take_creation(service, topic)?;
        }
        self.create(topic, &metadata).await
    }

    async fn create(&self, topic: &str, metadata: &Metadata) -> Result<(), EnsureError> {
        let policy = self.policy();
        let template = policy.template_for(topic)?;
        let rf = self.replication_for(template, metadata).await;
        self.create_topic(topic, template.partitions, rf, &template.topic_configs(rf))
            .await?;
        tracing::info!(
            topic,
            template = %template.name,
            partitions = template.partitions,
            replication_factor = rf,
            "created topic"
        );
        Ok(())
    }

    /// The replication factor of a new topic: the template's, else the cluster's own
    /// `default.replication.factor` (read once from a broker), else min(3, the most brokers
    /// ever seen). Never the live count: a topic created while a broker is down must still
    /// get all its replicas — Kafka refuses the creation meanwhile, and its events wait in the
    /// store — instead of being under-replicated for good.
    pub async fn replication_for(
        &self,
        template: &courier_shared::TopicTemplate,
        metadata: &Metadata,
    ) -> i32 {
        if let Some(rf) = template.replication_factor {
            return rf;
        }
        let live = metadata.brokers().len();
        let most_seen = self
            .most_brokers_seen
            .fetch_max(live, Ordering::Relaxed)
            .max(live);
        match self.cluster_replication(metadata).await {
            Some(rf) => rf,
            None => template.replication_for(most_seen),
        }
    }

    /// The cluster's `default.replication.factor`, once read.
    async fn cluster_replication(&self, metadata: &Metadata) -> Option<i32> {
        let broker = metadata.brokers().first()?.id();
        self.cluster_replication
            .get_or_try_init(|| async {
                let options = AdminOptions::new()
                    .operation_timeout(Some(self.timeout))
                    .request_timeout(Some(self.timeout));
                let results = self
                    .admin
                    .describe_configs(&[ResourceSpecifier::Broker(broker)], &options)
                    .await
                    .map_err(|e| e.to_string())?;
                let resource = results
                    .into_iter()
                    .next()
                    .ok_or("no answer")?
                    .map_err(|code| code.to_string())?;
                resource
                    .get("default.replication.factor")
                    .and_then(|e| e.value.as_deref())
                    .and_then(|v| v.parse::<i32>().ok())
                    .filter(|rf| *rf >= 1)
                    .ok_or_else(|| "no default.replication.factor".to_owned())
            })
            .await
            .inspect_err(|e: &String| {
                tracing::warn!(error = %e, "could not read the cluster's default.replication.factor");
            })
            .ok()
            .copied()
    }

    /// Creates one topic; an existing topic of that name counts as success.
    async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        rf: i32,
        configs: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), EnsureError> {
        match self
            .request_creation(topic, partitions, rf, configs)
            .await
            .map_err(EnsureError::Kafka)?
        {
            None | Some(RDKafkaErrorCode::TopicAlreadyExists) => Ok(()),
            Some(code) => Err(EnsureError::Kafka(format!("creating `{topic}`: {code}"))),
        }
    }

    /// Asks Kafka to create one topic. `Err` when Kafka could not be asked, `Ok(Some(code))`
    /// when it refused.
    async fn request_creation(
        &self,
        topic: &str,
        partitions: i32,
        rf: i32,
        configs: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<RDKafkaErrorCode>, String> {
        let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(rf));
        for (k, v) in configs {
            new_topic = new_topic.set(k, v);
        }
        let options = AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| e.to_string())?;
        Ok(results
            .into_iter()
            .find_map(|r| r.err())
            .map(|(_, code)| code))
    }

    /// Metadata of the whole cluster, fetched off the runtime.
    pub async fn metadata(&self) -> Result<Metadata, EnsureError> {
        let producer = self.producer.get();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
            .await
            .map_err(|e| EnsureError::Kafka(e.to_string()))?
            .map_err(|e| EnsureError::Kafka(e.to_string()))
    }

    /// Brokers reachable right now (for readiness).
    pub async fn cluster_info(&self) -> Result<ClusterInfo, EnsureError> {
        let metadata = self.metadata().await?;
        self.most_brokers_seen
            .fetch_max(metadata.brokers().len(), Ordering::Relaxed);
        Ok(ClusterInfo {
            brokers: metadata.brokers().len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_counted_per_service_and_window() {
        let mut counts = CreationCounts::default();
        let hour = Duration::from_secs(3_600);
        for _ in 0..3 {
            counts.take("billing", 3, hour).unwrap();
        }
        let wait = counts.take("billing", 3, hour).unwrap_err();
        assert!((3_590..=3_600).contains(&wait), "{wait}");
        assert!(!counts.has_room("billing", 3, hour));
        assert!(counts.has_room("orders", 3, hour));
        counts.take("orders", 3, hour).unwrap();
        // A window that has ended starts again.
        let ended = Duration::from_millis(1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(counts.has_room("billing", 3, ended));
        counts.take("billing", 3, ended).unwrap();
        assert!(counts.take("none", 0, hour).is_err(), "0 creates nothing");
    }

    #[test]
    fn the_counters_are_bounded() {
        let mut counts = CreationCounts::default();
        let hour = Duration::from_secs(3_600);
        for i in 0..MAX_CREATION_COUNTERS {
            counts.take(&format!("s{i}"), 5, hour).unwrap();
        }
        assert!(counts.take("one-more", 5, hour).is_err());
        assert_eq!(counts.by_service.len(), MAX_CREATION_COUNTERS);
        // Once their windows end, room is made.
        assert!(counts.take("one-more", 5, Duration::ZERO).is_ok());
    }
}
