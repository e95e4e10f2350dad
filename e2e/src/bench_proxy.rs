//! Proxy processes for the benchmarks: the `courier-proxy` binary next to `courier-bench`
//! (built with the same profile), on a free loopback port, with a DLQ store of its own.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A free loopback port (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running proxy process; killed when dropped (its scenarios have counted their answers by
/// then).
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub url: String,
}

impl ProxyProcess {
    /// Starts a proxy against `bootstrap`, its SQLite DLQ store at `dlq`, with extra
    /// `COURIER_*` settings in `env`.
    pub fn start(bootstrap: &str, dlq: &Path, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let bin = std::env::current_exe()?.with_file_name("courier-proxy");
        if !bin.exists() {
            bail!(
                "{} not found: build it with the same profile (cargo build --release -p courier-proxy)",
                bin.display()
            );
        }
        let port = free_port()?;
        let mut command = Command::new(&bin);
        // The proxy reads its settings from `COURIER_*` variables: the benchmarked proxies
        // run with their defaults, whatever the calling shell holds.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("COURIER_")) {
                command.env_remove(&key);
            }
        }
        let child = command
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--bootstrap-servers",
                bootstrap,
            ])
            .env("RUST_LOG", "warn")
            // Measures the delivery path; authentication (one SHA-256 per request) is left out.
            .env("COURIER_AUTH__ENABLED", "false")
            .env("COURIER_DLQ__URL", format!("sqlite:{}", dlq.display()))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `path` (`/readyz`: Kafka reachable; `/healthz`: serving) answers 2xx.
    pub async fn wait(&self, http: &reqwest::Client, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}{path}", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("proxy at {} not answering {path} within 60 s", self.url)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
