//! Sinks that index Courier events into Elasticsearch (and Splunk HEC), idempotently by
//! event id.
//!
//! This crate currently only re-exports the event types the sinks will index.

pub use courier_shared::envelope::Event;
