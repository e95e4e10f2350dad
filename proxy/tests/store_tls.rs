//! The store on a PostgreSQL that requires TLS, as a managed one does: a throwaway server
//! (`scripts/postgres.sh --tls-cert`, needs PostgreSQL's server binaries, as `scripts/test.sh`
//! does) with a certificate made here, whose `pg_hba.conf` takes TCP connections over TLS
//! only. `sslmode=require` and `sslmode=verify-full` with the right CA store and claim events;
//! a wrong CA and a connection without TLS are refused with an error that says why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use courier_proxy::store::now_ms;
use courier_proxy::store::{NewEntry, Store};
use courier_shared::KafkaRecord;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use sqlx::Connection as _;

/// A certificate authority that signs server certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A server certificate for `localhost` and 127.0.0.1, and its key, as PEM.
    fn server(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "courier-test-postgres");
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A PostgreSQL server of its own that takes TCP connections over TLS only; stopped on drop.
struct TlsPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

impl TlsPostgres {
    fn start(ca: &Ca, files: &Path) -> Self {
        let (cert, key) = ca.server();
        let (cert_path, key_path) = (files.join("server.crt"), files.join("server.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        // The server's own directory (the script hands it to the `postgres` user when run as
        // root, so it must not sit inside a directory only root can enter).
        let dir = tempfile::Builder::new()
            .prefix("courier-pg-tls-")
            .tempdir()
            .unwrap();
        let out = Command::new(script())
            .arg("start")
            .arg("--dir")
            .arg(dir.path())
            .arg("--tls-cert")
            .arg(&cert_path)
            .arg("--tls-key")
            .arg(&key_path)
            .output()
            .expect("run scripts/postgres.sh");
        assert!(
            out.status.success(),
            "scripts/postgres.sh start --tls-cert failed (PostgreSQL's server binaries are \
             installed by scripts/setup.sh):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::fs::read_to_string(dir.path().join("port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Self { dir, port }
    }

    /// The URL of database `db` with `query` appended.
    fn url(&self, db: &str, query: &str) -> String {
        format!(
            "postgres://courier:courier@127.0.0.1:{}/{db}?{query}",
            self.port
        )
    }

    /// A fresh database, created over TLS.
    async fn database(&self) -> String {
        let name = format!("tls_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&self.url("courier", "sslmode=require"))
            .await
            .expect("connect with sslmode=require");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        name
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .output();
    }
}

fn entry(id: &str) -> NewEntry {
    NewEntry {
        event_id: id.to_owned(),
        event_source: "/billing".to_owned(),
        topic: "billing.events".to_owned(),
        record: KafkaRecord {
            key: None,
            value: Some(b"{}".to_vec()),
            headers: vec![("ce_id".into(), id.as_bytes().to_vec().into())],
        },
        error: "no acknowledgement".to_owned(),
        next_attempt_ms: now_ms(),
    }
}

/// Opens the store at `url`, stores an event and claims it back.
async fn store_and_claim(url: &str, id: &str) {
    let store = Store::open(url, 16)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    store.store(vec![entry(id)]).await.unwrap();
    let claimed = store.claim_due(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        [id]
    );
}

#[tokio::test]
async fn the_store_works_on_a_postgresql_that_requires_tls_and_checks_its_certificate() {
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("Courier test CA");
    let ca_path = files.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let other_ca_path = files.path().join("other-ca.pem");
    std::fs::write(&other_ca_path, Ca::new("Some other CA").cert.pem()).unwrap();
    let pg = TlsPostgres::start(&ca, files.path());
    let db = pg.database().await;

    // sslmode=require: encrypted, the certificate not checked.
    store_and_claim(&pg.url(&db, "sslmode=require"), "over-require").await;
    // The connection really is TLS (the server says so).
    let mut conn = sqlx::PgConnection::connect(&pg.url(&db, "sslmode=require"))
        .await
        .unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(ssl, "pg_stat_ssl says the connection is not encrypted");

    // verify-full with the CA that signed the server's certificate.
    let verified = pg.url(
        &db,
        &format!("sslmode=verify-full&sslrootcert={}", ca_path.display()),
    );
    store_and_claim(&verified, "over-verify-full").await;

    // verify-full with another CA: refused, and the error says it is the certificate.
    let wrong = pg.url(
        &db,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            other_ca_path.display()
        ),
    );
    let error = Store::open(&wrong, 16)
        .await
        .expect_err("a certificate of an unknown CA must be refused")
        .to_string();
    println!("wrong CA: {error}");
    assert!(
        error.contains("TLS") && error.to_lowercase().contains("certificate"),
        "{error}"
    );

    // Without TLS: the server's pg_hba.conf refuses it, so the connections above were TLS.
    let error = Store::open(&pg.url(&db, "sslmode=disable"), 16)
        .await
        .expect_err("a connection without TLS must be refused")
        .to_string();
    println!("no TLS: {error}");
    assert!(
        error.contains("pg_hba.conf rejects connection") && error.contains("no encryption"),
        "{error}"
    );
}
