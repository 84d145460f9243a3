//! Swapping databases by renaming them: the cutover puts the scratch database in place of the
//! live one, `rollback` puts the kept previous one back. Renames are instant whatever the
//! size, and all of a swap's renames commit together or not at all.

use tokio_postgres::Client;

use super::sql::quote_ident;
use super::{DbError, Server};

/// Renames in order, in one transaction. Every database being renamed is first closed to new
/// connections and its sessions ended (a database in use cannot be renamed); afterwards each
/// accepts connections again under its new name.
pub async fn rename_all(
    server: &Server,
    client: &Client,
    renames: &[(&str, &str)],
) -> Result<(), DbError> {
    let moved = moves(renames);
    let initial: Vec<&str> = moved.iter().map(|(before, _)| before.as_str()).collect();
    for db in &initial {
        set_allow_connections(server, client, db, false).await?;
    }
    let result = async {
        for from in &initial {
            client
                .execute(
                    // Sessions of a role only (autovacuum workers have none; the rename
                    // stops them). Not by backend_type: a role without pg_read_all_stats
                    // sees it NULL for every other role's session.
                    "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()
                       AND usesysid IS NOT NULL",
                    &[from],
                )
                .await
                .map_err(|e| server.error(format!("ending the sessions on {from:?}"), &e))?;
        }
        let what = renames
            .iter()
            .map(|(f, t)| format!("{f} -> {t}"))
            .collect::<Vec<_>>()
            .join(", ");
        let what = format!("renaming {what}");
        server.execute(client, &what, "BEGIN").await?;
        for (i, (from, to)) in renames.iter().enumerate() {
            if i > 0 {
                crate::fault::point("cutover.between-renames");
            }
            let sql = format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(from),
                quote_ident(to)
            );
            server.execute(client, &what, &sql).await?;
        }
        server.execute(client, &what, "COMMIT").await
    }
    .await;
    // Whether the renames happened or not, every database accepts connections again.
    let names: Vec<String> = match &result {
        Ok(()) => moved.iter().map(|(_, after)| after.clone()).collect(),
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

/// Each database a swap renames, by its name before and after: a rename may take a name an
/// earlier one freed, so a database can move more than once.
pub fn moves(renames: &[(&str, &str)]) -> Vec<(String, String)> {
    renames
        .iter()
        .enumerate()
        .filter(|(i, (from, _))| !renames[..*i].iter().any(|(_, to)| to == from))
        .map(|(_, (from, _))| {
            let after = renames.iter().fold((*from).to_owned(), |name, (f, t)| {
                if name == *f { (*t).to_owned() } else { name }
            });
            ((*from).to_owned(), after)
        })
        .collect()
}

/// The renames that undo `renames`.
pub fn undo<'a>(renames: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    renames
        .iter()
        .rev()
        .map(|(from, to)| (*to, *from))
        .collect()
}

/// Lets `database` accept connections again (a swap closes them while it renames).
pub async fn allow_connections(
    server: &Server,
    client: &Client,
    database: &str,
) -> Result<(), DbError> {
    set_allow_connections(server, client, database, true).await
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
