//! Disk space held back for the store's own upkeep. A SQLite store whose disk fills up cannot
//! even delete: every write, a delete too, first grows the write-ahead log. Without room the
//! retry scheduler could deliver stored events but never remove them, and replay would fail,
//! until an operator freed space by hand.
//!
//! So the store keeps a file of zeros beside the database (`<db>.reserve`). When an upkeep
//! write (claim, delete, reschedule, park, replay, discard) finds the disk full, the file is
//! removed, the log checkpointed into the database in the room that leaves and truncated, and
//! the write tried again. From then on new events are refused (503)
//! rather than eat that room, until the reserve can be put back: the scheduler tries after
//! each round, once the drain has truncated the write-ahead log.
//! A PostgreSQL store has no reserve: its disk is the server's.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The reserve file of a SQLite store.
#[derive(Debug)]
pub struct Reserve {
    path: Option<PathBuf>,
    bytes: u64,
    released: AtomicBool,
}

impl Reserve {
    /// No reserve (PostgreSQL, or a size of 0).
    pub fn none() -> Self {
        Self {
            path: None,
            bytes: 0,
            released: AtomicBool::new(false),
        }
    }

    /// A reserve of `bytes` beside the SQLite database at `db`, created now (off the async
    /// workers). A disk already too full for it leaves the store in the released state.
    pub async fn beside(db: &Path, bytes: u64) -> Self {
        if bytes == 0 {
            return Self::none();
        }
        let mut path = db.as_os_str().to_owned();
        path.push(".reserve");
        let reserve = Self {
            path: Some(PathBuf::from(path)),
            bytes,
            released: AtomicBool::new(false),
        };
        if !reserve.fill().await {
            reserve.released.store(true, Ordering::Relaxed);
        }
        reserve
    }

    /// True when the reserve was given up and new events must not take the space.
    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::Relaxed)
    }

    /// Removes the reserve file; true when that freed space to try again in.
    pub async fn release(&self) -> bool {
        let Some(path) = self.path.clone() else {
            return false;
        };
        self.released.store(true, Ordering::Relaxed);
        let freed = tokio::task::spawn_blocking(move || std::fs::remove_file(&path).is_ok())
            .await
            .unwrap_or(false);
        if freed {
            tracing::warn!(
                bytes = self.bytes,
                "the store's disk is full: its reserve is released for redelivery; new \
                 events are refused until space is free again"
            );
        }
        freed
    }

    /// Puts the reserve file back, whole and synced; true when it is in place.
    pub async fn fill(&self) -> bool {
        let Some(path) = self.path.clone() else {
            return true;
        };
        let bytes = self.bytes;
        let filled = tokio::task::spawn_blocking(move || write_zeros(&path, bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match filled {
            Ok(()) => {
                if self.released.swap(false, Ordering::Relaxed) {
                    tracing::info!("the store's reserve is back: new events are stored again");
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "the store's reserve cannot be put back yet");
                false
            }
        }
    }
}

/// Writes `bytes` zeros to `path` (replacing it) and syncs them, so the space is really taken
/// (a sparse file would hold none). A failure removes the partial file.
fn write_zeros(path: &Path, bytes: u64) -> std::io::Result<()> {
    let result = (|| {
        let mut file = std::fs::File::create(path)?;
        let chunk = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_reserve_takes_its_space_and_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dlq.db");
        let reserve = Reserve::beside(&db, 100_000).await;
        let file = dir.path().join("dlq.db.reserve");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 100_000);
        assert!(!reserve.is_released());
        assert!(reserve.release().await);
        assert!(reserve.is_released() && !file.exists());
        assert!(!reserve.release().await, "nothing left to free");
        assert!(reserve.fill().await);
        assert!(!reserve.is_released() && file.exists());
        assert!(!Reserve::none().release().await);
        assert!(!Reserve::none().is_released());
    }
}
