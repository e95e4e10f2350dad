//! Types every Courier component agrees on: the CloudEvents envelope Courier accepts, the
//! policy that names a topic for an event, the mapping of an event onto a Kafka record
//! (CloudEvents Kafka protocol binding, binary mode) and the problem codes of the HTTP API.
//!
//! Everything here is sans-I/O: pure functions over bytes and structs, so the proxy, the
//! consumers and the client share one definition and the fuzzers can reach all of it.

pub mod binding;
pub mod envelope;
pub mod http_binding;
mod json_data;
pub mod policy;
pub mod problem;
pub mod topic;

pub use binding::{KafkaRecord, from_record, into_record, to_record};
pub use envelope::{Category, Data, Event, EventError, ExtensionValue};
pub use policy::{
    AclEntry, CompiledPolicy, CreationLimits, ErrortypeRule, PolicyError, Refusal, TopicPolicy,
    TopicTemplate,
};
pub use problem::{Problem, ProblemKind};
pub use topic::{NamingPolicy, TopicError};

/// Helpers for the unit tests of this crate.
#[cfg(test)]
pub(crate) mod testing {
    use crate::Event;

    /// An event from `source` with extra attributes (`extra` starts with a comma).
    pub fn event(source: &str, extra: &str) -> Event {
        Event::from_json(
            format!(r#"{{"specversion":"1.0","source":"{source}","type":"t"{extra}}}"#).as_bytes(),
        )
        .unwrap()
    }
}
