//! The dead-letter side of the delivery contract: events Kafka did not acknowledge in time are
//! committed to the DLQ store before the client hears 202, and the retry scheduler delivers
//! them later, or parks them for an operator. Nothing answered 2xx lives only in memory.

pub mod scheduler;
pub mod store;

pub use scheduler::RetryScheduler;
pub use store::{
    ApiKey, AuditEntry, DlqStore, Entry, Filter, NewApiKey, NewEntry, Registered, SCHEMAS_SETTING,
    SchemaBounds, SchemaVersion, Setting, State, StoreError,
};
