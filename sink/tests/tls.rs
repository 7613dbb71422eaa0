//! The sink talks TLS to PostgreSQL when the URL asks for it (`sslmode=require`): checked on
//! the server's own view of the connection (`pg_stat_ssl`). Needs `DATABASE_URL` and a server
//! with `ssl = on` (Debian's PostgreSQL has it, with its snakeoil certificate).

mod support;

use streamwatch_sink::service::MetricStore;
use support::database_url;

async fn uses_tls(url: &str) -> Option<bool> {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let store = MetricStore::from_config(config, 1).unwrap();
    let client = store.client().await.ok()?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Some(row.get(0))
}

fn with_sslmode(url: &str, mode: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode={mode}")
}

#[tokio::test]
async fn sslmode_require_connects_over_tls_and_disable_does_not() {
    let Some(url) = database_url("sslmode_require_connects_over_tls_and_disable_does_not") else {
        return;
    };
    let plain = uses_tls(&with_sslmode(&url, "disable")).await;
    assert_eq!(plain, Some(false), "sslmode=disable must not use TLS");
    let server_ssl: String = {
        let config: tokio_postgres::Config = url.parse().unwrap();
        support::connect(&config)
            .await
            .query_one("SHOW ssl", &[])
            .await
            .unwrap()
            .get(0)
    };
    if server_ssl != "on" {
        eprintln!("SKIPPED the TLS half: the server at DATABASE_URL has ssl = {server_ssl}");
        return;
    }
    assert_eq!(uses_tls(&with_sslmode(&url, "require")).await, Some(true));
    assert_eq!(uses_tls(&with_sslmode(&url, "prefer")).await, Some(true));
}
