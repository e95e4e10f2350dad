//! Courier's Helm chart (`deploy/helm/courier`) played on this host with `podman kube play`
//! (cargo feature `testcontainers`): rendered with `helm template` in its one-host form
//! (`values-podman.yaml`: one proxy Deployment per loopback port, no Service, autoscaler or
//! disruption budget, which kube play would ignore), then played on a Kafka container
//! cluster's network, so that the proxies reach the brokers by name. PostgreSQL (the store the
//! proxies share) and the main consumer group run from the same manifests.
//!
//! Podman 4.3 keeps the `Secret` of a kube play as YAML, which its own `secretKeyRef` cannot
//! read (it wants a JSON map of base64 values): the fleet's credentials are made here with
//! `podman secret create` in that form and named as the chart's `secret.existingSecret`.
//!
//! Every pod, volume and secret carries the release's name (under
//! `COURIER_TEST_CONTAINER_PREFIX`), and all are removed when the fleet is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use crate::containers::{DEFAULT_PROXY_IMAGE, KafkaContainers, NAME_PREFIX_ENV, PROXY_IMAGE_ENV};
use crate::proxy_process::free_port;

/// Environment variable with the `helm` binary (default: the one `scripts/setup.sh --test`
/// builds into `~/.cache/courier/go-bin`).
pub const HELM_ENV: &str = "COURIER_TEST_HELM";

/// The chart in this repository.
fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/courier")
}

fn helm() -> PathBuf {
    if let Ok(path) = std::env::var(HELM_ENV) {
        return path.into();
    }
    let cache = std::env::var("COURIER_CACHE").map_or_else(
        |_| {
            Path::new(&std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/courier")
        },
        PathBuf::from,
    );
    cache.join("go-bin/helm")
}

/// Runs a command to its end; panics when it cannot start.
fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", program.display()))
}

