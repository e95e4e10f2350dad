//! Courier's HTTP-to-Kafka gateway.
//!
//! Services POST CloudEvents; the proxy validates them, routes each to a topic through the
//! naming policy (creating topics on first use), and answers 200 only after Kafka
//! acknowledged the event with `acks=all`, or 202 once an event Kafka did not take in time is
//! committed to the store, from which the retry scheduler delivers it. See the README's
//! delivery contract.
//!
//! [`server::run`] serves on a given listener until a cancellation token fires, so tests start
//! the real proxy in-process on an ephemeral port.
//!
//! The modules, from the request inwards (none imports another in a cycle:
//! `scripts/check_module_cycles.py` checks it):
//!
//! - [`server`] wires everything and runs it; [`router`] assembles the HTTP API ([`api`]),
//!   the admin API and page ([`admin`]) and the layers every request goes through;
//! - [`state`]: the application state handlers, the intake and background tasks share;
//! - [`intake`]: admitting each event of a request, settling it, observing the outcomes, with
//!   [`dedupe`] (idempotent publish) and [`rate`] (per-service limits);
//! - [`auth`] (API keys, their digest in [`secret`]), [`schemas`] (JSON Schemas per event
//!   type), [`policy`] (the topic policy at startup and followed across proxies);
//! - [`delivery`] (the producer pipeline), [`topics`] (topic creation and administration),
//!   [`retry`] (the retry scheduler, redelivering stored events);
//! - [`store`]: stored events, settings, the audit log, API keys and schemas, in SQLite or
//!   PostgreSQL (configured by the `[dlq]` section);
//! - [`config`], [`error`], [`metrics`], [`stats`].

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
