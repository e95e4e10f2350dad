//! Courier's HTTP-to-Kafka gateway.
//!
//! Services POST CloudEvents; the proxy validates them, routes each to a topic through the
//! naming policy (creating topics on first use), and answers 200 only after Kafka
//! acknowledged the event with `acks=all`, or 202 once an event Kafka did not take in time is
//! committed to the DLQ store, from which the retry scheduler delivers it. See the README's
//! delivery contract.
//!
//! [`server::run`] serves on a given listener until a cancellation token fires, so tests start
//! the real proxy in-process on an ephemeral port.

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod error;
pub mod intake;
pub mod metrics;
pub mod policy;
pub mod rate;
pub mod retry;
pub mod router;
pub mod schemas;
pub mod secret;
pub mod server;
pub mod state;
pub mod stats;
pub mod store;
pub mod topics;

pub use config::Config;
pub use server::run;
