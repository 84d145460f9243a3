//! Swapping databases by renaming them: the cutover puts the scratch database in place of the
//! live one, `rollback` puts the kept previous one back. Renames are instant whatever the
//! size, and all of a swap's renames commit together or not at all.

use tokio_postgres::Client;

use super::{DbError, Server};
use crate::restore::filter::quote_ident;

/// Renames in order, in one transaction. Every database being renamed is first closed to new
/// connections and its sessions ended (a database in use cannot be renamed); afterwards each
/// accepts connections again under its new name.
pub async fn rename_all(
    server: &Server,
    client: &Client,
    renames: &[(&str, &str)],
) -> Result<(), DbError> {
    // The databases that exist before the swap (a rename may take a name freed by an
    // earlier one), and the names each ends up with.
    let initial: Vec<&str> = renames
        .iter()
        .enumerate()
        .filter(|(i, (from, _))| !renames[..*i].iter().any(|(_, to)| to == from))
        .map(|(_, (from, _))| *from)
        .collect();
    let last_name = |db: &str| {
        renames.iter().fold(db.to_owned(), |name, (from, to)| {
            if name == *from {
                (*to).to_owned()
            } else {
                name
            }
        })
    };
    for db in &initial {
        set_allow_connections(server, client, db, false).await?;
    }
    let result = async {
        for from in &initial {
            client
                .execute(
                    // Client sessions only: the rename itself stops autovacuum workers.
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()
                       AND backend_type = 'client backend'",
                    &[from],
                )
                .await
                .map_err(|e| server.error(format!("ending the sessions on {from:?}"), &e))?;
        }
        let mut sql = String::from("BEGIN;\n");
        for (from, to) in renames {
            sql.push_str(&format!(
                "ALTER DATABASE {} RENAME TO {};\n",
                quote_ident(from),
                quote_ident(to)
            ));
        }
        sql.push_str("COMMIT;");
        let what = renames
            .iter()
            .map(|(f, t)| format!("{f} -> {t}"))
            .collect::<Vec<_>>()
            .join(", ");
        server
            .execute(client, &format!("renaming {what}"), &sql)
            .await
    }
    .await;
    // Whether the renames happened or not, every database accepts connections again.
    let names: Vec<String> = match &result {
        Ok(()) => initial.iter().map(|db| last_name(db)).collect(),
        Err(_) => {
            let _ = client.batch_execute("ROLLBACK").await;
            initial.iter().map(|db| (*db).to_owned()).collect()
        }
    };
    for name in names {
        set_allow_connections(server, client, &name, true).await?;
    }
    result
}

async fn set_allow_connections(
    server: &Server,
    client: &Client,
    database: &str,
    allow: bool,
) -> Result<(), DbError> {
    server
        .execute(
            client,
            &format!("setting ALLOW_CONNECTIONS {allow} on {database:?}"),
            &format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
                quote_ident(database)
            ),
        )
        .await
}
