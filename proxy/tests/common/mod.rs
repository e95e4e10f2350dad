//! What the store test suites share.

use sqlx::Connection as _;

/// The URL of a new, empty database on the test PostgreSQL, its name starting with `prefix`.
pub async fn fresh_postgres_database(prefix: &str) -> String {
    let base = std::env::var("COURIER_TEST_POSTGRES_URL").expect(
        "COURIER_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    );
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}
