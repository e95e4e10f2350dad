//! High availability: two proxy processes behind a real load balancer (HAProxy, from
//! Debian) share one PostgreSQL store; one is killed with `kill -9` under load. Every
//! id answered 2xx must be read back from Kafka — what the dead proxy had stored is
//! delivered by the other one once its claim lease runs out — and the balancer keeps
//! serving through the survivor.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use courier_e2e::chaos::{ProxyProcess, account, run_load, wait_drained};
use courier_e2e::{bootstrap, unique};
use sqlx::Connection as _;

/// A fresh database on the suite's PostgreSQL server; its URL.
async fn fresh_database() -> String {
    let base = std::env::var("COURIER_TEST_POSTGRES_URL").expect(
        "COURIER_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let name = format!("ha_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

/// HAProxy in the foreground, killed on drop.
struct Balancer {
    child: Child,
    base: String,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Balancer {
    /// Round robin over `backends`, health-checked on `/readyz` every 300 ms; a request
    /// whose connection fails or that gets no answer is sent to the other backend (the
    /// request is buffered for that), so a dead proxy costs at most a retry.
    async fn start(dir: &std::path::Path, backends: &[&str]) -> Self {
        let port = courier_e2e::proxy_process::free_port().expect("free port");
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!(
                    "  server proxy{i} {} check\n",
                    b.trim_start_matches("http://")
                )
            })
            .collect();
        let config = format!(
            "global\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n\
             \x20 retries 3\n  option redispatch\n  option http-buffer-request\n\
             \x20 retry-on conn-failure empty-response response-timeout\n\
             frontend courier\n  bind 127.0.0.1:{port}\n  default_backend proxies\n\
             backend proxies\n  balance roundrobin\n  option httpchk GET /readyz\n\
             \x20 http-check expect status 200\n  default-server inter 300ms fall 2 rise 2\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy (installed by scripts/setup.sh)");
        let balancer = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/readyz", balancer.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return balancer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("HAProxy did not serve on {} within 30 s", balancer.base);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_two_proxies_behind_haproxy_killed_under_load_loses_nothing() {
    let store_url = fresh_database().await;
    let bootstrap = bootstrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    // A short ack deadline sends part of the load through the shared store, so the kill
    // lands while the dead proxy holds stored events (and claims on them).
    let env = [
        ("COURIER_DLQ__URL", store_url.as_str()),
        ("COURIER_DELIVERY__ACK_TIMEOUT_MS", "20"),
    ];
    let mut first = ProxyProcess::start(&bootstrap, dirs[0].path(), &env).await;
    let second = ProxyProcess::start(&bootstrap, dirs[1].path(), &env).await;
    let balancer = Balancer::start(dirs[0].path(), &[&first.base, &second.base]).await;

    let service = unique("ha");
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(run_load(
        vec![balancer.base.clone()],
        format!("/{service}"),
        50,
        4,
        200_000,
        Duration::from_secs(10),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    first.signal_and_wait("-9", Duration::from_secs(10));
    let report = running.await.unwrap();
    assert!(
        !report.accepted().is_empty(),
        "the balancer accepted nothing"
    );

    // The survivor serves every request now.
    let after = run_load(
        vec![balancer.base.clone()],
        format!("/{service}-after"),
        50,
        2,
        1_000,
        Duration::from_secs(20),
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    assert_eq!(
        (after.refused, after.accepted().len()),
        (0, 1_000),
        "with one proxy dead, the balancer sends everything to the other: {:?}",
        after.refusals
    );

    // The survivor delivers what the dead proxy had stored once its claims expire.
    let store = courier_proxy::store::Store::open(&store_url, 4)
        .await
        .unwrap();
    let (pending, parked) = wait_drained(&store, Duration::from_secs(120)).await;
    assert_eq!((pending, parked), (0, 0), "the shared store drained");
    let (lost, _) = account(
        "HA: one of two proxies behind HAProxy kill -9",
        &bootstrap,
        &format!("{service}.events"),
        &report,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(lost, 0);
    drop(second);
}
