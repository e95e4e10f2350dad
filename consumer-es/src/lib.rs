//! Sinks that take Courier events from Kafka into search and log stores — Elasticsearch
//! and Splunk's HTTP Event Collector — behind one [`Sink`] abstraction, run by one
//! at-least-once [`pipeline`]: records are batched (bounded by count, bytes and time), a
//! batch is written, records the store refused for good go to the dead-letter topic, and
//! only then are the batch's offsets stored for commit.

pub mod elasticsearch;
pub mod pipeline;
pub mod sink;
pub mod splunk;

pub use pipeline::{BatchLimits, PipelineConfig, PipelineStats};
pub use sink::{Rejection, Sink, SinkError, SinkRecord};
