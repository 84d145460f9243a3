//! The restore role, `<database.name>_restore`: the dump and the anonymization run as this
//! role, which is a member of nothing, may not create databases or roles, and owns nothing
//! but the scratch database while it is restored. Whatever code the dump makes the server
//! run has its rights: the scratch database's, nothing else. Once the anonymization
//! committed, everything it owns is handed to `database.owner`.
//!
//! Code can leave a role reached by `SET ROLE` (`set_config('role', 'none', false)` in a
//! function returns to the session's login role), so when the refresh role may set the
//! restore role's password (a superuser, or CREATEROLE) the restore logs in as the restore
//! role itself, with a random password and LOGIN for the run only ([`Reach::Login`]).
//! Otherwise it is reached by `SET ROLE`, and the session is checked to still be it after
//! the dump ([`Reach::SetRole`]).

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::config::Secret;

use super::sql::ServerMessage;
use super::sql::quote_ident;
use super::{DbError, Server};

/// The restore role for staging database `database`.
pub fn name(database: &str) -> String {
    format!("{database}_restore")
}

/// The SQL an operator runs (as a superuser) when the refresh role may not create the
/// restore role itself.
pub fn create_sql(role: &str, refresh_role: &str) -> String {
    format!(
        "CREATE ROLE {role} NOLOGIN; GRANT {role} TO {refresh};",
        role = quote_ident(role),
        refresh = quote_ident(refresh_role)
    )
}

/// Whether the restore role exists and is fit for a restore.
pub enum Fitness {
    Fit,
    Missing,
    Unfit(String),
}

/// Checks the restore role: no attribute but LOGIN (which a run gives it for its length), a
/// member of nothing, owning and holding nothing, and reachable with `SET ROLE` by the
/// connected role.
pub async fn fitness(server: &Server, client: &Client, role: &str) -> Result<Fitness, DbError> {
    let row = client
        .query_opt(
            "SELECT concat_ws(', ',
                 CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
                 CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                 CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
                 CASE WHEN r.rolreplication THEN 'REPLICATION' END,
                 CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END),
                 (SELECT string_agg(pg_catalog.quote_ident(g.rolname), ', ')
                  FROM pg_catalog.pg_auth_members m
                  JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid),
                 (SELECT count(*) FROM pg_catalog.pg_shdepend d
                  WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                    AND d.refobjid = r.oid AND d.deptype IN ('o', 'a')),
                 pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER'),
                 current_user::text
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[&role],
        )
        .await
        .map_err(|e| server.error(format!("looking up the restore role {role:?}"), &e))?;
    let Some(row) = row else {
        return Ok(Fitness::Missing);
    };
    let (attributes, member_of, holds, reachable, refresh_role): (
        String,
        Option<String>,
        i64,
        bool,
        String,
    ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let mut wrong = Vec::new();
    if !attributes.is_empty() {
        wrong.push(format!("has {attributes}"));
    }
    if let Some(groups) = member_of {
        wrong.push(format!("is a member of {groups}"));
    }
    if holds > 0 {
        wrong.push(format!("owns or holds privileges on {holds} objects"));
    }
    if !reachable {
        wrong.push(format!(
            "is not granted to {refresh_role} (GRANT {} TO {})",
            quote_ident(role),
            quote_ident(&refresh_role)
        ));
    }
    Ok(if wrong.is_empty() {
        Fitness::Fit
    } else {
        Fitness::Unfit(format!(
            "the restore role {role:?} must have no attributes, be a member of nothing, own \
             nothing outside a restore and be granted to the refresh role, but it {}",
            wrong.join("; ")
        ))
    })
}

/// How the restore's sessions become the restore role.
pub enum Reach {
    /// Log in as it with this password (set for this run).
    Login(Secret),
    /// `SET ROLE` to it from a session of the refresh role.
    SetRole,
}

