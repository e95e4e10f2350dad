//! The leases of a SQLite store's claimed events, held in the proxy's memory.
//!
//! A SQLite store belongs to one proxy: several proxies share PostgreSQL, whose claims lease
//! rows in the database (`claimed_until_ms`, `FOR UPDATE SKIP LOCKED`). With one claimer, a
//! claim needs no write: it reads due events from where the last claim stopped (so it does not
//! read again the rounds still in flight) and leases here the ones no round holds. In WAL mode
//! that read runs beside the writes that settle earlier rounds instead of queueing behind them
//! for the one write lock, and it writes nothing that the round's delete must write again.
//!
//! What the database lease did, this keeps:
//! - No two claims hand out the same event while its lease runs.
//! - A lease that runs out (a round that never settled) frees its event for the next claim.
//! - A proxy that dies leaves no lease behind; its successor claims at once.
//!
//! A lock file beside the database (`<db>-claims`, an advisory `flock` taken by the first claim
//! and held while the store is open) keeps a second process on the same file from claiming
//! too, which would deliver the same events twice: its claims find nothing, and it takes over
//! when the first exits.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::StoreError;

/// The claims of a SQLite store: the leases held, where the last claim stopped reading, the
/// leases ended since, and the lock that makes this process the store's only claimer.
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// False for PostgreSQL, whose leases are rows' columns: nothing is kept here.
    active: bool,
    claims: tokio::sync::Mutex<Claims>,
    /// Ended by deletes and reschedules, applied by the next claim before it reads.
    ended: Mutex<Vec<i64>>,
    lock_path: Option<PathBuf>,
    lock: Mutex<Option<File>>,
    /// Another process held the lock at the last try (logged once).
    standing_by: AtomicBool,
}

/// What claims share, one claim at a time.
#[derive(Debug, Default)]
pub(super) struct Claims {
    /// seq → lease end (ms since the epoch).
    held: HashMap<i64, i64>,
    /// The (due time, seq) the last claim read up to; `None` starts from the first due event.
    cursor: Option<(i64, i64)>,
}

/// One claim's turn.
pub(super) struct Turn<'a> {
    claims: tokio::sync::MutexGuard<'a, Claims>,
    ended: &'a Mutex<Vec<i64>>,
}

impl Leases {
    /// Leases of a SQLite store; `db` is its file (none for an in-memory database).
    pub(super) fn sqlite(db: Option<&Path>) -> Self {
        Self {
            active: true,
            lock_path: db.map(|db| {
                let mut path = db.as_os_str().to_owned();
                path.push("-claims");
                PathBuf::from(path)
            }),
            ..Self::default()
        }
    }

    /// True when this process is the store's claimer: the first call that finds the lock free
    /// takes it for as long as the store is open. While another process holds it, claims here
    /// find nothing (that process delivers what this one stores) and this one stands by,
    /// taking over once the other exits.
    pub(super) fn claimer(&self) -> Result<bool, StoreError> {
        let Some(path) = &self.lock_path else {
            return Ok(true);
        };
        let mut lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if lock.is_some() {
            return Ok(true);
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                if self.standing_by.swap(false, Ordering::Relaxed) {
                    tracing::info!(lock = %path.display(), "this proxy now claims the SQLite store's events");
                }
                *lock = Some(file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                if !self.standing_by.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        lock = %path.display(),
                        "another process claims this SQLite store's events; this proxy's retry \
                         scheduler stands by until it exits (several proxies that share a store \
                         should share PostgreSQL)"
                    );
                }
                Ok(false)
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(StoreError::Database(format!("{}: {e}", path.display())))
            }
        }
    }

    /// Waits for the claim before this one to finish.
    pub(super) async fn claims(&self) -> Turn<'_> {
        Turn {
            claims: self.claims.lock().await,
            ended: &self.ended,
        }
    }

    /// Ends the leases of `seqs` (delivered, rescheduled, parked or discarded), after the write
    /// that did so committed. The next claim applies it before it reads: a claim reading now
    /// may have read before that commit, and must still see them held.
    pub(super) fn release(&self, seqs: impl IntoIterator<Item = i64>) {
        // A process that stands by holds no lease (an operator's discard there ends none).
        let claims_here = self.lock_path.is_none()
            || self
                .lock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
        if self.active && claims_here {
            self.ended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(seqs);
        }
    }
}

