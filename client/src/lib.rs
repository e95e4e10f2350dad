//! The Rust client a service links to publish events through Courier without any Kafka
//! dependency.
//!
//! This crate currently only re-exports the event types the client will build.

pub use courier_shared::envelope::Event;