/// Makes sure the restore role exists and is fit, creating it when the connected role may,
/// and lets it log in for this run when the connected role may set its password.
pub async fn ensure(server: &Server, client: &Client, role: &str) -> Result<Reach, DbError> {
    let error = |message: String| DbError {
        what: format!("preparing the restore role {role:?}"),
        server: server.redacted().to_owned(),
        message: ServerMessage::plain(message),
    };
    if let Fitness::Missing = fitness(server, client, role).await? {
        let sql = format!(
            "CREATE ROLE {role} NOLOGIN; GRANT {role} TO CURRENT_USER",
            role = quote_ident(role)
        );
        if let Err(e) = client.batch_execute(&sql).await {
            let refresh_role = server.current_role(client).await?;
            return Err(match e.code() {
                Some(&SqlState::INSUFFICIENT_PRIVILEGE) => error(format!(
                    "it does not exist and {refresh_role:?} may not create it; as a superuser \
                     run: {}",
                    create_sql(role, &refresh_role)
                )),
                _ => server.error(format!("creating the restore role {role:?}"), &e),
            });
        }
    }
    match fitness(server, client, role).await? {
        Fitness::Fit => {}
        Fitness::Missing => return Err(error("it vanished while being created".into())),
        Fitness::Unfit(why) => return Err(error(why)),
    }
    if !may_set_password(server, client).await? {
        return Ok(Reach::SetRole);
    }
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).expect("the OS random source works");
    let password = Secret::new(hex::encode(random));
    server
        .execute(
            client,
            &format!("letting the restore role {role:?} log in for this run"),
            &format!(
                "ALTER ROLE {} LOGIN PASSWORD '{}'",
                quote_ident(role),
                password.expose()
            ),
        )
        .await?;
    Ok(Reach::Login(password))
}

/// Whether the connected role may create roles and change their passwords.
pub async fn may_set_password(server: &Server, client: &Client) -> Result<bool, DbError> {
    client
        .query_one(
            "SELECT rolsuper OR rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| server.error("reading the role's attributes", &e))
}

/// Takes back what [`ensure`] gave for the run: the restore role may not log in again.
pub async fn release(server: &Server, client: &Client, role: &str) -> Result<(), DbError> {
    server
        .execute(
            client,
            &format!("locking the restore role {role:?} again"),
            &format!("ALTER ROLE {} NOLOGIN PASSWORD NULL", quote_ident(role)),
        )
        .await
}

/// A session on `database` as `role`.
pub async fn connect(
    server: &Server,
    database: &str,
    role: &str,
    reach: &Reach,
) -> Result<Client, DbError> {
    match reach {
        Reach::Login(password) => server.connect_as(database, role, password).await,
        Reach::SetRole => {
            let client = server.connect(Some(database)).await?;
            server
                .execute(
                    &client,
                    &format!("switching to the restore role {role:?}"),
                    &format!("SET ROLE {}", quote_ident(role)),
                )
                .await?;
            Ok(client)
        }
    }
}

/// In the scratch database `client` is connected to (as the refresh role itself): hands
/// everything the restore role owns to `owner` (the database included) and drops what it
/// still holds (privileges granted to it, default privileges).
pub async fn hand_over(
    server: &Server,
    client: &Client,
    role: &str,
    owner: &str,
) -> Result<(), DbError> {
    server
        .execute(
            client,
            &format!("handing the scratch database from {role:?} to {owner:?}"),
            &format!(
                "REASSIGN OWNED BY {role} TO {owner}; DROP OWNED BY {role}",
                role = quote_ident(role),
                owner = quote_ident(owner)
            ),
        )
        .await
}

/// The `SECURITY DEFINER` functions in the database `client` is connected to, outside the
/// system schemas and extensions: they run with their owner's rights for whoever calls them.
pub async fn security_definers(server: &Server, client: &Client) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                   WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                     AND d.objid = p.oid AND d.deptype = 'e')
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| server.error("listing SECURITY DEFINER functions", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
