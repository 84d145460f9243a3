//! The scratch database's own settings, put back to what the refresh creates before the
//! cutover: code the dump ran as the database's owner could have changed them (a connection
//! limit of 0, `default_transaction_read_only`, an ACL), and staging must not inherit that.

use tokio_postgres::Client;

use super::sql::quote_ident;
use super::{DbError, Server};

/// Gives `database` (created owned by `created_by`) to `owner` and resets its connection
/// limit, connection and template flags, parameters (`ALTER DATABASE ... SET`) and ACL;
/// returns each difference found, for the run report.
pub async fn reset(
    server: &Server,
    client: &Client,
    database: &str,
    (created_by, owner): (&str, &str),
) -> Result<Vec<String>, DbError> {
    let what = format!("checking the settings of database {database:?}");
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_get_userbyid(d.datdba)::text, d.datconnlimit,
                 d.datallowconn, d.datistemplate,
                 (SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
                  WHERE s.setdatabase = d.oid AND s.setrole = 0),
                 d.datacl IS NOT NULL
                   AND d.datacl::text[] <> pg_catalog.acldefault('d', d.datdba)::text[],
                 (SELECT pg_catalog.array_agg(DISTINCT
                      CASE a.grantee WHEN 0 THEN 'PUBLIC'
                      ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END)
                  FROM pg_catalog.aclexplode(d.datacl) a)
             FROM pg_catalog.pg_database d WHERE d.datname = $1",
            &[&database],
        )
        .await
        .map_err(|e| server.error(&what, &e))?;
    let (had_owner, limit, allow, template): (String, i32, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let parameters: Option<Vec<String>> = row.get(4);
    let acl_changed: bool = row.get(5);
    let grantees: Option<Vec<String>> = row.get(6);
    let db = quote_ident(database);
    let mut found = Vec::new();
    let mut sql = Vec::new();
    if had_owner != owner {
        if had_owner != created_by {
            found.push(format!("owner was {had_owner:?}"));
        }
        sql.push(format!(
            "ALTER DATABASE {db} OWNER TO {}",
            quote_ident(owner)
        ));
    }
    if limit != -1 {
        found.push(format!("connection limit was {limit}"));
        sql.push(format!("ALTER DATABASE {db} CONNECTION LIMIT -1"));
    }
    if !allow {
        found.push("connections were not allowed".into());
        sql.push(format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    }
    if template {
        found.push("it was a template".into());
        sql.push(format!("ALTER DATABASE {db} IS_TEMPLATE false"));
    }
    if let Some(parameters) = parameters.filter(|p| !p.is_empty()) {
        // Names only: a value could be anything the dump chose.
        let names: Vec<&str> = parameters
            .iter()
            .map(|p| p.split('=').next().unwrap_or_default())
            .collect();
        found.push(format!("parameters were set: {}", names.join(", ")));
        sql.push(format!("ALTER DATABASE {db} RESET ALL"));
    }
    if acl_changed {
        found.push("its privileges were changed".into());
        // The privileges a new database has: all for the owner, CONNECT and TEMPORARY for
        // everyone.
        let mut everyone = grantees.unwrap_or_default();
        everyone.push("PUBLIC".into());
        everyone.sort();
        everyone.dedup();
        sql.push(format!(
            "REVOKE ALL ON DATABASE {db} FROM {}; GRANT ALL ON DATABASE {db} TO {}; \
             GRANT CONNECT, TEMPORARY ON DATABASE {db} TO PUBLIC",
            everyone.join(", "),
            quote_ident(owner)
        ));
    }
    if !sql.is_empty() {
        server
            .execute(
                client,
                &format!("resetting the settings of database {database:?}"),
                &sql.join(";\n"),
            )
            .await?;
    }
    Ok(found)
}
