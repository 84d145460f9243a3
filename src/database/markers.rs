//! The opt-in marker: a row in the maintenance database naming a database this program may
//! replace. `init-target` writes it; `run` refuses without it. It lives outside the database
//! it protects, which every refresh replaces.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{DbError, Server};

/// The marker table; whoever creates it owns it (README "Guards and the database role").
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS public.staging_refresh_target (
    database name PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now(),
    marked_by text NOT NULL DEFAULT session_user
)";

/// Marks `database` as a refresh target.
pub async fn mark(server: &Server, client: &Client, database: &str) -> Result<(), DbError> {
    // Two concurrent CREATE TABLE IF NOT EXISTS can collide, on the catalog's unique index
    // or as "type ... already exists"; the loser finds the table.
    let collided = [
        SqlState::UNIQUE_VIOLATION,
        SqlState::DUPLICATE_OBJECT,
        SqlState::DUPLICATE_TABLE,
    ];
    if let Err(e) = client.batch_execute(CREATE_TABLE).await
        && !e.code().is_some_and(|code| collided.contains(code))
    {
        return Err(server.error("creating public.staging_refresh_target", &e));
    }
    client
        .execute(
            "INSERT INTO public.staging_refresh_target (database) VALUES ($1)
             ON CONFLICT (database) DO UPDATE SET marked_at = now(), marked_by = session_user",
            &[&database],
        )
        .await
        .map(drop)
        .map_err(|e| server.error("writing the opt-in marker", &e))
}

/// When `database` was marked, if it was.
pub async fn marked_at(
    server: &Server,
    client: &Client,
    database: &str,
) -> Result<Option<DateTime<Utc>>, DbError> {
    match client
        .query_opt(
            "SELECT marked_at FROM public.staging_refresh_target WHERE database = $1",
            &[&database],
        )
        .await
    {
        Ok(row) => Ok(row.map(|r| r.get(0))),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(server.error("reading the opt-in marker", &e)),
    }
}
