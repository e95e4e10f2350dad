//! Wiring and lifecycle: builds the pipeline, topic manager and router, serves until the
//! shutdown token fires, then drains in-flight requests and flushes the producer.

use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, LimitsConfig, TlsConfig};
use crate::delivery::Pipeline;
use crate::retry::RetryScheduler;
use crate::state::{AppState, Parts};
use crate::store::{Store, StoreError};
use crate::topics::TopicManager;

/// Why the proxy stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The producer or admin client could not be created (bad librdkafka properties).
    #[error("Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    /// The listener failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener's certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The topic policy is not valid.
    #[error("topic policy: {0}")]
    Policy(#[from] courier_shared::PolicyError),
}

impl From<crate::policy::PolicyError> for ServerError {
    fn from(e: crate::policy::PolicyError) -> Self {
        match e {
            crate::policy::PolicyError::Store(e) => Self::Store(e),
            crate::policy::PolicyError::Invalid(e) => Self::Policy(e),
        }
    }
}

/// Builds the application state: pipeline, topic manager and the store, whose migrations
/// run here.
pub async fn build_state(
    config: &Config,
    shutdown: CancellationToken,
) -> Result<AppState, ServerError> {
    let pipeline = Pipeline::new(&config.kafka, &config.delivery)?;
    // The store holds the policy, API keys and audit log as well as events: it is opened
    // whether or not unacknowledged events go there (`dlq.enabled`).
    let store = Some(
        Store::open_with_reserve(
            &config.dlq.url,
            config.dlq.write_queue,
            config.dlq.reserve_bytes,
        )
        .await?,
    );
    if !config.dlq.enabled {
        tracing::warn!(
            "dlq.enabled = false: events Kafka does not acknowledge in time get 503 instead of \
             being stored; the store still keeps API keys, the policy and the audit log, and \
             delivers what it already holds"
        );
    }
    let (policy, policy_version) = crate::policy::initial(config, store.as_ref()).await?;
    let keys = Arc::new(crate::auth::KeyRing::new(
        &config.auth,
        config.admin.token.clone(),
    ));
    let schemas = Arc::new(crate::schemas::SchemaRegistry::new());
    if let Some(store) = &store {
        keys.reload(store).await?;
        schemas.reload(store).await?;
    }
    if !config.auth.enabled {
        tracing::warn!(
            "authentication is OFF (auth.enabled = false): any caller may publish as any \
             service; use this for local development only"
        );
    } else if keys.is_empty() && (store.is_none() || config.admin.token.is_none()) {
        tracing::warn!(
            "authentication is on but no API key exists, and none can be created without a \
             store and an admin token: declare keys in [[auth.keys]], or every publish is \
             refused"
        );
    } else {
        tracing::info!(
            keys = keys.len(),
            "authentication on: publishing needs an API key"
        );
    }
    let topics = Arc::new(TopicManager::new(
        policy,
        &config.kafka,
        pipeline.current_producer(),
    )?);
    Ok(AppState::new(Parts {
        pipeline,
        topics,
        store,
        dlq_config: config.dlq.clone(),
        wake_scheduler: Arc::new(tokio::sync::Notify::new()),
        limits: config.limits.clone(),
        delivery: config.delivery.clone(),
        admin_token: config.admin.token.clone(),
        keys,
        policy_version,
        schemas,
        shutdown,
    }))
}

