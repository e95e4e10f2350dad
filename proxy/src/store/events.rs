//! Stored events: what Kafka did not acknowledge in time, written through the group-commit
//! writer, claimed by the retry scheduler, listed, replayed and discarded by an operator.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use courier_shared::KafkaRecord;
use sqlx::{QueryBuilder, Row as _};
use tokio::sync::{mpsc, oneshot};

use super::{Backend, Store, StoreError, now_ms, numbered_placeholders};

/// Rows per INSERT statement (SQLite allows 32,766 bound values; a row binds 10).
const INSERT_CHUNK: usize = 500;

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
    /// The stored header text, kept as it is when it cannot be read back into headers: the
    /// admin API lists such a row without its headers and shows this instead, so that a
    /// discard's audit entry keeps it. Always `None` for a claimed event.
    pub unreadable_headers: Option<String>,
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

#[derive(Debug)]
pub(super) struct WriteRequest {
    entries: Vec<NewEntry>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

impl Store {
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

    /// Claims up to `limit` pending events that are due, for `lease`: no other claim returns
    /// them until the lease runs out, they are deleted or they are rescheduled (a proxy that
    /// dies mid-delivery releases them that way). A SQLite store leases them in this process
    /// ([`super::leases`]), PostgreSQL in the database.
    ///
    /// A claimed row that cannot be read back into an event is parked with the reason, for an
    /// operator, instead of failing the claim: a failed claim would hand out none of the
    /// events beside it, and a SQLite claim would never read past it.
    pub async fn claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<Entry>, StoreError> {
        let claimed = self.upkeep(|| self.claim_due_once(limit, lease)).await?;
        let (entries, unreadable): (Vec<_>, Vec<_>) = claimed.into_iter().partition(Result::is_ok);
        let unreadable: Vec<Failure> = unreadable.into_iter().filter_map(Result::err).collect();
        if !unreadable.is_empty() {
            tracing::error!(
                seqs = ?unreadable.iter().map(|f| f.seq).collect::<Vec<_>>(),
                error = %unreadable[0].error,
                "stored events that cannot be read are parked"
            );
            self.record_failures(&unreadable).await?;
        }
        Ok(entries.into_iter().filter_map(Result::ok).collect())
    }

