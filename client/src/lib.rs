//! The Rust client a service links to publish events through Courier, with no Kafka
//! dependency of its own.
//!
//! A [`Client`] is built once and cloned freely. [`Client::publish`] returns as soon as the
//! event is in a bounded local buffer; a background task sends the buffer in batches
//! (`POST /v1/events`, a CloudEvents JSON batch) to one of several proxies, and retries what
//! the proxy could not take (429, 503, no answer) with backoff, jitter and `Retry-After`,
//! always with the same event ids so the proxy answers a resend with its first outcome. An
//! event the proxy refuses as invalid (422) is reported and never retried. A full buffer
//! waits or fails, as configured ([`FullBuffer`]): an event is never dropped silently.
//!
//! ```no_run
//! use courier::{Client, Event};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("orders")
//!     .proxy("http://127.0.0.1:8080")
//!     .build()?;
//! client
//!     .publish(Event::new("order.created").data(&serde_json::json!({"order": 7})))
//!     .await?;
//! client.shutdown().await; // delivers what is buffered
//! # Ok(())
//! # }
//! ```
//!
//! # Attributes
//!
//! [`publish_errors`] publishes an error event when a function returns `Err`, to
//! `{service}.error.{errortype}`; [`publish`] publishes the `Ok` value as an event. Both only
//! enqueue (they never wait for delivery), through the client given with `client = expr` or
//! else the one installed with [`set_global`].
//!
//! ```no_run
//! #[derive(Debug, courier::ErrorType)]
//! enum OrderError {
//!     OutOfStock,                       // errortype "out-of-stock"
//!     #[courier(errortype = "payment-declined")]
//!     Payment(String),
//! }
//! # impl std::fmt::Display for OrderError {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
//! # }
//! # impl std::error::Error for OrderError {}
//! # struct Order { id: u64 }
//! #[derive(serde::Serialize)]
//! struct Placed { order: u64 }
//!
//! #[courier::publish(type = "order.placed")]
//! #[courier::publish_errors(fields(order_id = order.id))]
//! async fn place(order: Order) -> Result<Placed, OrderError> {
//!     Ok(Placed { order: order.id })
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = courier::Client::builder("orders").proxy("http://127.0.0.1:8080").build()?;
//! courier::set_global(client.clone()).expect("installed once");
//! place(Order { id: 7 }).await?;
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;
mod event;
mod transport;

use std::sync::OnceLock;

pub use client::{Client, Stats};
pub use config::{BuildError, ClientBuilder, FullBuffer};
pub use courier_macros::{ErrorType, publish, publish_errors};
pub use error::{Delivery, DeliveryStatus, Error};
pub use event::{Event, Extension, Level};
pub use transport::BATCH_CONTENT_TYPE;

/// Names the kind of an error, which becomes the `errortype` attribute and so the topic
/// `{service}.error.{errortype}`. Derive it for an enum (the variant name in kebab case,
/// `PaymentDeclined` → `payment-declined`, or `#[courier(errortype = "...")]` on the variant)
/// or a struct (its name).
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not name a Courier error type",
    label = "the error of this function has no `courier::ErrorType`",
    note = "derive it with `#[derive(courier::ErrorType)]`, or give the attribute `errortype = \"...\"`"
)]
pub trait ErrorType {
    /// The error type: letters, digits and `-` read best in a topic name.
    fn error_type(&self) -> &str;
}

impl<T: ErrorType + ?Sized> ErrorType for Box<T> {
    fn error_type(&self) -> &str {
        (**self).error_type()
    }
}

/// The guide's Rust examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/clients.md")]
mod guide {}

static GLOBAL: OnceLock<Client> = OnceLock::new();

/// Installs the client the attributes use when they have no `client = expr`. Only the first
/// call succeeds; later ones give their client back.
pub fn set_global(client: Client) -> Result<(), Client> {
    GLOBAL.set(client)
}

/// The client installed with [`set_global`].
pub fn global() -> Option<&'static Client> {
    GLOBAL.get()
}

/// Used by the code the attributes generate; not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::fmt::Display;
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};

    use serde::Serialize;
    pub use serde_json::Value;

    use crate::{Client, ErrorType, Event};

    /// A field value as JSON; a value that cannot be serialised says so instead.
    pub fn field<T: Serialize + ?Sized>(value: &T) -> Value {
        serde_json::to_value(value)
            .unwrap_or_else(|e| Value::String(format!("<not serialisable: {e}>")))
    }

    /// Gives a closure's return type to the compiler (for `?` inside it).
    pub fn call<T, F: FnOnce() -> T>(f: F) -> T {
        f()
    }

    /// Gives an async block's output type to the compiler (for `?` inside it).
    pub fn typed<T, F: Future<Output = T>>(f: F) -> F {
        f
    }

    /// The error type of `error`.
    pub fn errortype_of<E: ErrorType + ?Sized>(error: &E) -> &str {
        error.error_type()
    }

    /// The error event for `error` returned by `function`.
    pub fn error_event(
        errortype: &str,
        ty: Option<&str>,
        error: &dyn Display,
        function: &str,
        module: &str,
        fields: Vec<(&'static str, Value)>,
    ) -> Event {
        let fields: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let data = serde_json::json!({
            "message": error.to_string(),
            "function": function,
            "module": module,
            "fields": fields,
        });
        Event::error(errortype, "")
            .ty(ty.map_or_else(|| format!("{function}.failed"), str::to_owned))
            .data(&data)
    }

    /// The success event for `value`.
    pub fn ok_event<T: Serialize + ?Sized>(ty: &str, value: &T) -> Event {
        Event::new(ty).data(value)
    }

    /// The global client, or a warning (once) that there is none.
    pub fn default_client() -> Option<&'static Client> {
        static WARNED: AtomicBool = AtomicBool::new(false);
        let client = crate::global();
        if client.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a #[courier::...] function has no client: install one with courier::set_global \
                 or pass `client = ...`; its events are not published"
            );
        }
        client
    }

    /// Enqueues from a synchronous function: never waits; a full buffer is logged.
    pub fn enqueue(client: Option<&Client>, event: Event) {
        if let Some(client) = client
            && let Err(e) = client.try_publish(event)
        {
            tracing::warn!(error = %e, "event from a #[courier::...] function not published");
        }
    }

    /// Enqueues from an async function: waits for room if the client is set to.
    pub async fn enqueue_async(client: Option<&Client>, event: Event) {
        if let Some(client) = client
            && let Err(e) = client.publish(event).await
        {
            tracing::warn!(error = %e, "event from a #[courier::...] function not published");
        }
    }
}