impl Turn<'_> {
    /// Applies the leases ended and run out since the last claim; returns where to read from.
    /// An event whose lease ran out may lie behind the cursor (its round read it, then never
    /// settled): the read starts from the first due event again, so that it is claimed now
    /// rather than once the cursor has passed every other due event. Ended leases need no
    /// such restart: their events were deleted, or rescheduled to a due time after any the
    /// cursor has read.
    pub(super) fn begin(&mut self, now_ms: i64) -> (i64, i64) {
        let ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(|p| p.into_inner()));
        let held = &mut self.claims.held;
        for seq in ended {
            held.remove(&seq);
        }
        let before = held.len();
        held.retain(|_, until| *until > now_ms);
        if held.len() < before {
            self.claims.cursor = None;
        }
        self.claims.cursor.unwrap_or((i64::MIN, i64::MIN))
    }

    /// Leases until `until_ms` those of `due` (read in (due time, seq) order from the cursor)
    /// that no lease holds, and moves the cursor past them; `end` says the read reached the
    /// last due event, so the next claim starts from the first again (events that came due
    /// behind the cursor, or whose lease ran out, are found then).
    pub(super) fn take<T>(
        &mut self,
        due: Vec<T>,
        end: bool,
        until_ms: i64,
        key: impl Fn(&T) -> (i64, i64),
    ) -> Vec<T> {
        self.claims.cursor = if end { None } else { due.last().map(&key) };
        let held = &mut self.claims.held;
        due.into_iter()
            .filter(|e| {
                let seq = key(e).1;
                match held.entry(seq) {
                    std::collections::hash_map::Entry::Occupied(_) => false,
                    std::collections::hash_map::Entry::Vacant(free) => {
                        free.insert(until_ms);
                        true
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seqs: &[i64]) -> Vec<(i64, i64)> {
        seqs.iter().map(|&s| (0, s)).collect()
    }

    #[tokio::test]
    async fn a_lease_holds_until_it_runs_out_or_ends() {
        let leases = Leases::sqlite(None);
        let claim = |due: &[i64], end, now, until| {
            let leases = &leases;
            let due = keys(due);
            async move {
                let mut turn = leases.claims().await;
                turn.begin(now);
                turn.take(due, end, until, |k| *k)
                    .into_iter()
                    .map(|k| k.1)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(claim(&[1, 2], false, 0, 100).await, [1, 2]);
        assert_eq!(
            leases.claims().await.begin(0),
            (0, 2),
            "the next claim reads after the last"
        );
        assert_eq!(claim(&[1, 2, 3], true, 50, 100).await, [3], "1, 2 held");
        assert_eq!(leases.claims().await.begin(50), (i64::MIN, i64::MIN));
        leases.release([2]);
        assert_eq!(claim(&[1, 2, 3], true, 50, 100).await, [2], "2 ended");
        assert_eq!(
            claim(&[1, 2, 3], true, 100, 200).await,
            [1, 2, 3],
            "all ran out"
        );
    }

    #[tokio::test]
    async fn a_lease_that_runs_out_restarts_the_read_from_the_first_due_event() {
        let leases = Leases::sqlite(None);
        let mut turn = leases.claims().await;
        turn.begin(0);
        assert_eq!(turn.take(keys(&[1, 2]), false, 100, |k| *k), keys(&[1, 2]));
        drop(turn);
        let mut turn = leases.claims().await;
        assert_eq!(turn.begin(50), (0, 2), "leases held: read on after 2");
        assert_eq!(turn.take(keys(&[3]), false, 60, |k| *k), keys(&[3]));
        drop(turn);
        // 3's lease ran out at 60, 1's and 2's still hold: 3 lies behind the cursor.
        let mut turn = leases.claims().await;
        assert_eq!(
            turn.begin(70),
            (i64::MIN, i64::MIN),
            "read from the first again"
        );
        assert_eq!(
            turn.take(keys(&[1, 2, 3, 4]), true, 200, |k| *k),
            keys(&[3, 4]),
            "3 claimed again at once, 1 and 2 still held"
        );
    }

    #[tokio::test]
    async fn a_store_that_does_not_claim_keeps_nothing_here() {
        let postgres = Leases::default();
        postgres.release([1, 2, 3]);
        assert!(postgres.ended.lock().unwrap().is_empty());

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dlq.db");
        let claimer = Leases::sqlite(Some(&db));
        let standby = Leases::sqlite(Some(&db));
        assert!(claimer.claimer().unwrap());
        assert!(!standby.claimer().unwrap());
        standby.release([4]);
        assert!(standby.ended.lock().unwrap().is_empty());
        claimer.release([4]);
        assert_eq!(*claimer.ended.lock().unwrap(), [4]);
    }

    #[test]
    fn one_process_claims_from_a_file_and_the_next_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dlq.db");
        let first = Leases::sqlite(Some(&db));
        let second = Leases::sqlite(Some(&db));
        assert!(first.claimer().unwrap());
        assert!(first.claimer().unwrap());
        assert!(!second.claimer().unwrap(), "the first holds the lock");
        drop(first);
        assert!(second.claimer().unwrap());
    }
}
