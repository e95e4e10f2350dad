//! The main server's consumer runtime: business handlers bound to topic patterns, run
//! at-least-once in a consumer group, with retries and dead-letter topics.
//!
//! The runtime itself is built on top of [`courier_shared`]'s envelope and header mapping;
//! this crate currently only re-exports the event types it will hand to handlers.

pub use courier_shared::envelope::Event;
