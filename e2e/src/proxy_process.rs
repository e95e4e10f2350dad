//! The proxy as a process of its own, for what needs one: fault and HA tests (to kill it), the
//! tracing test (its `main` installs the exporter) and the benchmarks (release builds, measured
//! from `/proc`). On a free loopback port, with a store of its own, and only the
//! `COURIER_*` settings given here: whatever the calling shell holds is removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A free loopback port (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A binary of the workspace in the directory of the running one: how the benchmark harness
/// (`courier-bench`, release) finds the `courier-proxy` built with the same profile.
pub fn beside_current_exe(name: &str) -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name(name);
    if !bin.exists() {
        bail!(
            "{} not found: build it with the same profile (cargo build --release -p courier-proxy)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Where a proxy process writes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Logs at `info` appended to this file (tests read it when something fails).
    LogFile(PathBuf),
    /// Warnings and errors on this process's stderr, nothing else (benchmarks).
    Quiet,
}

/// A running proxy; killed when dropped.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// The store's URL.
    pub dlq_url: String,
    /// Its log file, if it writes one: shown when a test fails while the process runs.
    log: Option<PathBuf>,
}

impl ProxyProcess {
    /// Starts the proxy binary `bin` against `bootstrap` with its store at `dlq_url` and the
    /// `COURIER_*` settings in `env` (authentication is off unless `env` turns it on: these
    /// runs are about delivery). Returns once the process runs; see [`Self::wait`].
    pub fn spawn(
        bin: &Path,
        bootstrap: &str,
        dlq_url: &str,
        env: &[(&str, &str)],
        output: Output,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(bin);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("COURIER_")) {
                command.env_remove(&key);
            }
        }
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--bootstrap-servers", bootstrap])
            .env("COURIER_AUTH__ENABLED", "false")
            .env("COURIER_DLQ__URL", dlq_url);
        let log = match output {
            Output::LogFile(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                command
                    .env("RUST_LOG", "info")
                    .stdout(file.try_clone()?)
                    .stderr(file);
                Some(path)
            }
            Output::Quiet => {
                command
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit());
                None
            }
        };
        let child = command
            .envs(env.iter().copied())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dlq_url: dlq_url.to_owned(),
            log,
        })
    }

    /// For tests: the debug `courier-proxy` built beside the test binary, its SQLite store and
    /// log (`proxy.log`) in `state_dir`; returns once it answers `/healthz`, and panics if it
    /// does not within 30 s.
    pub async fn start(bootstrap: &str, state_dir: &Path, env: &[(&str, &str)]) -> Self {
        let dlq_url = format!("sqlite:{}", state_dir.join("dlq.db").display());
        let proxy = Self::spawn(
            &crate::chaos::binary("courier-proxy"),
            bootstrap,
            &dlq_url,
            env,
            Output::LogFile(state_dir.join("proxy.log")),
        )
        .expect("start courier-proxy");
        proxy
            .wait(&reqwest::Client::new(), "/healthz", Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e} (log: {})", state_dir.join("proxy.log").display()));
        proxy
    }

    /// Waits until `path` (`/readyz`: Kafka reachable; `/healthz`: serving) answers 2xx.
    pub async fn wait(
        &self,
        http: &reqwest::Client,
        path: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        answering(http, &format!("{}{path}", self.base), within)
            .await
            .context("courier-proxy")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`-9`, `-TERM`) and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> ExitStatus {
        crate::chaos::signal_and_wait(&mut self.child, "proxy", signal, within)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test drops its proxy while unwinding, before the log's directory goes:
        // the log's warnings and its last lines say what the proxy was doing.
        if std::thread::panicking()
            && let Some(path) = &self.log
        {
            eprintln!("{}", log_excerpt(path, 60));
        }
    }
}

/// The first and last `n` warnings and errors of the proxy's log at `path`, then its last
/// `n` lines.
fn log_excerpt(path: &Path, n: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return format!("(no proxy log at {})", path.display());
    };
    let lines: Vec<&str> = text.lines().collect();
    let alarms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let ends = |all: &[&str]| -> String {
        if all.len() <= 2 * n {
            all.join("\n")
        } else {
            format!(
                "{}\n… {} lines …\n{}",
                all[..n].join("\n"),
                all.len() - 2 * n,
                all[all.len() - n..].join("\n")
            )
        }
    };
    format!(
        "--- proxy log {}: {} warnings and errors ---\n{}\n--- its last {n} lines ---\n{}",
        path.display(),
        alarms.len(),
        ends(&alarms),
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

/// Waits until a GET of `url` answers 2xx, asking every 100 ms for at most `within`.
pub async fn answering(http: &reqwest::Client, url: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} not answering within {within:?}")
}

/// A running `courier-http-floor` (the proxy's HTTP server with no event path, for the
/// benchmark's floor); killed when dropped.
#[derive(Debug)]
pub struct FloorProcess {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl FloorProcess {
    /// Starts `courier-http-floor` from beside the running binary on a free port; returns once
    /// it answers `/readyz`.
    pub async fn start(http: &reqwest::Client) -> anyhow::Result<Self> {
        let bin = beside_current_exe("courier-http-floor")?;
        let port = free_port()?;
        let child = Command::new(&bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let floor = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        answering(
            http,
            &format!("{}/readyz", floor.base),
            Duration::from_secs(30),
        )
        .await
        .context("courier-http-floor")?;
        Ok(floor)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FloorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
