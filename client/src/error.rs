//! What publishing can come to: the client's error type and the delivery result.

/// Where the proxy put an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event id.
    pub id: String,
    /// The topic the event is (or will be) written to.
    pub topic: String,
    /// How far it got.
    pub status: DeliveryStatus,
}

/// How an accepted event is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Acknowledged by every in-sync Kafka replica (HTTP 200).
    Delivered {
        /// Partition written to.
        partition: i32,
        /// Offset written at.
        offset: i64,
    },
    /// Committed to the proxy's store, which delivers it later (HTTP 202).
    Stored,
}

/// Why an event was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The event cannot be published as built (checked before it is buffered).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// The local buffer is full and the client is configured not to wait
    /// ([`crate::FullBuffer::Error`]), or the caller used [`crate::Client::try_publish`].
    #[error("the client's buffer is full ({capacity} events); nothing was buffered")]
    BufferFull {
        /// The buffer's capacity, in events.
        capacity: usize,
    },
    /// The client was shut down; nothing more is accepted.
    #[error("the client is shut down")]
    Closed,
    /// The proxy refused the event for good (HTTP 4xx such as 422): sending it again would
    /// not help, so it was not retried.
    #[error("refused by the proxy ({status}): {problem}")]
    Refused {
        /// The HTTP status the event got.
        status: u16,
        /// The proxy's problem `type` and detail.
        problem: String,
    },
    /// No proxy accepted the event within the retry deadline.
    #[error("not accepted within the retry deadline; last error: {last}")]
    Undelivered {
        /// The last failure seen.
        last: String,
    },
}

impl Error {
    /// True when the same event may be published again later with success (the buffer was
    /// full, or no proxy took it in time). Re-publish it with the same id so the proxy can
    /// tell a resend.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::BufferFull { .. } | Self::Undelivered { .. })
    }
}
