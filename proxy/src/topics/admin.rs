//! What the admin API asks Kafka about topics: the list with partition, replica and ISR
//! health and end offsets; one topic's partitions, configs and consumer-group lag; creating,
//! re-configuring and deleting topics.
//!
//! Blocking librdkafka calls (metadata, offsets, committed offsets) run off the async
//! workers. Offsets of all partitions are asked in one batched request per broker.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::admin::{AdminOptions, AlterConfig, ConfigSource, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::{Metadata, MetadataTopic};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use super::{EnsureError, TopicManager};
use crate::config::KafkaConfig;

/// Most consumer groups whose lag a topic's detail shows.
const MAX_GROUPS: usize = 50;

/// Why an admin operation on a topic failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopicAdminError {
    /// The topic exists already.
    #[error("topic `{0}` exists already")]
    Exists(String),
    /// There is no such topic.
    #[error("no topic `{0}`")]
    Missing(String),
    /// Kafka refused the request (the message says why).
    #[error("Kafka refused: {0}")]
    Refused(String),
    /// Kafka could not be asked.
    #[error("Kafka: {0}")]
    Unavailable(String),
}

impl From<EnsureError> for TopicAdminError {
    fn from(e: EnsureError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A topic as the topics table shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TopicSummary {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: usize,
    /// Replicas per partition (the largest, should they differ).
    pub replication_factor: usize,
    /// `min.insync.replicas`, when it could be read.
    #[schema(required = true)]
    pub min_insync_replicas: Option<i32>,
    /// Partitions with fewer in-sync replicas than replicas.
    pub under_replicated: usize,
    /// Partitions with fewer in-sync replicas than `min.insync.replicas`: `acks=all` writes
    /// to them fail.
    pub below_min_isr: usize,
    /// Partitions without a leader.
    pub offline: usize,
    /// `healthy`, `under-replicated`, `below-min-isr` or `offline`.
    pub health: &'static str,
    /// Sum of the partitions' end offsets (records ever written).
    pub end_offsets: i64,
    /// Records currently kept (end minus start offsets).
    pub messages: i64,
    /// Kafka's own topics (`__consumer_offsets`, …).
    pub internal: bool,
}

/// One partition of a topic.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartitionView {
    /// Partition id.
    pub partition: i32,
    /// Leader broker, -1 when none.
    pub leader: i32,
    /// Replica brokers.
    pub replicas: Vec<i32>,
    /// In-sync replica brokers.
    pub isr: Vec<i32>,
    /// First offset kept.
    pub start_offset: i64,
    /// Next offset to be written.
    pub end_offset: i64,
}

/// A topic config entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfigView {
    /// Name.
    pub name: String,
    /// Value (hidden when sensitive).
    #[schema(required = true)]
    pub value: Option<String>,
    /// `topic` when set on the topic, `broker` or `default` when inherited.
    pub source: &'static str,
}

/// A consumer group's progress on a topic.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupLag {
    /// Group id.
    pub group: String,
    /// Group state as the coordinator reports it.
    pub state: String,
    /// Members.
    pub members: usize,
    /// Records not yet consumed, over all partitions.
    pub lag: i64,
    /// Per partition: committed offset and lag.
    pub partitions: Vec<PartitionLag>,
}

/// A group's progress on one partition.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartitionLag {
    /// Partition id.
    pub partition: i32,
    /// Committed offset.
    pub committed: i64,
    /// End offset minus committed offset.
    pub lag: i64,
}

/// A topic with everything the detail view shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TopicDetail {
    /// The summary row.
    #[serde(flatten)]
    pub summary: TopicSummary,
    /// Partitions.
    pub partition_list: Vec<PartitionView>,
    /// Config entries.
    pub configs: Vec<ConfigView>,
    /// Consumer groups with committed offsets on the topic.
    pub groups: Vec<GroupLag>,
}

/// A consumer used only to read offsets (no group, never subscribes).
pub(super) fn offsets_client(
    kafka: &KafkaConfig,
) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    consumer_config(kafka, None).create()
}

