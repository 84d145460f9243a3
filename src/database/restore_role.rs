//! The restore role, `<database.name>_restore`: the dump and the anonymization run as this
//! role, which is a member of nothing, may not create databases or roles, and owns nothing
//! but the scratch database while it is restored. Whatever code the dump makes the server
//! run has its rights: the scratch database's, nothing else. Once the anonymization
//! committed, everything it owns is handed to `database.owner`.
//!
//! The restore's sessions always log in as the restore role: a session that reached it with
//! `SET ROLE` could go back to the login role's rights (`set_config('role', 'none', false)`
//! in a function of the dump's), and one logged in as it has nowhere to go. It logs in with
//! the operator's password (`database.restore_password_file`, [`Reach::Configured`]) or,
//! when the refresh role may set passwords (a superuser, or CREATEROLE), with a random one
//! set for the run only ([`Reach::ForRun`], taken back by [`release`]).

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::config::{ExposeSecret, Secret};

use super::sql::ServerMessage;
use super::sql::quote_ident;
use super::{DbError, Server};

/// The restore role for staging database `database`.
pub fn name(database: &str) -> String {
    format!("{database}_restore")
}

/// Why the restore could not log in as `role`, if it could not: no password is `configured`
/// and the connected role may not set one. The text gives the two ways to fix it.
pub async fn cannot_log_in(
    server: &Server,
    client: &Client,
    role: &str,
    configured: bool,
) -> Result<Option<String>, DbError> {
    if configured || may_set_password(server, client).await? {
        return Ok(None);
    }
    let refresh_role = server.current_role(client).await?;
    Ok(Some(no_login(role, &refresh_role)))
}

fn no_login(role: &str, refresh_role: &str) -> String {
    format!(
        "the restore must log in as {role} (a session that switched to it with SET ROLE can \
         switch back to {refresh}'s rights), and {refresh} may not set its password, nor is \
         database.restore_password_file set; either create the role with a password, as a \
         superuser: {create} (or, if it exists: ALTER ROLE {role} LOGIN PASSWORD '...';) and \
         set database.restore_password_file to a file holding that password; or let \
         {refresh} set one for each run, as a superuser: ALTER ROLE {refresh} CREATEROLE;",
        create = create_sql(role, refresh_role),
        role = quote_ident(role),
        refresh = quote_ident(refresh_role),
    )
}

/// The SQL an operator runs (as a superuser) to create the restore role with a password
/// (`database.restore_password_file`).
pub fn create_sql(role: &str, refresh_role: &str) -> String {
    format!(
        "CREATE ROLE {role} LOGIN PASSWORD '...'; GRANT {role} TO {refresh};",
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

/// Checks the restore role: no attribute but LOGIN, a member of nothing, owning and holding
/// nothing, and granted to the connected role (which creates the scratch database for it and
/// takes over what it owns).
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
            "the restore role {role:?} must have no attribute but LOGIN, be a member of \
             nothing, own nothing outside a restore and be granted to the refresh role, but it \
             {}",
            wrong.join("; ")
        ))
    })
}

/// How the restore's sessions log in as the restore role.
pub enum Reach {
    /// With the password `database.restore_password_file` holds; the role keeps its LOGIN.
    Configured(Secret),
    /// With a random password set for this run; [`release`] takes it back.
    ForRun(Secret),
}

/// Makes sure the restore role exists and is fit, creating it when the connected role may;
/// without a `configured` password, lets it log in for this run with a random one. The run
/// has refused already when neither is possible ([`cannot_log_in`], a guard).
pub async fn ensure(
    server: &Server,
    client: &Client,
    role: &str,
    configured: Option<&Secret>,
) -> Result<Reach, DbError> {
    let error = |message: String| DbError {
        what: format!("preparing the restore role {role:?}"),
        server: server.redacted().to_owned(),
        message: ServerMessage::plain(message),
    };
    if let Fitness::Missing = fitness(server, client, role).await? {
        // A role whose password the operator configured is the operator's to create.
        if configured.is_some() {
            let refresh_role = server.current_role(client).await?;
            return Err(error(format!(
                "it does not exist; as a superuser run: {}",
                create_sql(role, &refresh_role)
            )));
        }
        let sql = format!(
            "CREATE ROLE {role} NOLOGIN; GRANT {role} TO CURRENT_USER",
            role = quote_ident(role)
        );
        if let Err(e) = client.batch_execute(&sql).await {
            return Err(match e.code() {
                Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                    error("it does not exist and may not be created".into())
                }
                _ => server.error(format!("creating the restore role {role:?}"), &e),
            });
        }
    }
    match fitness(server, client, role).await? {
        Fitness::Fit => {}
        Fitness::Missing => return Err(error("it vanished while being created".into())),
        Fitness::Unfit(why) => return Err(error(why)),
    }
    if let Some(password) = configured {
        return Ok(Reach::Configured(password.clone()));
    }
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).expect("the OS random source works");
    let password = Secret::from(hex::encode(random));
    server
        .execute(
            client,
            &format!("letting the restore role {role:?} log in for this run"),
            &format!(
                "ALTER ROLE {} LOGIN PASSWORD '{}'",
                quote_ident(role),
                password.expose_secret()
            ),
        )
        .await?;
    Ok(Reach::ForRun(password))
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

/// Takes back the login [`ensure`] gave `role` for a run ([`Reach::ForRun`]): it may not log
/// in again. Returns false when there was nothing to take back (no such role, or no LOGIN).
pub async fn release(server: &Server, client: &Client, role: &str) -> Result<bool, DbError> {
    let what = format!("locking the restore role {role:?} again");
    let can_login = client
        .query_opt(
            "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(|e| server.error(&what, &e))?
        .is_some_and(|r| r.get(0));
    if !can_login {
        return Ok(false);
    }
    server
        .execute(
            client,
            &what,
            &format!("ALTER ROLE {} NOLOGIN PASSWORD NULL", quote_ident(role)),
        )
        .await?;
    Ok(true)
}

/// A session on `database`, logged in as `role`: the one way a restore session is opened.
pub async fn connect(
    server: &Server,
    database: &str,
    role: &str,
    reach: &Reach,
) -> Result<Client, DbError> {
    let (Reach::Configured(password) | Reach::ForRun(password)) = reach;
    server.connect_as(database, role, password).await
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
