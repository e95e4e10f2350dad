//! The Elasticsearch sink: `_bulk` `index` operations with `_id` from the event's identity
//! (`source`, `id`; see [`document_id`]) into an index
//! per topic and day, under an index template for the CloudEvents fields.

mod config;
mod document;
mod sink;

pub use config::ElasticsearchConfig;
pub use document::{IndexName, document, document_id, event_time, index_template};
pub use sink::ElasticsearchSink;
