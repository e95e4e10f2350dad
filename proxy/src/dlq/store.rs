//! The DLQ store: events Kafka did not acknowledge in time, kept durably until the retry
//! scheduler delivers them, or parked for an operator when it cannot.
//!
//! SQLite (WAL, `synchronous=FULL`) is the embedded default; PostgreSQL serves several proxies
//! sharing one store, which claim due rows with `FOR UPDATE SKIP LOCKED`. The SQL is the same
//! text for both but for placeholders and row locking, and every query runs on either pool
//! through [`on_pool!`], so there is one implementation to test twice.
//!
//! Writes on the hot path go through one group-commit writer: concurrent requests queue their
//! events on a bounded channel, and the writer commits whatever has queued up in one fsync'd
//! transaction, so the store keeps up with the intake instead of paying one fsync per event.

use std::str::FromStr as _;
use std::time::Duration;

use base64::Engine as _;
use courier_shared::KafkaRecord;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row as _};
use tokio::sync::{mpsc, oneshot};

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

/// Rows per INSERT statement (SQLite allows 32,766 bound values; a row binds 10).
const INSERT_CHUNK: usize = 500;

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed (disk full, connection lost, ...).
    #[error("DLQ store: {0}")]
    Database(String),
    /// The store is closed (shutting down) or its writer is gone.
    #[error("DLQ store is closed")]
    Closed,
    /// The group-commit queue is full.
    #[error("DLQ store is at capacity")]
    Busy,
    /// The URL names no supported database.
    #[error("unsupported DLQ store URL `{0}` (use sqlite:PATH or postgres://...)")]
    Url(String),
    /// The store's disk is full (or its reserve is released for redelivery: see
    /// [`reserve`]).
    #[error("DLQ store: the disk is full: {0}")]
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

/// Where a stored event stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its next attempt.
    Pending,
    /// Out of attempts, or refused for good: waits for an operator.
    Parked,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Parked => "parked",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(Self::Pending),
            "parked" => Ok(Self::Parked),
            other => Err(StoreError::Database(format!("unknown state `{other}`"))),
        }
    }
}

/// An event to store: its record, where it goes, and why it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The CloudEvents id.
    pub event_id: String,
    /// The CloudEvents source: with the id, the event's identity.
    pub event_source: String,
    /// Destination topic.
    pub topic: String,
    /// Key, value and headers, exactly as they would have been produced.
    pub record: KafkaRecord,
    /// Why Kafka did not take it.
    pub error: String,
    /// When the scheduler first tries again (ms since the epoch).
    pub next_attempt_ms: i64,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Store-wide sequence number.
    pub seq: i64,
    /// The CloudEvents id.
    pub event_id: String,
    /// The CloudEvents source (empty for events stored before the store kept it).
    pub event_source: String,
    /// Destination topic.
    pub topic: String,
    /// Key, value and headers.
    pub record: KafkaRecord,
    /// Pending or parked.
    pub state: State,
    /// Delivery attempts made by the scheduler.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Next attempt (ms since the epoch).
    pub next_attempt_ms: i64,
    /// When it was stored (ms since the epoch).
    pub created_ms: i64,
}

/// Which stored events an operator means; every field narrows the set.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// Only pending or only parked events.
    pub state: Option<State>,
    /// Only this topic.
    pub topic: Option<String>,
    /// Only events whose last error contains this text.
    pub error: Option<String>,
}

/// A failed delivery attempt of a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The event's sequence number.
    pub seq: i64,
    /// What went wrong.
    pub error: String,
    /// When to try again; `None` parks the event.
    pub next_attempt_ms: Option<i64>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug)]