fn consumer_config(kafka: &KafkaConfig, group: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", format!("{}-admin", kafka.client_id))
        .set("enable.auto.commit", "false");
    if let Some(group) = group {
        c.set("group.id", group);
    }
    // Security settings apply to every client; producer-only keys would only be warned about.
    for (k, v) in &kafka.properties {
        if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
            c.set(k, v);
        }
    }
    c
}

fn source_name(source: &ConfigSource) -> &'static str {
    match source {
        ConfigSource::DynamicTopic => "topic",
        ConfigSource::DynamicBroker
        | ConfigSource::DynamicDefaultBroker
        | ConfigSource::StaticBroker => "broker",
        ConfigSource::Default | ConfigSource::Unknown => "default",
    }
}

/// Start and end offsets per (topic, partition).
type Offsets = HashMap<(String, i32), (i64, i64)>;

/// A topic's metadata, owned (librdkafka's borrowed metadata cannot cross an `.await`).
#[derive(Debug, Clone)]
struct TopicMeta {
    name: String,
    partitions: Vec<PartitionMeta>,
}

#[derive(Debug, Clone)]
struct PartitionMeta {
    id: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

impl From<&MetadataTopic> for TopicMeta {
    fn from(t: &MetadataTopic) -> Self {
        Self {
            name: t.name().to_owned(),
            partitions: t
                .partitions()
                .iter()
                .map(|p| PartitionMeta {
                    id: p.id(),
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                })
                .collect(),
        }
    }
}

fn owned_topics(metadata: &Metadata) -> Vec<TopicMeta> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(TopicMeta::from)
        .collect()
}

