//! HTTPS on the listener: a client that trusts the proxy's certificate publishes over TLS
//! (HTTP/1.1 and HTTP/2 by ALPN) and the event is in Kafka; plain HTTP to a TLS listener is
//! not served; a missing certificate stops the proxy at startup with a clear error.

use std::time::Duration;

use courier_e2e::{TestProxy, event_json, read_by_id, unique};
use courier_proxy::config::TlsConfig;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let proxy = TestProxy::start(|c| {
        c.tls = Some(TlsConfig {
            cert_path: cert_path.clone(),
            key_path: key_path.clone(),
        });
    })
    .await;
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let service = unique("secure");
    let url = format!("https://localhost:{}/v1/events", proxy.addr.port());
    for (i, http2) in [false, true].into_iter().enumerate() {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", proxy.addr)
            .timeout(Duration::from_secs(30));
        // HTTP/2 is negotiated by ALPN when the client offers it.
        if !http2 {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        let id = format!("tls-{i}");
        let resp = client
            .post(&url)
            .header("content-type", "application/cloudevents+json")
            .body(event_json(&id, &format!("/{service}"), json!({})).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.version(),
            if http2 {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            }
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["topic"], format!("{service}.events"));
    }
    let (seen, _) = read_by_id(&[&format!("{service}.events")], 2, Duration::from_secs(60)).await;
    assert!(seen.contains_key("tls-0") && seen.contains_key("tls-1"));

    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{}/healthz", proxy.addr))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP is not served on a TLS listener");
    proxy.stop().await;
}

#[tokio::test]
async fn a_missing_certificate_is_a_startup_error() {
    let config = TlsConfig {
        cert_path: "/nonexistent/cert.pem".into(),
        key_path: "/nonexistent/key.pem".into(),
    };
    let error = courier_proxy::server::tls_acceptor(&config)
        .err()
        .expect("no acceptor without a certificate")
        .to_string();
    assert!(error.contains("/nonexistent/cert.pem"), "{error}");
}
