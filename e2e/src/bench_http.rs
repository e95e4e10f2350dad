//! The benchmark's HTTP/1.1 client: a pool of keep-alive connections to one address, one
//! request in flight on each, and nothing else per request — no redirects, no cookies, no
//! decompression, no per-request timers. A general client (reqwest) spent more CPU per
//! request than the proxy it measured on this 2-core machine, so the generator, not the
//! proxy, set the figures; `scripts/bench.sh` cross-checks this one against `wrk`.

use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;

/// Keep-alive connections to one HTTP/1.1 server.
#[derive(Debug)]
pub struct Http1Pool {
    addr: SocketAddr,
    authority: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

/// A URL split into what the pool needs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host and port.
    pub addr: SocketAddr,
    /// Path and query.
    pub path: String,
}

impl Endpoint {
    /// Parses `http://host:port/path` with a numeric host (the benchmark's servers listen on
    /// loopback addresses).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse()?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("no host in {url}"))?;
        let host = match authority.host() {
            "localhost" => "127.0.0.1",
            h => h,
        };
        let addr = SocketAddr::new(host.parse()?, authority.port_u16().unwrap_or(80));
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        Ok(Self { addr, path })
    }
}

impl Http1Pool {
    /// A pool for `addr`; connections are opened as requests need them.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            authority: addr.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn connect(&self) -> Option<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Some(send)
    }

    /// POSTs `body` to `path` and reads the whole answer; its status, or `None` when the
    /// connection failed.
    pub async fn post(&self, path: &str, content_type: &'static str, body: Bytes) -> Option<u16> {
        let idle = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        let mut send = match idle {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        send.ready().await.ok()?;
        let request = Request::post(path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .ok()?;
        let response = send.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        response.into_body().collect().await.ok()?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(send);
        }
        Some(status)
    }
}
