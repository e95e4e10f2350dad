//! The proxy's store: the events Kafka did not acknowledge in time ([`events`], kept until the
//! retry scheduler delivers them or parked for an operator), the settings the admin API
//! changes at runtime ([`settings`]: the topic policy), the audit log of admin actions
//! ([`audit`]), the publish endpoints' API keys ([`keys`]) and the JSON Schemas
//! ([`schemas`]). The `[dlq]` section of the configuration says where it lives. Events are
//! committed here before the client hears 202: nothing answered 2xx lives only in memory.
//!
//! SQLite (WAL, `synchronous=FULL`) is the embedded default, one store per proxy, whose claims
//! are leased in the proxy's memory ([`leases`]). PostgreSQL serves several proxies sharing one
//! store, which claim due rows with `FOR UPDATE SKIP LOCKED` and lease them in the database.
//! But for the claim, the SQL is the same text for both but for placeholders, and every query
//! runs on either pool through [`on_pool!`], so there is one implementation to test twice.
//!
//! Writes on the hot path go through one group-commit writer: concurrent requests queue their
//! events on a bounded channel, and the writer commits whatever has queued up in one fsync'd
//! transaction, so the store keeps up with the intake instead of paying one fsync per event.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::mpsc;

/// Runs `$body` with `$pool` bound to the concrete pool of whichever backend the store uses.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` (which uses `$conn`) between `BEGIN` and `COMMIT` on a pooled connection. On
/// any error the connection is closed, never handed out again: a failed `COMMIT` can leave
/// SQLite's transaction open (`SQLITE_FULL` keeps it active), and a connection still holding
/// it would make every later "transaction" on it a savepoint inside that one — reported as
/// committed, never durable. `BEGIN` is sent as plain SQL, not through sqlx's transaction
/// counter, so a transaction left open anyway makes it fail instead of nesting.
macro_rules! in_transaction {
    ($pool:expr, $conn:ident => $body:expr) => {{
        let mut pooled = $pool.acquire().await?;
        let outcome: Result<_, sqlx::Error> = async {
            let $conn = &mut *pooled;
            sqlx::query("BEGIN").execute(&mut *$conn).await?;
            let value = $body;
            sqlx::query("COMMIT").execute(&mut *$conn).await?;
            Ok(value)
        }
        .await;
        match outcome {
            Ok(value) => value,
            Err(e) => {
                let _ = sqlx::Connection::close(pooled.detach()).await;
                return Err(e.into());
            }
        }
    }};
}

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed (disk full, connection lost, ...).
    #[error("store: {0}")]
    Database(String),
    /// The store is closed (shutting down) or its writer is gone.
    #[error("the store is closed")]
    Closed,
    /// The group-commit queue is full.
    #[error("the store is at capacity")]
    Busy,
    /// The URL names no supported database.
    #[error("unsupported store URL `{0}` (use sqlite:PATH or postgres://...)")]
    Url(String),
    /// The store's disk is full (or its reserve is released for redelivery: see
    /// [`reserve`]).
    #[error("store: the disk is full: {0}")]
    DiskFull(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // SQLITE_FULL (13), and the I/O errors (10 and its extended codes) a write-ahead log
        // that cannot grow ends in.
        let disk_full = e
            .as_database_error()
            .and_then(|d| d.code())
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 10 | 13));
        if disk_full {
            Self::DiskFull(e.to_string())
        } else {
            Self::Database(e.to_string())
        }
    }
}

