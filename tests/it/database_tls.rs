//! `sslmode` in `database.url` means what it means to libpq: `require` encrypts (without
//! verifying the certificate), `disable` never does, and a server without TLS refuses `require`.

use crate::common;

use std::sync::OnceLock;

use common::Postgres;
use staging_refresh::config::Secret;
use staging_refresh::database::Server;

fn tls_postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start_tls("postgres-tls"))
}

async fn encrypted(url: String) -> Result<bool, String> {
    let server = Server::new(&Secret::from(url));
    let client = server.connect(None).await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmode_chooses_whether_the_connection_is_encrypted() {
    let url = tls_postgres().url("postgres");
    assert_eq!(encrypted(format!("{url}?sslmode=require")).await, Ok(true));
    assert_eq!(encrypted(format!("{url}?sslmode=prefer")).await, Ok(true));
    assert_eq!(
        encrypted(url.clone()).await,
        Ok(true),
        "prefer is the default"
    );
    assert_eq!(encrypted(format!("{url}?sslmode=disable")).await, Ok(false));
}

#[tokio::test]
async fn require_against_a_server_without_tls_is_a_clear_error() {
    let url = common::postgres().url("postgres");
    assert_eq!(encrypted(format!("{url}?sslmode=prefer")).await, Ok(false));
    let err = encrypted(format!("{url}?sslmode=require"))
        .await
        .unwrap_err();
    assert!(err.contains("connecting to database \"postgres\""), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", common::postgres().port)),
        "{err}"
    );
}