/// Runs `podman ARGS`; panics with its error output unless it succeeds.
fn podman(args: &[&str]) -> String {
    let out = run(Path::new("podman"), args);
    assert!(
        out.status.success(),
        "podman {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`podman`], off the async runtime's threads.
async fn podman_async(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        podman(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("podman task")
}

/// `registry/name:tag` → (`registry`, `tag`).
fn registry_and_tag(reference: &str) -> (String, String) {
    let (path, tag) = reference
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("image reference {reference} has no tag"));
    let (registry, _) = path
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("image reference {reference} has no registry"));
    (registry.to_owned(), tag.to_owned())
}

/// A proxy fleet, PostgreSQL and a consumer group from the chart, played by Podman.
pub struct KubePlayFleet {
    /// The release's name: every object's name starts with it.
    release: String,
    secret: String,
    manifest: PathBuf,
    /// `http://127.0.0.1:PORT` of each proxy, in the order of their pods.
    pub proxies: Vec<String>,
    /// The admin API's token (in the fleet's secret).
    pub admin_token: String,
    /// The kinds `helm template` rendered, each with its count (`Deployment` ×4, …).
    pub rendered_kinds: Vec<(String, usize)>,
    /// The rendered manifests and values.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for KubePlayFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePlayFleet")
            .field("release", &self.release)
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl KubePlayFleet {
    /// Renders the chart for `proxies` proxies on free loopback ports (`values` merged over
    /// `values-podman.yaml`: chart values as JSON), plays it on `cluster`'s network and waits
    /// (up to 180 s) until every proxy answers `/readyz`. Panics when helm, podman or an image
    /// is missing, or the fleet does not come up.
    pub async fn start(
        cluster: &KafkaContainers,
        proxies: usize,
        values: serde_json::Value,
    ) -> Self {
        let helm = helm();
        assert!(
            helm.exists(),
            "helm not found at {} (scripts/setup.sh --test builds it; or set {HELM_ENV})",
            helm.display()
        );
        let proxy_image =
            std::env::var(PROXY_IMAGE_ENV).unwrap_or_else(|_| DEFAULT_PROXY_IMAGE.into());
        let (registry, tag) = registry_and_tag(&proxy_image);
        for image in [
            proxy_image.clone(),
            format!("{registry}/courier-consumer-main:{tag}"),
            format!("{registry}/courier-postgres:15"),
        ] {
            let out = run(Path::new("podman"), &["image", "exists", &image]);
            assert!(
                out.status.success(),
                "image {image} missing: build it with scripts/images/build.sh \
                 (proxy consumer-main postgres; COURIER_IMAGES_PROFILE=debug tags :test)"
            );
        }
        let run_prefix = std::env::var(NAME_PREFIX_ENV).unwrap_or_else(|_| "courier-ct".into());
        let release = crate::unique(&format!("{run_prefix}-fleet-"));
        let ports: Vec<u16> = (0..proxies)
            .map(|_| free_port().expect("a free loopback port"))
            .collect();
        let dir = tempfile::tempdir().expect("temp dir");

        // The credentials, as Podman's secretKeyRef reads them.
        let secret = format!("{release}-credentials");
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let password = uuid::Uuid::new_v4().simple().to_string();
        let database_url =
            format!("postgres://courier:{password}@{release}-postgres-pod-0:5432/courier");
        let mut all_values = json!({
            "podman": {"proxyHostPorts": ports},
            "image": {"registry": registry, "tag": tag, "pullPolicy": "Never"},
            "kafka": {"bootstrapServers": cluster.internal_bootstrap},
            "secret": {"existingSecret": secret},
        });
        merge(&mut all_values, values);
        let values_file = dir.path().join("values.json");
        std::fs::write(&values_file, all_values.to_string()).expect("write the values");
        let chart = chart();
        let rendered = run(
            &helm,
            &[
                "template",
                &release,
                &chart.display().to_string(),
                "--kube-version",
                "1.31.0",
                "-f",
                &chart.join("values-podman.yaml").display().to_string(),
                "-f",
                &values_file.display().to_string(),
            ],
        );
        assert!(
            rendered.status.success(),
            "helm template failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let manifest = dir.path().join("fleet.yaml");
        std::fs::write(&manifest, &rendered.stdout).expect("write the manifests");
        let rendered_kinds = kinds(&String::from_utf8_lossy(&rendered.stdout));

        let fleet = Self {
            proxies: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            release,
            secret,
            manifest,
            admin_token,
            rendered_kinds,
            dir,
        };
        // Made once the fleet exists, whose drop removes it.
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret_file = fleet.dir.path().join("credentials.json");
        std::fs::write(
            &secret_file,
            json!({
                "admin-token": b64(&fleet.admin_token),
                "database-url": b64(&database_url),
                "postgres-password": b64(&password),
            })
            .to_string(),
        )
        .expect("write the credentials");
        podman_async(vec![
            "secret".into(),
            "create".into(),
            fleet.secret.clone(),
            secret_file.display().to_string(),
        ])
        .await;
        std::fs::remove_file(&secret_file).expect("remove the credentials file");

        let started = Instant::now();
        podman_async(vec![
            "kube".into(),
            "play".into(),
            "--network".into(),
            cluster.network.clone(),
            fleet.manifest.display().to_string(),
        ])
        .await;
        eprintln!(
            "[fleet] podman kube play of {} ({} proxies on {:?}) took {:?}",
            fleet.release,
            proxies,
            fleet.proxies,
            started.elapsed()
        );
        fleet.wait_ready(Duration::from_secs(180)).await;
        fleet
    }

    /// The pod of proxy `i` (0-based), as kube play names a Deployment's first pod.
    pub fn proxy_pod(&self, i: usize) -> String {
        format!("{}-proxy-{i}-pod-0", self.release)
    }

    /// The container of the first pod of Deployment `component` (`consumer-main`, …).
    pub fn container(&self, component: &str, container: &str) -> String {
        format!("{}-{component}-pod-0-{container}", self.release)
    }

    async fn wait_ready(&self, within: Duration) {
        let http = crate::http();
        let deadline = Instant::now() + within;
        for (i, base) in self.proxies.iter().enumerate() {
            loop {
                if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                    && r.status().is_success()
                {
                    break;
                }
                if Instant::now() > deadline {
                    let logs = run(
                        Path::new("podman"),
                        &[
                            "logs",
                            "--tail",
                            "20",
                            &format!("{}-proxy", self.proxy_pod(i)),
                        ],
                    );
                    panic!(
                        "proxy {i} at {base} not ready within {within:?}; its last log lines:\n{}{}",
                        String::from_utf8_lossy(&logs.stdout),
                        String::from_utf8_lossy(&logs.stderr)
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// Kills proxy `i`'s pod (SIGKILL to every container: no drain, as when a node dies) and
    /// removes it, so that nothing restarts it.
    pub async fn kill_proxy(&self, i: usize) {
        let pod = self.proxy_pod(i);
        podman_async(vec!["pod".into(), "kill".into(), pod.clone()]).await;
        podman_async(vec!["pod".into(), "rm".into(), "-f".into(), pod]).await;
    }

    /// The container of proxy `i`.
    pub fn proxy_container(&self, i: usize) -> String {
        format!("{}-proxy", self.proxy_pod(i))
    }

    /// Runs `container`'s health check as Podman made it from the pod's liveness probe
    /// (`podman healthcheck run`; nothing runs it on its own here, without systemd): Ok when
    /// healthy, otherwise Podman's words.
    pub async fn health_check(&self, container: &str) -> Result<(), String> {
        let container = container.to_owned();
        tokio::task::spawn_blocking(move || {
            let out = run(Path::new("podman"), &["healthcheck", "run", &container]);
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
        .await
        .expect("podman healthcheck task")
    }

    /// What Podman applied of `container`'s security context: user, read-only root
    /// filesystem, effective capabilities, security options (`no-new-privileges`).
    pub async fn security(&self, container: &str) -> String {
        podman_async(vec![
            "inspect".into(),
            container.to_owned(),
            "--format".into(),
            "user={{.Config.User}} readonly={{.HostConfig.ReadonlyRootfs}} \
             caps={{.EffectiveCaps}} opts={{.HostConfig.SecurityOpt}}"
                .into(),
        ])
        .await
        .trim()
        .to_owned()
    }

    /// The shared store's (pending, parked) counts, through `base`'s admin API.
    pub async fn store_counts(&self, base: &str) -> Result<(i64, i64), String> {
        let r = crate::http()
            .get(format!("{base}/admin/api/dlq/counts"))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status()));
        }
        let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        match (body["pending"].as_i64(), body["parked"].as_i64()) {
            (Some(p), Some(k)) => Ok((p, k)),
            _ => Err(format!("unexpected answer {body}")),
        }
    }

    /// Waits (at most `within`) until the shared store holds nothing pending, asking `base`;
    /// returns (pending, parked).
    pub async fn wait_drained(&self, base: &str, within: Duration) -> (i64, i64) {
        let deadline = Instant::now() + within;
        loop {
            let counts = self.store_counts(base).await;
            match counts {
                Ok((0, parked)) => return (0, parked),
                Ok(c) if Instant::now() > deadline => return c,
                Err(e) if Instant::now() > deadline => panic!("store counts from {base}: {e}"),
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

impl Drop for KubePlayFleet {
    fn drop(&mut self) {
        let manifest = self.manifest.display().to_string();
        // kube down stops at a pod already removed (a killed proxy): remove by name too.
        let _ = run(Path::new("podman"), &["kube", "down", &manifest]);
        let pods = run(Path::new("podman"), &["pod", "ls", "--format", "{{.Name}}"]);
        for pod in String::from_utf8_lossy(&pods.stdout).lines() {
            if pod.starts_with(&format!("{}-", self.release)) {
                let _ = run(Path::new("podman"), &["pod", "rm", "-f", pod]);
            }
        }
        let volumes = run(
            Path::new("podman"),
            &["volume", "ls", "--format", "{{.Name}}"],
        );
        for volume in String::from_utf8_lossy(&volumes.stdout).lines() {
            if volume.starts_with(&format!("{}-", self.release)) {
                let _ = run(Path::new("podman"), &["volume", "rm", "-f", volume]);
            }
        }
        let _ = run(Path::new("podman"), &["secret", "rm", &self.secret]);
    }
}

/// Merges `patch` into `base` (objects key by key; anything else replaces).
fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// The kinds in a multi-document YAML rendering (top-level `kind:` lines), counted.
fn kinds(yaml: &str) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for line in yaml.lines() {
        if let Some(kind) = line.strip_prefix("kind: ") {
            *counts.entry(kind.trim().to_owned()).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_objects_and_replaces_the_rest() {
        let mut base = json!({"a": {"b": 1, "c": [1]}, "d": 1});
        merge(
            &mut base,
            json!({"a": {"c": [2], "e": "x"}, "d": {"f": true}}),
        );
        assert_eq!(
            base,
            json!({"a": {"b": 1, "c": [2], "e": "x"}, "d": {"f": true}})
        );
    }

    #[test]
    fn image_references_split_into_registry_and_tag() {
        assert_eq!(
            registry_and_tag("localhost/courier-proxy:test"),
            ("localhost".to_owned(), "test".to_owned())
        );
    }

    #[test]
    fn kinds_are_counted_from_top_level_lines() {
        let yaml = "---\nkind: Deployment\nspec:\n  kind: nested\n---\nkind: Deployment\n---\nkind: ConfigMap\n";
        assert_eq!(
            kinds(yaml),
            vec![("ConfigMap".to_owned(), 1), ("Deployment".to_owned(), 2)]
        );
    }
}
