//! The leases of a SQLite store's claimed events, held in the proxy's memory.
//!
//! A SQLite store belongs to one proxy: several proxies share PostgreSQL, whose claims lease
//! rows in the database (`claimed_until_ms`, `FOR UPDATE SKIP LOCKED`). With one claimer, a
//! claim needs no write. It reads the due events' keys, leases the ones no round holds here,
//! and reads those rows. In WAL mode that read runs beside the writes that settle earlier
//! rounds instead of queueing behind them for the one write lock, and it writes nothing that
//! the round's delete must write again. Measured with `courier-bench --mode dlq`, that took the
//! drain from about 50,000 to about 74,000 events/s.
//!
//! What the database lease did, this keeps:
//! - No two claims hand out the same event while its lease runs.
//! - A lease that runs out (a round that never settled) frees its event for the next claim.
//! - A proxy that dies leaves no lease behind; its successor claims at once.
//!
//! A lock file beside the database (`<db>-claims`, an advisory `flock` held while the store is
//! open) makes a second process's claims fail with a clear error, instead of both delivering
//! the same events.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

use super::StoreError;

/// Leased events (seq → lease end, ms since the epoch) and the lock that makes this process
/// the store's only claimer.
#[derive(Debug, Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<i64, i64>>,
    lock_path: Option<PathBuf>,
    lock: Mutex<Option<File>>,
}

impl Leases {
    /// Leases for the SQLite database at `db` (no file, for an in-memory database).
    pub(super) fn beside(db: Option<&std::path::Path>) -> Self {
        Self {
            lock_path: db.map(|db| {
                let mut path = db.as_os_str().to_owned();
                path.push("-claims");
                PathBuf::from(path)
            }),
            ..Self::default()
        }
    }

    /// Makes this process the store's only claimer, once; fails while another holds it.
    pub(super) fn claim_lock(&self) -> Result<(), StoreError> {
        let Some(path) = &self.lock_path else {
            return Ok(());
        };
        let mut lock = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if lock.is_some() {
            return Ok(());
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {
                *lock = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Database(format!(
                "another process claims events from this SQLite store ({} is locked): a SQLite \
                 store belongs to one proxy; several proxies share a PostgreSQL store",
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(StoreError::Database(format!("{}: {e}", path.display())))
            }
        }
    }

    /// Forgets leases that ran out; returns how many are still held.
    pub(super) fn live(&self, now_ms: i64) -> usize {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, until| *until > now_ms);
        held.len()
    }

    /// Leases until `until_ms` the first `limit` of `due` that no lease holds; returns them,
    /// in `due`'s order.
    pub(super) fn take(&self, due: &[i64], limit: usize, now_ms: i64, until_ms: i64) -> Vec<i64> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::with_capacity(limit.min(due.len()));
        for &seq in due {
            if taken.len() == limit {
                break;
            }
            let free = held.get(&seq).is_none_or(|until| *until <= now_ms);
            if free {
                held.insert(seq, until_ms);
                taken.push(seq);
            }
        }
        taken
    }

    /// Ends the leases of `seqs` (delivered, rescheduled, parked, or gone).
    pub(super) fn release(&self, seqs: impl IntoIterator<Item = i64>) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for seq in seqs {
            held.remove(&seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_until_it_runs_out_or_is_released() {
        let leases = Leases::beside(None);
        assert_eq!(leases.take(&[1, 2, 3], 2, 0, 100), [1, 2]);
        assert_eq!(leases.take(&[1, 2, 3], 5, 50, 100), [3], "1 and 2 are held");
        leases.release([2]);
        assert_eq!(leases.take(&[1, 2, 3], 5, 50, 100), [2]);
        assert_eq!(leases.live(99), 3);
        assert_eq!(
            leases.take(&[1, 2, 3], 5, 100, 200),
            [1, 2, 3],
            "all ran out"
        );
        assert_eq!(leases.live(200), 0, "run-out leases are forgotten");
    }

    #[test]
    fn one_process_claims_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dlq.db");
        let first = Leases::beside(Some(&db));
        let second = Leases::beside(Some(&db));
        first.claim_lock().unwrap();
        first.claim_lock().unwrap();
        let err = second.claim_lock().unwrap_err().to_string();
        assert!(err.contains("one proxy"), "{err}");
        drop(first);
        second.claim_lock().unwrap();
    }
}
