//! Topic management on the produce path: routes an event through the naming policy and makes
//! sure its topic exists, creating it on first use from the configured template.
//!
//! Known topics are cached, so the hot path is one read lock. The first request for an
//! unknown topic checks the cluster, and creates the topic when allowed; concurrent first
//! requests for the same topic share that one check (a per-topic `OnceCell`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use courier_shared::topic::{check_collision, validate_topic_name};
use courier_shared::{Event, NamingPolicy, TopicError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::OnceCell;

use crate::config::{KafkaConfig, TopicsConfig};
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
    /// Kafka could not be asked or refused to create it.
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// The cluster as the proxy last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Number of brokers in the metadata.
    pub brokers: usize,
}

/// Routes events to topics and creates topics on demand.
pub struct TopicManager {
    policy: NamingPolicy,
    config: TopicsConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    timeout: Duration,
    known: RwLock<HashSet<String>>,
    pending: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
}

impl std::fmt::Debug for TopicManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicManager")
            .field("policy", &self.policy)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TopicManager {
    /// Uses `producer` for metadata and a separate admin client for creation.
    pub fn new(
        config: &TopicsConfig,
        kafka: &KafkaConfig,
        producer: FutureProducer,
    ) -> Result<Self, KafkaError> {
        let mut admin_config = producer_config(kafka, &Default::default());
        admin_config.set("client.id", format!("{}-admin", kafka.client_id));
        Ok(Self {
            policy: config.naming.clone(),
            config: config.clone(),
            producer,
            admin: admin_config.create()?,
            timeout: kafka.request_timeout(),
            known: RwLock::new(HashSet::new()),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The topic the naming policy gives this event.
    pub fn route(&self, event: &Event) -> Result<String, TopicError> {
        self.policy.topic_for(event)
    }

    /// Makes sure `topic` exists. Routed topics are created when auto-creation is on;
    /// explicit topics (`create = false`) must exist already.
    pub async fn ensure(&self, topic: &str, create: bool) -> Result<(), EnsureError> {
        if self.known.read().is_ok_and(|k| k.contains(topic)) {
            return Ok(());
        }
        validate_topic_name(topic)?;
        let cell = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.entry(topic.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| self.check_or_create(topic, create && self.config.auto_create))
            .await?;
        if let Ok(mut known) = self.known.write() {
            known.insert(topic.to_owned());
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(topic);
        }
        Ok(())
    }

    async fn check_or_create(&self, topic: &str, create: bool) -> Result<(), EnsureError> {
        let metadata = self.metadata().await?;
        if metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        {
            return Ok(());
        }
        if !create {
            return Err(EnsureError::Unknown(topic.to_owned()));
        }
        check_collision(topic, metadata.topics().iter().map(|t| t.name()))?;
        self.create(topic, metadata.brokers().len()).await
    }

    async fn create(&self, topic: &str, brokers: usize) -> Result<(), EnsureError> {
        let rf = self
            .config
            .replication_factor
            .unwrap_or_else(|| i32::try_from(brokers.clamp(1, 3)).unwrap_or(3));
        let min_isr = self
            .config
            .min_insync_replicas
            .unwrap_or(if rf >= 3 { 2 } else { 1 })
            .to_string();
        let mut new_topic =
            NewTopic::new(topic, self.config.partitions, TopicReplication::Fixed(rf))
                .set("min.insync.replicas", &min_isr);
        for (k, v) in &self.config.configs {
            new_topic = new_topic.set(k, v);
        }
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| EnsureError::Kafka(e.to_string()))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(EnsureError::Kafka(format!("creating `{name}`: {code}")));
                }
            }
        }
        tracing::info!(
            topic,
            partitions = self.config.partitions,
            replication_factor = rf,
            "created topic"
        );
        Ok(())
    }

    /// Metadata of the whole cluster, fetched off the runtime.
    pub async fn metadata(&self) -> Result<Metadata, EnsureError> {
        let producer = self.producer.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
            .await
            .map_err(|e| EnsureError::Kafka(e.to_string()))?
            .map_err(|e| EnsureError::Kafka(e.to_string()))
    }

    /// Brokers reachable right now (for readiness).
    pub async fn cluster_info(&self) -> Result<ClusterInfo, EnsureError> {
        let metadata = self.metadata().await?;
        Ok(ClusterInfo {
            brokers: metadata.brokers().len(),
        })
    }
}
