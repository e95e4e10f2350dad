//! The main server's consumer runtime: business [`Handler`]s bound to topic patterns, run
//! at-least-once in a Kafka consumer group.
//!
//! A record's offset is stored only once its handler succeeded — or, after the retries a
//! retriable error earns, once the record was written to the dead-letter topic
//! `<topic>.dlt` (`acks=all`, awaited) — and stored offsets are committed periodically, on
//! rebalance and on shutdown. Partitions are processed concurrently, each in order, through a
//! bounded queue per partition. The pieces the sinks of `courier-consumer-es` reuse — the
//! consumer's Kafka settings, the record-to-event mapping, the dead-letter publisher and the
//! operations endpoints ([`ops`]: `/healthz`, `/readyz`, `/metrics`) — are public.

pub mod config;
pub mod dead_letter;
pub mod dedupe;
pub mod handler;
pub mod kafka;
pub mod ops;
pub mod process;
pub mod retry;
pub mod runtime;

pub use config::{ConsumerConfig, KafkaConsumerConfig, RetryPolicy};
pub use courier_shared::envelope::Event;
pub use courier_telemetry as telemetry;
pub use dead_letter::{DeadLetterPublisher, DeadLetterReason};
pub use handler::{Handler, HandlerError, Origin, Received};
pub use ops::Ops;
pub use runtime::{Consumer, ConsumerBuilder, RuntimeError, Stats};
