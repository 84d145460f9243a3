//! After a cutover: can the backend's role (`database.owner`, which its objects belong to)
//! connect to the live database and write in it? A database that refuses connections, or
//! one read-only by default, would leave staging up but unusable.

use tokio_postgres::Client;

use super::sql::{ServerMessage, quote_ident};
use super::{DbError, Server};

/// Checks on `maintenance` that `owner` (the connected role when `None`) has CONNECT on
/// `database`, that it accepts connections with a non-zero limit and is not read-only by
/// default for it; then proves a write in a transaction rolled back, as `owner`.
pub async fn verify(
    server: &Server,
    maintenance: &Client,
    database: &str,
    owner: Option<&str>,
) -> Result<(), DbError> {
    let what = format!("checking that the backend's role may write in {database:?}");
    let failed = |message: String| DbError {
        what: what.clone(),
        server: server.redacted().to_owned(),
        message: ServerMessage::plain(message),
    };
    let row = maintenance
        .query_opt(
            "SELECT r.rolname::text,
                 pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT'),
                 d.datallowconn, d.datconnlimit,
                 (SELECT pg_catalog.string_agg(CASE WHEN s.setrole = 0 THEN 'the database'
                         WHEN s.setdatabase = 0 THEN 'the role'
                         ELSE 'the role in the database' END, ', ')
                  FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c
                  WHERE s.setdatabase IN (0, d.oid) AND s.setrole IN (0, r.oid)
                    AND c LIKE 'default\\_transaction\\_read\\_only=%'
                    AND pg_catalog.split_part(c, '=', 2)::boolean)
             FROM pg_catalog.pg_database d, pg_catalog.pg_roles r
             WHERE d.datname = $1 AND r.rolname = coalesce($2, current_user)",
            &[&database, &owner],
        )
        .await
        .map_err(|e| server.error(&what, &e))?
        .ok_or_else(|| failed("the database or the role does not exist".into()))?;
    let (role, connect, allow, limit, read_only): (String, bool, bool, i32, Option<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let mut wrong = Vec::new();
    if !connect {
        wrong.push(format!("{role} has no CONNECT privilege on it"));
    }
    if !allow {
        wrong.push("it does not allow connections".to_owned());
    }
    if limit == 0 {
        wrong.push("its connection limit is 0".to_owned());
    }
    if let Some(set_for) = read_only {
        wrong.push(format!(
            "default_transaction_read_only is on for {set_for} (role {role})"
        ));
    }
    if !wrong.is_empty() {
        return Err(failed(wrong.join("; ")));
    }
    let mut client = server.connect(Some(database)).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| server.error(&what, &e))?;
    tx.batch_execute(&format!(
        "SET LOCAL ROLE {};
         CREATE SCHEMA staging_refresh_probe;
         CREATE TABLE staging_refresh_probe.probe (x integer);
         INSERT INTO staging_refresh_probe.probe VALUES (1)",
        quote_ident(&role)
    ))
    .await
    .map_err(|e| server.error(&what, &e))?;
    tx.rollback().await.map_err(|e| server.error(&what, &e))
}
