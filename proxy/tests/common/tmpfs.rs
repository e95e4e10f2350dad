//! A small tmpfs for filling a disk on purpose, shared by the store's tests and the
//! end-to-end tests of a full store disk (`e2e/tests/dlq.rs` includes this file by path).

/// A tmpfs mounted on a temporary directory. Unmounted
/// when dropped, also when an assertion fails first; lazily (`umount -l`) when a closing
/// connection still holds a file, so no mount outlives the test.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s notation: `300k`, `1m`).
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            mounted.success(),
            "mounting a tmpfs needs root (CI and scripts/test.sh run as root)"
        );
        Self { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(self.dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}
