//! A small order service that publishes through Courier: every placed order becomes an
//! `order.placed` event in `orders.events`, every failure an error event in
//! `orders.error.{out-of-stock|payment-declined}`, without the handler waiting for Kafka.
//!
//! ```sh
//! scripts/up.sh                                   # Kafka and the proxy on 127.0.0.1:8080
//! . .run/keys.env                                 # ORDERS_COURIER_KEY, the service's API key
//! cargo run -p courier-client --example orders    # this service on 127.0.0.1:3000
//! curl -sS 127.0.0.1:3000/orders -H 'content-type: application/json' \
//!   -d '{"item":"book","qty":2,"card":"4242"}'    # → 200, event in orders.events
//! curl -sS 127.0.0.1:3000/orders -H 'content-type: application/json' \
//!   -d '{"item":"book","qty":0,"card":"4242"}'    # → 409, event in orders.error.out-of-stock
//! ```
//!
//! `COURIER_URLS` (comma-separated proxy URLs) and `ORDERS_LISTEN` change the defaults;
//! without `ORDERS_COURIER_KEY` only a proxy with authentication off takes the events.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct NewOrder {
    item: String,
    qty: u32,
    card: String,
}

#[derive(Debug, Serialize)]
struct Placed {
    order_id: u64,
    item: String,
    qty: u32,
}

#[derive(Debug, courier::ErrorType)]
enum OrderError {
    /// errortype `out-of-stock`
    OutOfStock,
    /// errortype `payment-declined`
    PaymentDeclined(String),
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfStock => f.write_str("out of stock"),
            Self::PaymentDeclined(why) => write!(f, "payment declined: {why}"),
        }
    }
}

impl std::error::Error for OrderError {}

static NEXT_ORDER: AtomicU64 = AtomicU64::new(1);

/// Publishes `order.placed` with the `Placed` value on success, and an error event with the
/// item and quantity on failure; both through the global client.
#[courier::publish(type = "order.placed")]
#[courier::publish_errors(fields(item = order.item, qty = order.qty))]
async fn place_order(order: NewOrder) -> Result<Placed, OrderError> {
    if order.qty == 0 {
        return Err(OrderError::OutOfStock);
    }
    if !order.card.starts_with('4') {
        return Err(OrderError::PaymentDeclined("card not accepted".into()));
    }
    Ok(Placed {
        order_id: NEXT_ORDER.fetch_add(1, Ordering::Relaxed),
        item: order.item,
        qty: order.qty,
    })
}

async fn create(Json(order): Json<NewOrder>) -> Result<Json<Placed>, (StatusCode, String)> {
    place_order(order).await.map(Json).map_err(|e| {
        let status = match e {
            OrderError::OutOfStock => StatusCode::CONFLICT,
            OrderError::PaymentDeclined(_) => StatusCode::PAYMENT_REQUIRED,
        };
        (status, e.to_string())
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let urls = std::env::var("COURIER_URLS").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let mut client = courier::Client::builder("orders").proxies(urls.split(','));
    if let Ok(key) = std::env::var("ORDERS_COURIER_KEY") {
        client = client.api_key(key);
    }
    let client = client.build()?;
    courier::set_global(client.clone()).map_err(|_| "a global client is already installed")?;

    let listen = std::env::var("ORDERS_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(%listen, proxies = %urls, "orders service ready");
    let app = axum::Router::new().route("/orders", post(create));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;

    // Deliver what is still buffered before exiting.
    client.shutdown().await;
    tracing::info!(stats = ?client.stats(), "stopped");
    Ok(())
}