    async fn claim_due_once(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = now_ms();
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Postgres(pool) => {
                let sql = numbered_placeholders(&format!(
                    "UPDATE dlq_events SET claimed_until_ms = ? WHERE seq IN (\
                       SELECT seq FROM dlq_events WHERE state = 'pending' \
                       AND next_attempt_ms <= ? AND claimed_until_ms <= ? \
                       ORDER BY next_attempt_ms, seq LIMIT ? FOR UPDATE SKIP LOCKED) \
                     RETURNING {COLUMNS}"
                ));
                return sqlx::query(&sql)
                    .bind(until)
                    .bind(now)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|row| claimed(row).map(|(_, c)| c))
                    .collect();
            }
        };
        if !self.leases.claimer()? {
            return Ok(Vec::new());
        }
        // Claims take turns: each reads after the one before it, from where it stopped.
        let mut claims = self.leases.claims().await;
        let after = claims.begin(now);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dlq_events WHERE state = 'pending' AND next_attempt_ms <= ? \
             AND (next_attempt_ms, seq) > (?, ?) ORDER BY next_attempt_ms, seq LIMIT ?"
        ))
        .bind(now)
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(pool)
        .await?;
        let end = rows.len() < usize::try_from(limit).unwrap_or(usize::MAX);
        let due = rows.iter().map(claimed).collect::<Result<Vec<_>, _>>()?;
        Ok(claims
            .take(due, end, until, |(key, _)| *key)
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// Removes delivered events.
    pub async fn delete(&self, seqs: &[i64]) -> Result<u64, StoreError> {
        let removed = self.upkeep(|| self.delete_once(seqs)).await?;
        self.leases.release(seqs.iter().copied());
        Ok(removed)
    }

    async fn delete_once(&self, seqs: &[i64]) -> Result<u64, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        // One transaction for a round's deletes: one commit (one sync of the log) instead
        // of one per statement.
        let removed = on_pool!(self.backend, pool => {
            in_transaction!(pool, conn => {
                let mut removed = 0;
                for chunk in seqs.chunks(INSERT_CHUNK) {
                    let sql = self.sql(&format!(
                        "DELETE FROM dlq_events WHERE seq IN ({})",
                        vec!["?"; chunk.len()].join(",")
                    ));
                    let mut q = sqlx::query(&sql);
                    for seq in chunk {
                        q = q.bind(*seq);
                    }
                    removed += q.execute(&mut *conn).await?.rows_affected();
                }
                removed
            })
        });
        Ok(removed)
    }

    /// Records failed attempts, in one transaction: each event is tried again at its
    /// `next` time, or parked when that is `None`.
    pub async fn record_failures(&self, failures: &[Failure]) -> Result<(), StoreError> {
        if failures.is_empty() {
            return Ok(());
        }
        self.upkeep(|| self.record_failures_once(failures)).await?;
        self.leases.release(failures.iter().map(|f| f.seq));
        Ok(())
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

    /// Headers as the admin API lists a row: a row whose stored headers cannot be read is still
    /// listed, without them and with their text as it is (a claim parks it with the reason),
    /// so that one damaged row does not hide every other from the operator. Logged once per
    /// row, not on every listing (the admin page lists again and again).
    fn listed_headers(
        &self,
        text: String,
        seq: i64,
    ) -> Result<(courier_shared::binding::Headers, Option<String>), StoreError> {
        match decode_headers(&text) {
            Ok(headers) => Ok((headers, None)),
            Err(e) => {
                let mut logged = self
                    .unreadable_logged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                // Bounded: a store full of damaged rows logs again after this many.
                if logged.len() >= UNREADABLE_LOGGED_MAX {
                    logged.clear();
                }
                if logged.insert(seq) {
                    tracing::warn!(seq, error = %e, "a stored event's headers cannot be read; listed without them");
                }
                Ok((Vec::new(), Some(text)))
            }
        }
    }

    /// One stored event.
    pub async fn get(&self, seq: i64) -> Result<Option<Entry>, StoreError> {
        let sql = self.sql(&format!("SELECT {COLUMNS} FROM dlq_events WHERE seq = ?"));
        on_pool!(self.backend, pool => {
            sqlx::query(&sql).bind(seq).fetch_optional(pool).await?
                .map(|r| read_entry(&r, |seq, h| self.listed_headers(h, seq))).transpose()
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
                .iter().map(|r| read_entry(r, |seq, h| self.listed_headers(h, seq))).collect()
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

/// Most rows whose unreadable headers [`Store::listed_headers`] remembers having logged.
const UNREADABLE_LOGGED_MAX: usize = 4096;

const COLUMNS: &str = "seq, event_id, event_source, topic, record_key, record_value, headers, state, \
                       attempts, last_error, next_attempt_ms, created_ms";

/// A claimed row: its event, or, when the row cannot be read back into one, the failure that
/// parks it.
type Claimed = Result<Entry, Failure>;

/// A claimed row with its claim order (due time, seq).
fn claimed<R>(row: &R) -> Result<((i64, i64), Claimed), StoreError>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> i32: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Vec<u8>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    let seq: i64 = row.try_get("seq")?;
    let key = (row.try_get("next_attempt_ms")?, seq);
    let event = read_entry(row, |_, h| Ok((decode_headers(&h)?, None))).map_err(|e| Failure {
        seq,
        error: format!("the stored event cannot be read: {e}"),
        next_attempt_ms: None,
    });
    Ok((key, event))
}

/// A row read back into an entry, its stored header text decoded by `headers_of` (given the
/// row's seq) into the headers and, when they cannot be read, the text as it is.
fn read_entry<R>(
    row: &R,
    headers_of: impl FnOnce(
        i64,
        String,
    )
        -> Result<(courier_shared::binding::Headers, Option<String>), StoreError>,
) -> Result<Entry, StoreError>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> i32: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Vec<u8>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    let seq = row.try_get("seq")?;
    let (headers, unreadable_headers) = headers_of(seq, row.try_get("headers")?)?;
    Ok(Entry {
        seq,
        event_id: row.try_get("event_id")?,
        event_source: row.try_get("event_source")?,
        topic: row.try_get("topic")?,
        record: KafkaRecord {
            key: row.try_get("record_key")?,
            value: row.try_get("record_value")?,
            headers,
        },
        state: State::parse(&row.try_get::<String, _>("state")?)?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        created_ms: row.try_get("created_ms")?,
        unreadable_headers,
    })
}

/// Headers as JSON `[[name, base64(value)], …]`: readable in a SQL shell, lossless for binary.
fn encode_headers(headers: &courier_shared::binding::Headers) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let pairs: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_ref(), b64.encode(&**v)))
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_headers(json: &str) -> Result<courier_shared::binding::Headers, StoreError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let pairs: Vec<(String, String)> =
        serde_json::from_str(json).map_err(|e| StoreError::Database(format!("headers: {e}")))?;
    pairs
        .into_iter()
        .map(|(k, v)| {
            b64.decode(v)
                .map(|v| (Cow::Owned(k), Cow::Owned(v)))
                .map_err(|e| StoreError::Database(format!("header value: {e}")))
        })
        .collect()
}

/// The group-commit writer: takes every write request queued since the last commit and
/// commits them together.
pub(super) async fn group_commit(backend: Backend, mut rx: mpsc::Receiver<WriteRequest>) {
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
            tracing::error!(error = %e, rows, "store commit failed");
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
