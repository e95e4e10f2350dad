//! What a main server implements: a [`Handler`] with a typed payload, and the error it
//! returns, which says whether trying again may help.

use std::future::Future;
use std::pin::Pin;

use courier_shared::envelope::Event;
use serde::de::DeserializeOwned;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (ms since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

/// One event handed to a handler: its attributes, its payload decoded, and its origin.
#[derive(Debug, Clone)]
pub struct Received<T> {
    /// The CloudEvent (attributes and raw data).
    pub event: Event,
    /// `data` decoded into the handler's payload type (`null` when the event has none).
    pub data: T,
    /// The Kafka record it came from.
    pub origin: Origin,
}

/// A handler failed. Retriable errors are tried again with backoff (then dead-lettered);
/// the others are dead-lettered at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct HandlerError {
    /// The error's class, recorded in `kafka_dlt-exception-fqcn`.
    pub class: String,
    /// What went wrong, recorded in `kafka_dlt-exception-message`.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retriable: bool,
}

impl HandlerError {
    /// A failure that may pass (a database briefly away, a timeout).
    pub fn retriable(message: impl Into<String>) -> Self {
        Self {
            class: "courier.RetriableError".into(),
            message: message.into(),
            retriable: true,
        }
    }

    /// A failure that another attempt would repeat (a broken business rule).
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            class: "courier.FatalError".into(),
            message: message.into(),
            retriable: false,
        }
    }

    /// From any error, classed by its Rust type name.
    pub fn from_error<E: std::error::Error>(error: &E, retriable: bool) -> Self {
        Self {
            class: std::any::type_name::<E>().into(),
            message: error.to_string(),
            retriable,
        }
    }

    /// The same error with another class name.
    pub fn with_class(mut self, class: impl Into<String>) -> Self {
        self.class = class.into();
        self
    }
}

/// Business logic for the events of some topics.
///
/// ```
/// use courier_consumer_main::{Handler, HandlerError, Received};
///
/// #[derive(serde::Deserialize)]
/// struct Invoice { amount: u64 }
///
/// struct Billing;
///
/// impl Handler for Billing {
///     type Payload = Invoice;
///     async fn handle(&self, invoice: Received<Invoice>) -> Result<(), HandlerError> {
///         if invoice.data.amount == 0 {
///             return Err(HandlerError::fatal("an invoice of nothing"));
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// What `data` is decoded into; one that does not decode is dead-lettered.
    type Payload: DeserializeOwned + Send + 'static;

    /// Handles one event. Ok means done: the record's offset may be committed.
    fn handle(
        &self,
        event: Received<Self::Payload>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A handler with its payload type erased, so handlers of different payloads share a table.
pub(crate) trait ErasedHandler: Send + Sync {
    fn call(&self, event: Event, origin: Origin) -> BoxFuture<'_, Result<(), HandlerError>>;
}

pub(crate) struct Typed<H>(pub(crate) H);

/// Class of the error for a payload that does not decode into the handler's type.
pub const PAYLOAD_ERROR_CLASS: &str = "courier.PayloadError";

impl<H: Handler> ErasedHandler for Typed<H> {
    fn call(&self, event: Event, origin: Origin) -> BoxFuture<'_, Result<(), HandlerError>> {
        let bytes: &[u8] = event.data.as_ref().map_or(b"null", |d| d.as_bytes());
        let data = match serde_json::from_slice::<H::Payload>(bytes) {
            Ok(data) => data,
            Err(e) => {
                let err = HandlerError::fatal(format!("payload does not decode: {e}"))
                    .with_class(PAYLOAD_ERROR_CLASS);
                return Box::pin(async move { Err(err) });
            }
        };
        let handled = self.0.handle(Received {
            event,
            data,
            origin,
        });
        // A panicking handler is a fatal error for this record (dead-lettered with the panic
        // message), not a dead partition worker that silently stops the partition.
        Box::pin(async move {
            match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(handled)).await {
                Ok(result) => result,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".to_owned());
                    Err(HandlerError::fatal(format!("handler panicked: {message}"))
                        .with_class(PANIC_CLASS))
                }
            }
        })
    }
}

/// Class of the error for a handler that panicked.
pub const PANIC_CLASS: &str = "courier.HandlerPanic";

#[cfg(test)]
mod tests {
    use super::*;

    struct Panics;

    impl Handler for Panics {
        type Payload = serde_json::Value;

        async fn handle(&self, event: Received<serde_json::Value>) -> Result<(), HandlerError> {
            if event.data["boom"] == true {
                panic!("boom in the handler");
            }
            Ok(())
        }
    }

    fn origin() -> Origin {
        Origin {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            timestamp_ms: None,
        }
    }

    fn event(data: &str) -> Event {
        Event::from_json(
            format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{data}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_fatal_error_not_a_dead_worker() {
        let handler = Typed(Panics);
        let error = handler
            .call(event(r#"{"boom":true}"#), origin())
            .await
            .unwrap_err();
        assert_eq!(error.class, PANIC_CLASS);
        assert!(!error.retriable);
        assert!(error.message.contains("boom in the handler"), "{error:?}");
        // The same handler goes on serving the next record.
        assert!(handler.call(event("{}"), origin()).await.is_ok());
    }
}