/// Serves the API on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// in-flight requests finish (each waits at most the ack timeout, then is stored), stops the
/// retry scheduler and flushes the producer within `delivery.shutdown_flush_ms`. Stored
/// events stay in the store for the next start, whose scheduler resumes them.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let state = build_state(&config, shutdown.clone()).await?;
    let scheduler = state.store().map(|store| {
        let scheduler = RetryScheduler::new(
            store.clone(),
            state.pipeline().clone(),
            state.topics_handle(),
            config.dlq.clone(),
            state.wake_handle(),
        );
        tokio::spawn(scheduler.run(shutdown.clone()))
    });
    tokio::spawn(state.pipeline().stats().clone().sample(shutdown.clone()));
    tokio::spawn(state.pipeline().clone().renew_on_fatal(shutdown.clone()));
    if state.rate_limits().is_some() {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Some(limits) = state.rate_limits() {
                    limits.forget_idle();
                }
            }
        });
    }
    if let Some(store) = state.store() {
        tokio::spawn(crate::policy::follow(state.clone(), shutdown.clone()));
        tokio::spawn(state.keys_handle().follow(store.clone(), shutdown.clone()));
        tokio::spawn(
            state
                .schemas_handle()
                .follow(store.clone(), shutdown.clone()),
        );
    }
    let app = crate::router::router(state.clone());
    tracing::info!(
        listen = %listener.local_addr()?,
        https = tls.is_some(),
        auth = config.auth.enabled,
        bootstrap_servers = %config.kafka.bootstrap_servers,
        dlq = if config.dlq.enabled { config.dlq.url.as_str() } else { "disabled" },
        "courier proxy started"
    );
    // In-flight requests get the ack timeout and a margin to finish after shutdown began;
    // past that the connections are dropped. Nothing is lost by it: a request without an
    // answer was never promised anything.
    let grace =
        Duration::from_millis(config.delivery.ack_timeout_ms + config.delivery.enqueue_wait_ms)
            + Duration::from_secs(5);
    let connections = serve(listener, app, &config.limits, tls, &shutdown).await;
    if tokio::time::timeout(grace, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = elapsed_ms(grace),
            "requests still open after the grace period; closing them"
        );
    }
    tracing::info!(
        queue_depth = state.pipeline().queue_depth(),
        "HTTP intake stopped; flushing the producer"
    );
    if let Some(task) = scheduler {
        // The rounds in flight finish together (each bounded by the redelivery ack timeout);
        // rows they had claimed and not settled are released by their lease.
        let wait = Duration::from_millis(config.dlq.ack_timeout_ms + 5_000);
        if tokio::time::timeout(wait, task).await.is_err() {
            tracing::warn!("retry scheduler did not stop in time");
        }
    }
    let started = std::time::Instant::now();
    match state.pipeline().close().await {
        Ok(()) => tracing::info!(took_ms = elapsed_ms(started.elapsed()), "producer flushed"),
        Err(e) => tracing::error!(error = %e, "producer flush incomplete"),
    }
    Ok(())
}

/// Binds the proxy's listener with a listen backlog of `backlog` connections (tokio's own
/// `bind` asks for 1,024, which a burst of new connections overflows: their handshakes are
/// dropped and retried a second later).
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's and tokio's `bind` do: a restarted proxy takes its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog.max(1))
}

/// Accepts connections until `shutdown`, each served by hyper (HTTP/1.1 and HTTP/2, over TLS
/// when `tls` is given) within the connection limits: at most `max_connections` open (more
/// wait in the listen backlog), heads within `max_headers`, `max_header_bytes` and
/// `header_read_timeout_ms` (slow or idle clients are cut off; a TLS handshake gets as long).
/// Returns the open connections, to be drained.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: &LimitsConfig,
    tls: Option<TlsAcceptor>,
    shutdown: &CancellationToken,
) -> GracefulShutdown {
    let mut builder = Builder::new(TokioExecutor::new());
    let head_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8_192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let (builder, app, watcher, tls) = (
            builder.clone(),
            app.clone(),
            graceful.watcher(),
            tls.clone(),
        );
        tokio::spawn(async move {
            let served = match tls {
                None => serve_io(&builder, stream, app, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(head_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_io(&builder, stream, app, watcher).await,
                        Ok(Err(e)) => Err(format!("TLS handshake: {e}").into()),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    graceful
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve_io<I>(
    builder: &Builder<TokioExecutor>,
    io: I,
    app: axum::Router,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), BoxError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(app));
    watcher.watch(connection.into_owned()).await
}

/// The TLS acceptor of `tls.cert_path` and `tls.key_path`.
pub fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| ServerError::Tls(format!("{what}: {e}"));
    let certs = CertificateDer::pem_file_iter(&tls.cert_path)
        .map_err(|e| bad(&tls.cert_path.display().to_string(), &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&tls.cert_path.display().to_string(), &e))?;
    if certs.is_empty() {
        return Err(bad(&tls.cert_path.display().to_string(), &"no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .map_err(|e| bad(&tls.key_path.display().to_string(), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn elapsed_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connects `n` clients to `addr` without the listener accepting any; returns how many
    /// completed their handshake within `wait` each.
    async fn handshakes(addr: std::net::SocketAddr, n: usize, wait: Duration) -> usize {
        let mut open = Vec::with_capacity(n);
        for _ in 0..n {
            match tokio::time::timeout(wait, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => open.push(stream),
                _ => break,
            }
        }
        open.len()
    }

    #[tokio::test]
    async fn the_listen_backlog_is_the_configured_one() {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        // Nothing accepts: every handshake the kernel completes waits in the backlog.
        let wide = bind(loopback, 200).expect("bind");
        let done = handshakes(wide.local_addr().unwrap(), 150, Duration::from_millis(500)).await;
        assert_eq!(
            done, 150,
            "a backlog of 200 queues 150 new connections at once"
        );
        let narrow = bind(loopback, 4).expect("bind");
        let done = handshakes(
            narrow.local_addr().unwrap(),
            150,
            Duration::from_millis(500),
        )
        .await;
        assert!(
            (4..20).contains(&done),
            "a backlog of 4 queues about 4 connections, then handshakes stall ({done} completed)"
        );
    }
}
