//! The name of every metric the consumers expose, in one place. The registry adds the
//! `courier_` prefix, and counters get `_total`: [`RECORDS`] is scraped as
//! `courier_consumer_records_total`.

/// Counter `courier_consumer_records_total{topic,outcome}`: records done with, by outcome
/// (`handled`: the handler succeeded or the sink stored it; `dead_lettered`; `deduplicated`;
/// `skipped`: a dead-letter topic a pattern happened to match).
pub const RECORDS: &str = "consumer_records";
/// Counter `courier_consumer_retries_total{topic}`: handler attempts that failed with a
/// retriable error and were tried again.
pub const RETRIES: &str = "consumer_retries";
/// Counter `courier_consumer_dead_letters_total{topic,class}`: records written to the
/// dead-letter topic, by original topic and error class (`kafka_dlt-exception-fqcn`).
pub const DEAD_LETTERS: &str = "consumer_dead_letters";
/// Gauge `courier_consumer_lag_records{topic,partition}`: records between the group's
/// committed offset and the partition's high watermark, per assigned partition (from
/// librdkafka's statistics; a partition without a committed offset yet is left out).
pub const LAG: &str = "consumer_lag_records";
/// Gauge `courier_consumer_assigned_partitions`: partitions assigned to this member.
pub const ASSIGNED_PARTITIONS: &str = "consumer_assigned_partitions";
/// Histogram `courier_consumer_handler_duration_seconds`: one record through its handler,
/// retries and dead-lettering included (the handler runtime).
pub const HANDLER_DURATION: &str = "consumer_handler_duration_seconds";
/// Histogram `courier_consumer_batch_duration_seconds`: one batch from being cut to being
/// stored, its refused records dead-lettered (the sink pipeline).
pub const BATCH_DURATION: &str = "consumer_batch_duration_seconds";
/// Counter `courier_sink_errors_total{sink,kind}`: failures of the store behind a sink, by
/// kind (see `SinkErrorKind`).
pub const SINK_ERRORS: &str = "sink_errors";