/// A failed connection to PostgreSQL, saying so when the TLS handshake was the cause (sqlx
/// reports it as an I/O error: "error communicating with database").
fn connect_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Io(io) = &e
        && let Some(tls) = io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return StoreError::Database(format!(
            "TLS handshake with PostgreSQL failed: {tls} (sslmode=verify-full and verify-ca \
             check the server's certificate against sslrootcert, or the Mozilla roots without it)"
        ));
    }
    e.into()
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Database(e.to_string())
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The store and its group-commit writer.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    writes: mpsc::Sender<events::WriteRequest>,
    reserve: std::sync::Arc<reserve::Reserve>,
    /// A SQLite store's claims ([`leases`]); unused by PostgreSQL, which leases rows.
    leases: std::sync::Arc<leases::Leases>,
    /// The rows whose unreadable headers were logged already (each once, not per listing).
    unreadable_logged: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating if needed) the store at `url` — `sqlite:PATH` or `postgres://…` — and
    /// runs its migrations. `queue` bounds the write requests waiting for a group commit. No
    /// disk reserve: see [`Self::open_with_reserve`].
    pub async fn open(url: &str, queue: usize) -> Result<Self, StoreError> {
        Self::open_with_reserve(url, queue, 0).await
    }

    /// [`Self::open`], keeping `reserve_bytes` of disk beside a SQLite database for
    /// redelivery and replay when the disk fills up ([`reserve`]).
    pub async fn open_with_reserve(
        url: &str,
        queue: usize,
        reserve_bytes: u64,
    ) -> Result<Self, StoreError> {
        let mut reserve = reserve::Reserve::none();
        let mut leases = leases::Leases::default();
        let backend = if let Some(path) = url.strip_prefix("sqlite:") {
            let options = SqliteConnectOptions::from_str(&format!("sqlite:{path}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            let file = path.split('?').next().unwrap_or(path);
            leases = leases::Leases::sqlite(None);
            if !file.is_empty() && !file.starts_with(':') {
                reserve = reserve::Reserve::beside(std::path::Path::new(file), reserve_bytes).await;
                leases = leases::Leases::sqlite(Some(std::path::Path::new(file)));
            }
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(connect_error)?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        let (writes, rx) = mpsc::channel(queue.max(1));
        tokio::spawn(events::group_commit(backend.clone(), rx));
        Ok(Self {
            backend,
            writes,
            reserve: std::sync::Arc::new(reserve),
            leases: std::sync::Arc::new(leases),
            unreadable_logged: std::sync::Arc::default(),
        })
    }

    /// Runs an upkeep write (claim, delete, reschedule, replay). On a full disk it releases
    /// the reserve, which leaves room to checkpoint the write-ahead log into the database
    /// (pages written since the last checkpoint may need the database file to grow), truncates
    /// the log — on a full disk the automatic checkpoint may never come, and the log only
    /// grows until one empties it — and tries once more.
    async fn upkeep<T, F, Fut>(&self, write: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let result = match write().await {
            Err(StoreError::DiskFull(_)) => {
                self.reserve.release().await;
                self.truncate_log().await;
                write().await
            }
            other => other,
        };
        // Without its reserve the store keeps the log short: every upkeep write is
        // checkpointed at once, so the log never again takes the room the next one needs.
        if self.reserve.is_released() {
            self.truncate_log().await;
        }
        result
    }

    /// Checkpoints a SQLite store's write-ahead log into the database and truncates it.
    async fn truncate_log(&self) {
        if let Backend::Sqlite(pool) = &self.backend
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
        {
            tracing::debug!(error = %e, "could not truncate the write-ahead log");
        }
    }

    /// After a released reserve: truncates the write-ahead log (pages a drain freed stay in
    /// the database file for new events to reuse) and puts the reserve back, so new events are
    /// stored again. True when the reserve is in place; false while the disk has no room for
    /// it (then an operator must free space: the store says so in its log).
    pub async fn restore_reserve(&self) -> bool {
        if !self.reserve.is_released() {
            return true;
        }
        self.truncate_log().await;
        self.reserve.fill().await
    }

    fn sql(&self, sqlite: &str) -> String {
        match self.backend {
            Backend::Sqlite(_) => sqlite.to_owned(),
            Backend::Postgres(_) => numbered_placeholders(sqlite),
        }
    }
}

/// `?` placeholders to PostgreSQL's `$1, $2, …` (the SQL here has no `?` in literals).
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

pub mod audit;
pub mod events;
pub mod keys;
mod leases;
pub mod reserve;
pub mod schemas;
pub mod settings;
pub use audit::AuditEntry;
use audit::{AUDIT_INSERT, bind_audit};
pub use events::{Entry, Failure, Filter, NewEntry, State};
pub use keys::{ApiKey, NewApiKey};
pub use schemas::{Registered, SCHEMAS_SETTING, SchemaBounds, SchemaVersion};
pub use settings::Setting;
