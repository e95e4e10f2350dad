//! How a client is set up: proxies, buffer, batching and retries. Defaults fit a service
//! publishing up to tens of thousands of events per second through one or a few proxies.

use std::time::Duration;

use crate::Client;

/// What `publish` does when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullBuffer {
    /// Wait until there is room (backpressure on the caller). The default.
    #[default]
    Wait,
    /// Return [`crate::Error::BufferFull`] at once; nothing is buffered.
    Error,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No proxy URL was given.
    #[error("at least one proxy URL is needed")]
    NoProxy,
    /// A proxy URL does not parse or is not http(s).
    #[error("proxy URL `{url}` is invalid: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No service name can be derived from the default source.
    #[error("no service name in source `{0}`: use a name with letters or digits")]
    BadService(String),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The HTTP client could not be created (TLS setup).
    #[error("HTTP client: {0}")]
    Http(String),
    /// Built outside a tokio runtime.
    #[error("a client must be built inside a tokio runtime")]
    NoRuntime,
}

/// An API key, kept out of `Debug` output and logs.
#[derive(Clone)]
pub(crate) struct ApiKey(pub(crate) String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// Settings of a [`Client`]; see [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(crate) service: String,
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) source: Option<String>,
    pub(crate) urls: Vec<String>,
    pub(crate) buffer_capacity: usize,
    pub(crate) on_full: FullBuffer,
    pub(crate) max_batch_events: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) linger: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) retry_for: Duration,
}

impl ClientBuilder {
    pub(crate) fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            api_key: None,
            source: None,
            urls: Vec::new(),
            buffer_capacity: 10_000,
            on_full: FullBuffer::Wait,
            max_batch_events: 500,
            max_batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight: 8,
            request_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            retry_for: Duration::from_secs(600),
        }
    }

    /// A proxy base URL (`http://courier-1:8080`). Give several for failover: the client
    /// sends to one and moves to the next when it does not answer or answers 429/503.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Several proxy base URLs at once.
    pub fn proxies<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// The service's API key (`ck_…`, from the proxy's admin API), sent with every request
    /// as `Authorization: Bearer`. Proxies with authentication on (the default) refuse
    /// requests without it (401); the key names the service, so events must come from it.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey(key.into()));
        self
    }

    /// The default `source` of events (`/{service}` unless set).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Events held at most: buffered, batched, in flight or waiting for a retry (10,000).
    pub fn buffer_capacity(mut self, events: usize) -> Self {
        self.buffer_capacity = events;
        self
    }

    /// What `publish` does when the buffer is full ([`FullBuffer::Wait`]).
    pub fn on_full(mut self, policy: FullBuffer) -> Self {
        self.on_full = policy;
        self
    }

    /// Most events per request (500; the proxy accepts 1,000 by default).
    pub fn max_batch_events(mut self, events: usize) -> Self {
        self.max_batch_events = events;
        self
    }

    /// Most JSON bytes per request (1 MiB; the proxy accepts 8 MiB by default).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// How long a batch waits for more events before it is sent (5 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Requests in flight at once (8).
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// Time limit of one request (30 s); the proxy answers within its ack timeout (5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// First and longest wait between retries of a batch (100 ms, 10 s); doubled each
    /// time, with jitter, and never shorter than the proxy's `Retry-After`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    /// How long an event is retried before it is reported as
    /// [`crate::Error::Undelivered`] (10 minutes).
    pub fn retry_for(mut self, deadline: Duration) -> Self {
        self.retry_for = deadline;
        self
    }

    /// Builds the client and starts its background tasks on the current tokio runtime.
    pub fn build(self) -> Result<Client, BuildError> {
        Client::from_builder(self)
    }

    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if self.urls.is_empty() {
            return Err(BuildError::NoProxy);
        }
        let positive = [
            ("buffer_capacity", self.buffer_capacity),
            ("max_batch_events", self.max_batch_events),
            ("max_batch_bytes", self.max_batch_bytes),
            ("max_in_flight", self.max_in_flight),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(BuildError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if let Some(ApiKey(key)) = &self.api_key
            && (key.trim().is_empty()
                || reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err())
        {
            return Err(BuildError::Invalid(
                "api_key must be non-empty visible ASCII".into(),
            ));
        }
        if self.buffer_capacity > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(BuildError::Invalid("buffer_capacity is too large".into()));
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err(BuildError::Invalid(
                "backoff: initial must be positive and at most max".into(),
            ));
        }
        Ok(())
    }
}
