//! What the attributes do to a function: its result is unchanged, and exactly the events
//! they promise are enqueued (their content, read back from Kafka, is checked in
//! `e2e/tests/client.rs`).

use std::sync::Arc;
use std::time::Duration;

use courier::{Client, ErrorType};

#[derive(Debug, ErrorType)]
enum OrderError {
    OutOfStock,
    PaymentDeclined(#[allow(dead_code)] String),
    #[courier(errortype = "fraud")]
    Suspicious {
        #[allow(dead_code)]
        score: u8,
    },
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug, ErrorType)]
struct HTTPTimeout;

impl std::fmt::Display for HTTPTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out")
    }
}

#[derive(Debug, serde::Serialize)]
struct Order {
    id: u64,
    qty: u32,
}

/// A client whose proxy never answers: what is enqueued stays counted in `published`.
fn offline_client() -> Client {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Client::builder("shop")
        .proxy(format!("http://127.0.0.1:{port}"))
        .backoff(Duration::from_secs(30), Duration::from_secs(30))
        .build()
        .unwrap()
}

#[courier::publish_errors(client = client, fields(order_id = order.id, qty = order.qty))]
fn reserve(client: &Client, order: Order) -> Result<u32, OrderError> {
    if order.qty == 0 {
        return Err(OrderError::OutOfStock);
    }
    // The body may consume an argument the fields read: they were taken on entry.
    let owned = order;
    Ok(owned.qty)
}

#[courier::publish_errors(client = client, errortype = "parse-failed")]
fn parse(client: &Client, s: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = s.parse()?;
    Ok(n * 2)
}

struct Service {
    client: Arc<Client>,
}

impl Service {
    #[courier::publish(client = self.client, type = "order.placed")]
    #[courier::publish_errors(client = self.client, fields(id))]
    async fn place(&self, id: u64) -> Result<Order, OrderError> {
        tokio::task::yield_now().await;
        if id == 0 {
            Err(OrderError::PaymentDeclined("card expired".into()))?;
        }
        Ok(Order { id, qty: 1 })
    }
}

#[test]
fn derived_error_types_name_the_variant_or_type() {
    assert_eq!(OrderError::OutOfStock.error_type(), "out-of-stock");
    assert_eq!(
        OrderError::PaymentDeclined(String::new()).error_type(),
        "payment-declined"
    );
    assert_eq!(OrderError::Suspicious { score: 9 }.error_type(), "fraud");
    assert_eq!(HTTPTimeout.error_type(), "http-timeout");
}

#[tokio::test]
async fn sync_functions_keep_their_result_and_enqueue_only_on_err() {
    let client = offline_client();
    assert_eq!(reserve(&client, Order { id: 1, qty: 2 }).unwrap(), 2);
    assert_eq!(client.stats().published, 0);
    assert!(matches!(
        reserve(&client, Order { id: 2, qty: 0 }),
        Err(OrderError::OutOfStock)
    ));
    assert_eq!(client.stats().published, 1);
    assert_eq!(parse(&client, "21").unwrap(), 42);
    assert!(parse(&client, "x").is_err());
    assert_eq!(client.stats().published, 2);
}

#[tokio::test]
async fn async_methods_publish_success_and_errors_without_waiting_for_delivery() {
    let service = Service {
        client: Arc::new(offline_client()),
    };
    let order = tokio::time::timeout(Duration::from_secs(5), service.place(7))
        .await
        .expect("returns without waiting for the (offline) proxy")
        .unwrap();
    assert_eq!(order.id, 7);
    assert_eq!(service.client.stats().published, 1, "the Ok value");
    assert!(matches!(
        service.place(0).await,
        Err(OrderError::PaymentDeclined(_))
    ));
    assert_eq!(service.client.stats().published, 2, "the error");
}

#[courier::publish_errors]
fn with_the_global_client(fail: bool) -> Result<(), HTTPTimeout> {
    if fail { Err(HTTPTimeout) } else { Ok(()) }
}

#[tokio::test]
async fn without_a_client_argument_the_global_client_is_used() {
    // Nothing installed yet: the function still works, and nothing is published.
    assert!(with_the_global_client(true).is_err());
    let client = offline_client();
    courier::set_global(client.clone()).unwrap();
    assert!(
        courier::set_global(offline_client()).is_err(),
        "installed once"
    );
    assert!(with_the_global_client(false).is_ok());
    assert!(with_the_global_client(true).is_err());
    assert_eq!(client.stats().published, 1);
}