struct WriteRequest {
    entries: Vec<NewEntry>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The store and its group-commit writer.
#[derive(Debug, Clone)]
pub struct DlqStore {
    backend: Backend,
    writes: mpsc::Sender<WriteRequest>,
    reserve: std::sync::Arc<reserve::Reserve>,
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

impl DlqStore {
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
            if !file.is_empty() && !file.starts_with(':') {
                reserve = reserve::Reserve::beside(std::path::Path::new(file), reserve_bytes).await;
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
        tokio::spawn(group_commit(backend.clone(), rx));
        Ok(Self {
            backend,
            writes,
            reserve: std::sync::Arc::new(reserve),
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

    /// Stores `entries` durably (committed with fsync) before it returns `Ok`. An event's
    /// identity is (source, id), as CloudEvents defines it: an entry whose (topic, source, id)
    /// is already stored is the same event and is kept once; two events that share an id but
    /// not a source are two rows.
    pub async fn store(&self, entries: Vec<NewEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        if self.reserve.is_released() {
            return Err(StoreError::DiskFull(
                "its reserve is kept for redelivering what it holds; new events are refused \
                 until space is free"
                    .into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        self.writes
            .try_send(WriteRequest { entries, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn sql(&self, sqlite: &str) -> String {
        match self.backend {
            Backend::Sqlite(_) => sqlite.to_owned(),
            Backend::Postgres(_) => numbered_placeholders(sqlite),
        }
    }

    /// Claims up to `limit` pending events that are due, for `lease`: no other claim returns
    /// them until the lease runs out (a proxy that dies mid-delivery releases them that way).
    pub async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<Entry>, StoreError> {
        self.upkeep(|| self.claim_due_once(limit, lease)).await
    }

    async fn claim_due_once(&self, limit: i64, lease: Duration) -> Result<Vec<Entry>, StoreError> {
        let now = now_ms();
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let lock = match self.backend {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let sql = self.sql(&format!(
            "UPDATE dlq_events SET claimed_until_ms = ? WHERE seq IN (\
               SELECT seq FROM dlq_events WHERE state = 'pending' AND next_attempt_ms <= ? \
               AND claimed_until_ms <= ? ORDER BY next_attempt_ms, seq LIMIT ?{lock}) \
             RETURNING {COLUMNS}"
        ));
        let rows = on_pool!(self.backend, pool => {
            sqlx::query(&sql).bind(until).bind(now).bind(now).bind(limit)
                .fetch_all(pool).await?
                .iter().map(entry).collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Removes delivered events.
    pub async fn delete(&self, seqs: &[i64]) -> Result<u64, StoreError> {
        self.upkeep(|| self.delete_once(seqs)).await
    }

    async fn delete_once(&self, seqs: &[i64]) -> Result<u64, StoreError> {
        let mut removed = 0;
        for chunk in seqs.chunks(INSERT_CHUNK) {
            let sql = self.sql(&format!(
                "DELETE FROM dlq_events WHERE seq IN ({})",
                vec!["?"; chunk.len()].join(",")
            ));
            removed += on_pool!(self.backend, pool => {
                let mut q = sqlx::query(&sql);
                for seq in chunk {
                    q = q.bind(*seq);
                }
                q.execute(pool).await?.rows_affected()
            });
        }
        Ok(removed)
    }

    /// Records failed attempts, in one transaction: each event is tried again at its
    /// `next` time, or parked when that is `None`.
    pub async fn record_failures(&self, failures: &[Failure]) -> Result<(), StoreError> {
        if failures.is_empty() {
            return Ok(());
        }
        self.upkeep(|| self.record_failures_once(failures)).await
    }

    async fn record_failures_once(&self, failures: &[Failure]) -> Result<(), StoreError> {
        let now = now_ms();
        let sql = self.sql(
            "UPDATE dlq_events SET attempts = attempts + 1, last_error = ?, state = ?, \
             next_attempt_ms = ?, claimed_until_ms = 0 WHERE seq = ?",
        );
        on_pool!(self.backend, pool => {
            in_transaction!(pool, conn => {
                for f in failures {
                    let (state, next_ms) = match f.next_attempt_ms {
                        Some(at) => (State::Pending, at),
                        None => (State::Parked, now),
                    };
                    sqlx::query(&sql)
                        .bind(f.error.as_str())
                        .bind(state.as_str())
                        .bind(next_ms)
                        .bind(f.seq)
                        .execute(&mut *conn)
                        .await?;
                }
            })
        });
        Ok(())
    }

    /// Makes parked (or pending) events due now with a fresh attempt budget; `None` replays
    /// every parked event. Returns how many were replayed.
    pub async fn replay(&self, seqs: Option<&[i64]>) -> Result<u64, StoreError> {
        self.upkeep(|| self.replay_once(seqs)).await
    }

    async fn replay_once(&self, seqs: Option<&[i64]>) -> Result<u64, StoreError> {
        let now = now_ms();
        let base = "UPDATE dlq_events SET state = 'pending', attempts = 0, next_attempt_ms = ?, \
                    claimed_until_ms = 0 WHERE ";
        let n = match seqs {
            None => {
                let sql = self.sql(&format!("{base}state = 'parked'"));
                on_pool!(self.backend, pool => {
                    sqlx::query(&sql).bind(now).execute(pool).await?.rows_affected()
                })
            }
            Some(seqs) => {
                let mut n = 0;
                for chunk in seqs.chunks(INSERT_CHUNK) {
                    let sql = self.sql(&format!(
                        "{base}seq IN ({})",
                        vec!["?"; chunk.len()].join(",")
                    ));
                    n += on_pool!(self.backend, pool => {
                        let mut q = sqlx::query(&sql).bind(now);
                        for seq in chunk {
                            q = q.bind(*seq);
                        }
                        q.execute(pool).await?.rows_affected()
                    });
                }
                n
            }
        };
        Ok(n)
    }

    /// One stored event.
    pub async fn get(&self, seq: i64) -> Result<Option<Entry>, StoreError> {
        let sql = self.sql(&format!("SELECT {COLUMNS} FROM dlq_events WHERE seq = ?"));
        on_pool!(self.backend, pool => {
            sqlx::query(&sql).bind(seq).fetch_optional(pool).await?
                .map(|r| entry(&r)).transpose()
        })
    }

    /// Stored events matching `filter`, oldest first, after `after_seq`.
    pub async fn list(
        &self,
        filter: &Filter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Entry>, StoreError> {
        // `?` parameters in order: after, state (twice), topic (twice), error (twice), limit.
        let sql = self.sql(&format!(
            "SELECT {COLUMNS} FROM dlq_events WHERE seq > ? \
             AND (? = '' OR state = ?) AND (? = '' OR topic = ?) \
             AND (? = '' OR last_error LIKE '%' || ? || '%') \
             ORDER BY seq LIMIT ?"
        ));
        let state = filter.state.map_or("", State::as_str);
        let topic = filter.topic.as_deref().unwrap_or("");
        let error = filter.error.as_deref().unwrap_or("");
        on_pool!(self.backend, pool => {
            sqlx::query(&sql)
                .bind(after_seq)
                .bind(state).bind(state)
                .bind(topic).bind(topic)
                .bind(error).bind(error)
                .bind(limit)
                .fetch_all(pool).await?
                .iter().map(entry).collect()
        })
    }

    /// Counts of pending and parked events.
    pub async fn counts(&self) -> Result<(i64, i64), StoreError> {
        let sql = "SELECT \
            COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
            COALESCE(SUM(CASE WHEN state = 'parked' THEN 1 ELSE 0 END), 0) AS parked \
            FROM dlq_events";
        on_pool!(self.backend, pool => {
            let row = sqlx::query(sql).fetch_one(pool).await?;
            Ok((row.try_get::<i64, _>("pending")?, row.try_get::<i64, _>("parked")?))
        })
    }
}

const COLUMNS: &str = "seq, event_id, event_source, topic, record_key, record_value, headers, state, \
                       attempts, last_error, next_attempt_ms, created_ms";

fn entry<R>(row: &R) -> Result<Entry, StoreError>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> i32: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Vec<u8>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    let headers: String = row.try_get("headers")?;
    Ok(Entry {
        seq: row.try_get("seq")?,
        event_id: row.try_get("event_id")?,
        event_source: row.try_get("event_source")?,
        topic: row.try_get("topic")?,
        record: KafkaRecord {
            key: row.try_get("record_key")?,
            value: row.try_get("record_value")?,
            headers: decode_headers(&headers)?,
        },
        state: State::parse(&row.try_get::<String, _>("state")?)?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// Headers as JSON `[[name, base64(value)], …]`: readable in a SQL shell, lossless for binary.
fn encode_headers(headers: &[(String, Vec<u8>)]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let pairs: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), b64.encode(v)))
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_headers(json: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let pairs: Vec<(String, String)> =
        serde_json::from_str(json).map_err(|e| StoreError::Database(format!("headers: {e}")))?;
    pairs
        .into_iter()
        .map(|(k, v)| {
            b64.decode(v)
                .map(|v| (k, v))
                .map_err(|e| StoreError::Database(format!("header value: {e}")))
        })
        .collect()
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

/// The group-commit writer: takes every write request queued since the last commit and
/// commits them together.
async fn group_commit(backend: Backend, mut rx: mpsc::Receiver<WriteRequest>) {
    const MAX_ROWS: usize = 5_000;
    while let Some(first) = rx.recv().await {
        let mut rows = first.entries.len();
        let mut batch = vec![first];
        while rows < MAX_ROWS {
            match rx.try_recv() {
                Ok(next) => {
                    rows += next.entries.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let result = insert_all(&backend, &batch).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, rows, "DLQ store commit failed");
        }
        for request in batch {
            let _ = request.reply.send(result.clone());
        }
    }
}

async fn insert_all(backend: &Backend, batch: &[WriteRequest]) -> Result<(), StoreError> {
    let created = now_ms();
    let entries: Vec<&NewEntry> = batch.iter().flat_map(|r| &r.entries).collect();
    let mut inserted = 0;
    on_pool!(backend, pool => {
        in_transaction!(pool, conn => {
        for chunk in entries.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::new(
                "INSERT INTO dlq_events (event_id, event_source, topic, record_key, \
                 record_value, headers, state, last_error, next_attempt_ms, created_ms) ",
            );
            q.push_values(chunk, |mut row, e| {
                row.push_bind(e.event_id.clone())
                    .push_bind(e.event_source.clone())
                    .push_bind(e.topic.clone())
                    .push_bind(e.record.key.clone())
                    .push_bind(e.record.value.clone())
                    .push_bind(encode_headers(&e.record.headers))
                    .push_bind(State::Pending.as_str())
                    .push_bind(e.error.clone())
                    .push_bind(e.next_attempt_ms)
                    .push_bind(created);
            });
            // The same event (topic, source, id) sent again while its first copy waits here
            // is kept once: it is already durable, so the answer for it is still "stored".
            q.push(" ON CONFLICT (topic, event_source, event_id) DO NOTHING");
            inserted += q.build().execute(&mut *conn).await?.rows_affected();
        }
        })
    });
    let duplicates = entries.len() as u64 - inserted.min(entries.len() as u64);
    if duplicates > 0 {
        tracing::info!(
            duplicates,
            "events already stored (same topic, source and id) kept once"
        );
    }
    Ok(())
}

mod api_keys;
pub mod reserve;
mod schemas;
mod settings;
pub use api_keys::{ApiKey, NewApiKey};
pub use schemas::{Registered, SCHEMAS_SETTING, SchemaBounds, SchemaVersion};
use settings::{AUDIT_INSERT, bind_audit};
pub use settings::{AuditEntry, Setting};
