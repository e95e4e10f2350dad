//! Settings of the Elasticsearch sink.

use std::time::Duration;

/// Where and how the Elasticsearch sink writes.
#[derive(Debug, Clone)]
pub struct ElasticsearchConfig {
    /// The node's URL (`http://127.0.0.1:9200`).
    pub url: String,
    /// Index name template: `{topic}` and a date pattern of the event's time in UTC
    /// (`{yyyy.MM.dd}`; tokens `yyyy`, `MM`, `dd`, `HH`).
    pub index: String,
    /// Name of the index template the sink installs.
    pub template_name: String,
    /// Shards of each new index.
    pub shards: u32,
    /// Replicas of each new index (0 on a single node, or it stays yellow).
    pub replicas: u32,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// First wait after a failed bulk request.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            index: "courier-{topic}-{yyyy.MM.dd}".into(),
            template_name: "courier-events".into(),
            shards: 1,
            replicas: 1,
            request_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}
