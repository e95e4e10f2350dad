//! `courier-http-floor`: the proxy's HTTP server with no event path behind it, for
//! `courier-bench`'s floor scenario. The same listener, accept loop, hyper settings and
//! connection limits as the proxy (`courier_proxy::server::serve` with the default limits),
//! the same allocator and number of async workers; every `POST /v1/events` reads its body
//! and answers 200 with a fixed body of the proxy's answer's size, and `GET /readyz` answers
//! 200. What a request costs here is what it costs on this machine before the proxy does
//! anything of its own: the kernel's TCP, hyper, axum and tokio.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use clap::Parser;
use courier_proxy::config::{LimitsConfig, RuntimeConfig};
use tokio_util::sync::CancellationToken;

// As the proxy's: its allocator is part of what a request costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The answer's body: a delivered event's answer from the proxy, of the same length.
const ANSWER: &str = r#"{"id":"bench-floor-00000000000000000000","status":"delivered","code":200,"topic":"bench-00000000000000.events","partition":0,"offset":0}"#;

/// The proxy's HTTP server answering without an event path.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RuntimeConfig::default().workers())
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(args.listen))
}

async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let limits = LimitsConfig::default();
    let listener = courier_proxy::server::bind(listen, limits.listen_backlog)
        .with_context(|| format!("binding {listen}"))?;
    let app = axum::Router::new()
        .route("/v1/events", post(answer))
        .route("/readyz", get(|| async { StatusCode::OK }));
    let never = CancellationToken::new();
    courier_proxy::server::serve(listener, app, &limits, None, &never).await;
    Ok(())
}

async fn answer(body: Bytes) -> impl axum::response::IntoResponse {
    std::hint::black_box(body);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        ANSWER,
    )
}