impl TopicManager {
    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout))
    }

    async fn offsets(&self, topics: &[TopicMeta]) -> Result<Offsets, TopicAdminError> {
        let mut starts = TopicPartitionList::new();
        for t in topics {
            for p in &t.partitions {
                starts
                    .add_partition_offset(&t.name, p.id, Offset::Beginning)
                    .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?;
            }
        }
        let mut ends = starts.clone();
        ends.set_all_offsets(Offset::End)
            .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?;
        let consumer = self.offsets.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            let starts = consumer.offsets_for_times(starts, timeout)?;
            let ends = consumer.offsets_for_times(ends, timeout)?;
            let mut out = Offsets::new();
            for (list, is_end) in [(starts, false), (ends, true)] {
                for e in list.elements() {
                    let offset = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0);
                    let entry = out
                        .entry((e.topic().to_owned(), e.partition()))
                        .or_insert((0, 0));
                    if is_end {
                        entry.1 = offset;
                    } else {
                        entry.0 = offset;
                    }
                }
            }
            Ok::<_, rdkafka::error::KafkaError>(out)
        })
        .await
        .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?
        .map_err(|e| TopicAdminError::Unavailable(e.to_string()))
    }

    async fn min_isr(&self, names: &[&str]) -> HashMap<String, i32> {
        let specifiers: Vec<ResourceSpecifier<'_>> =
            names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let Ok(results) = self
            .admin
            .describe_configs(&specifiers, &self.options())
            .await
        else {
            return HashMap::new();
        };
        results
            .into_iter()
            .flatten()
            .filter_map(|resource| {
                let rdkafka::admin::OwnedResourceSpecifier::Topic(name) = &resource.specifier
                else {
                    return None;
                };
                let value = resource.get("min.insync.replicas")?.value.as_deref()?;
                Some((name.clone(), value.parse().ok()?))
            })
            .collect()
    }

    fn summary(t: &TopicMeta, min_isr: Option<i32>, offsets: &Offsets) -> TopicSummary {
        let partitions = &t.partitions;
        let min = usize::try_from(min_isr.unwrap_or(1)).unwrap_or(1);
        let under_replicated = partitions
            .iter()
            .filter(|p| p.isr.len() < p.replicas.len())
            .count();
        let below_min_isr = partitions.iter().filter(|p| p.isr.len() < min).count();
        let offline = partitions.iter().filter(|p| p.leader < 0).count();
        let (mut end_offsets, mut messages) = (0, 0);
        for p in partitions {
            if let Some((start, end)) = offsets.get(&(t.name.clone(), p.id)) {
                end_offsets += end;
                messages += (end - start).max(0);
            }
        }
        TopicSummary {
            name: t.name.clone(),
            partitions: partitions.len(),
            replication_factor: partitions
                .iter()
                .map(|p| p.replicas.len())
                .max()
                .unwrap_or(0),
            min_insync_replicas: min_isr,
            under_replicated,
            below_min_isr,
            offline,
            health: if offline > 0 {
                "offline"
            } else if below_min_isr > 0 {
                "below-min-isr"
            } else if under_replicated > 0 {
                "under-replicated"
            } else {
                "healthy"
            },
            end_offsets,
            messages,
            internal: t.name.starts_with("__"),
        }
    }

    /// Every topic with its health and offsets, by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>, TopicAdminError> {
        let topics = owned_topics(&self.metadata().await?);
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        let (offsets, min_isr) = tokio::join!(self.offsets(&topics), self.min_isr(&names));
        let offsets = offsets?;
        let mut out: Vec<TopicSummary> = topics
            .iter()
            .map(|t| Self::summary(t, min_isr.get(&t.name).copied(), &offsets))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One topic: partitions, configs and consumer-group lag; `None` when it does not exist.
    pub async fn describe_topic(&self, name: &str) -> Result<Option<TopicDetail>, TopicAdminError> {
        let Some(topic) = find(&self.metadata().await?, name) else {
            return Ok(None);
        };
        let offsets = self.offsets(std::slice::from_ref(&topic)).await?;
        let configs = self.topic_configs(name).await?;
        let min_isr = configs
            .iter()
            .find(|c| c.name == "min.insync.replicas")
            .and_then(|c| c.value.as_deref()?.parse().ok());
        let partition_list = topic
            .partitions
            .iter()
            .map(|p| {
                let (start_offset, end_offset) = offsets
                    .get(&(name.to_owned(), p.id))
                    .copied()
                    .unwrap_or_default();
                PartitionView {
                    partition: p.id,
                    leader: p.leader,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    start_offset,
                    end_offset,
                }
            })
            .collect::<Vec<_>>();
        let groups = self.group_lag(name, &partition_list).await?;
        Ok(Some(TopicDetail {
            summary: Self::summary(&topic, min_isr, &offsets),
            partition_list,
            configs,
            groups,
        }))
    }

    async fn topic_configs(&self, name: &str) -> Result<Vec<ConfigView>, TopicAdminError> {
        let results = self
            .admin
            .describe_configs(&[ResourceSpecifier::Topic(name)], &self.options())
            .await
            .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?;
        let resource = results
            .into_iter()
            .next()
            .ok_or_else(|| TopicAdminError::Unavailable("no answer".into()))?
            .map_err(|code| TopicAdminError::Refused(code.to_string()))?;
        let mut configs: Vec<ConfigView> = resource
            .entries
            .iter()
            .map(|e| ConfigView {
                name: e.name.clone(),
                value: if e.is_sensitive {
                    None
                } else {
                    e.value.clone()
                },
                source: source_name(&e.source),
            })
            .collect();
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(configs)
    }

    /// Committed offsets of every consumer group that has some on `topic`.
    async fn group_lag(
        &self,
        topic: &str,
        partitions: &[PartitionView],
    ) -> Result<Vec<GroupLag>, TopicAdminError> {
        let client = self.offsets.clone();
        let kafka = self.kafka.clone();
        let timeout = self.timeout;
        let topic = topic.to_owned();
        let ends: Vec<(i32, i64)> = partitions
            .iter()
            .map(|p| (p.partition, p.end_offset))
            .collect();
        tokio::task::spawn_blocking(move || {
            let list = client
                .fetch_group_list(None, timeout)
                .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?;
            let mut out = Vec::new();
            for g in list
                .groups()
                .iter()
                .filter(|g| g.protocol_type() == "consumer" || g.protocol_type().is_empty())
                .take(MAX_GROUPS)
            {
                let consumer: BaseConsumer = consumer_config(&kafka, Some(g.name()))
                    .create()
                    .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?;
                let mut tpl = TopicPartitionList::new();
                for (p, _) in &ends {
                    tpl.add_partition(&topic, *p);
                }
                let Ok(committed) = consumer.committed_offsets(tpl, timeout) else {
                    continue;
                };
                let mut lag = GroupLag {
                    group: g.name().to_owned(),
                    state: g.state().to_owned(),
                    members: g.members().len(),
                    lag: 0,
                    partitions: Vec::new(),
                };
                for e in committed.elements() {
                    let Some(offset) = e.offset().to_raw().filter(|o| *o >= 0) else {
                        continue;
                    };
                    let end = ends
                        .iter()
                        .find(|(p, _)| *p == e.partition())
                        .map_or(0, |(_, end)| *end);
                    let behind = (end - offset).max(0);
                    lag.lag += behind;
                    lag.partitions.push(PartitionLag {
                        partition: e.partition(),
                        committed: offset,
                        lag: behind,
                    });
                }
                if !lag.partitions.is_empty() {
                    out.push(lag);
                }
            }
            out.sort_by(|a, b| a.group.cmp(&b.group));
            Ok(out)
        })
        .await
        .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?
    }

    /// Creates a topic; an existing topic is a conflict, not a success. Returns once the
    /// cluster's metadata lists the topic with a leader for every partition (or the request
    /// timeout has passed): Kafka answers a creation before every broker's metadata has it,
    /// and a listing made at once could miss the topic just created.
    pub async fn create_topic_exact(
        &self,
        name: &str,
        partitions: i32,
        rf: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), TopicAdminError> {
        match self
            .request_creation(name, partitions, rf, configs)
            .await
            .map_err(TopicAdminError::Unavailable)?
        {
            None => {
                self.remember(name);
                self.await_listed(name, partitions).await;
                Ok(())
            }
            Some(RDKafkaErrorCode::TopicAlreadyExists) => {
                Err(TopicAdminError::Exists(name.to_owned()))
            }
            Some(code) => Err(TopicAdminError::Refused(code.to_string())),
        }
    }

    /// Waits, within the request timeout, until the metadata lists `name` with `partitions`
    /// partitions that each have a leader.
    async fn await_listed(&self, name: &str, partitions: i32) {
        let listed = async {
            loop {
                let topic = self.metadata().await.ok().and_then(|m| find(&m, name));
                if topic.is_some_and(|t| {
                    t.partitions.len() == usize::try_from(partitions).unwrap_or(0)
                        && t.partitions.iter().all(|p| p.leader >= 0)
                }) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        if tokio::time::timeout(self.timeout, listed).await.is_err() {
            tracing::warn!(
                topic = name,
                "created, but not yet listed with a leader for every partition"
            );
        }
    }

    /// Sets (`Some`) or resets to the default (`None`) topic configs; returns the topic's own
    /// configs before and after.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), TopicAdminError> {
        if find(&self.metadata().await?, name).is_none() {
            return Err(TopicAdminError::Missing(name.to_owned()));
        }
        // AlterConfigs replaces the topic's whole config set: start from what is set now.
        let before: BTreeMap<String, String> = self
            .topic_configs(name)
            .await?
            .into_iter()
            .filter(|c| c.source == "topic")
            .filter_map(|c| Some((c.name, c.value?)))
            .collect();
        let mut after = before.clone();
        for (k, v) in changes {
            match v {
                Some(v) => after.insert(k.clone(), v.clone()),
                None => after.remove(k),
            };
        }
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in &after {
            alter = alter.set(k, v);
        }
        let results = self
            .admin
            .alter_configs([&alter], &self.options())
            .await
            .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(TopicAdminError::Refused(code.to_string()));
            }
        }
        Ok((before, after))
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicAdminError> {
        let results = self
            .admin
            .delete_topics(&[name], &self.options())
            .await
            .map_err(|e| TopicAdminError::Unavailable(e.to_string()))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    return Err(TopicAdminError::Missing(name.to_owned()));
                }
                Err((_, code)) => return Err(TopicAdminError::Refused(code.to_string())),
            }
        }
        self.forget(name);
        Ok(())
    }

    /// How long admin requests to Kafka may take.
    pub fn admin_timeout(&self) -> Duration {
        self.timeout
    }
}

fn find(metadata: &Metadata, name: &str) -> Option<TopicMeta> {
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none())
        .map(TopicMeta::from)
}
