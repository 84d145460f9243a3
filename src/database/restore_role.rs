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
//! set for the run only ([`Reach::ForRun`], taken back at its end).
//!
//! The dump's code runs as this role, and a role may change its own password and settings:
//! `ALTER ROLE CURRENT_USER PASSWORD ...` (a login of the dump author's own),
//! `... SET default_transaction_read_only = on` (every later run fails),
//! `... SET standard_conforming_strings = off` (the next run's server reads literals otherwise
//! than the filter does). So every session of it starts from known settings ([`connect`]),
//! and [`put_back`] undoes all of it before the dump's first statement and at the end of
//! every run (and in the recovery after a crash), then proves the result from outside.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::config::{ExposeSecret, Secret};
use crate::error::{Guard, Refused};

use super::sql::ServerMessage;
use super::sql::quote_ident;
use super::{DbError, Server};

/// The restore role for staging database `database`.
pub fn name(database: &str) -> String {
    format!("{database}_restore")
}

/// Why the restore could not log in as `role`, if it could not: no password is `configured`
/// and the connected role may not set one. The refusal gives the two ways to fix it.
pub async fn cannot_log_in(
    server: &Server,
    client: &Client,
    role: &str,
    configured: bool,
) -> Result<Option<Refused>, DbError> {
    if configured || may_set_password(server, client).await? {
        return Ok(None);
    }
    let refresh_role = server.current_role(client).await?;
    Ok(Some(no_login(role, &refresh_role)))
}

fn no_login(role: &str, refresh_role: &str) -> Refused {
    let create = create_sql(role, refresh_role);
    let may_create_roles = format!("ALTER ROLE {} CREATEROLE;", quote_ident(refresh_role));
    let message = format!(
        "the restore must log in as {role} (a session that switched to it with SET ROLE can \
         switch back to {refresh}'s rights), and {refresh} may not set its password, nor is \
         database.restore_password_file set; either create the role with a password, as a \
         superuser: {create} (or, if it exists: ALTER ROLE {role} LOGIN PASSWORD '...';) and \
         set database.restore_password_file to a file holding that password; or let \
         {refresh} set one for each run, as a superuser: {may_create_roles}",
        role = quote_ident(role),
        refresh = quote_ident(refresh_role),
    );
    Refused::new(
        Guard::RestoreRoleLogin {
            sql: vec![create, may_create_roles],
        },
        message,
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
#[derive(Clone)]
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
                "ALTER ROLE {} LOGIN PASSWORD {}",
                quote_ident(role),
                verifier(&password)
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

/// A session on `database`, logged in as `role`: the one way a restore session is opened.
/// It starts from known settings, whatever the role's or the database's defaults say (code
/// of the dump's can set those, for the sessions opened after it ran): each setting they
/// gave is put back to PostgreSQL's own default, and the lexer's reading of literals is
/// the server's.
pub async fn connect(
    server: &Server,
    database: &str,
    role: &str,
    reach: &Reach,
) -> Result<Client, DbError> {
    let (Reach::Configured(password) | Reach::ForRun(password)) = reach;
    let client = server.connect_as(Some(database), role, password).await?;
    client
        .batch_execute(
            "SELECT pg_catalog.set_config(name, boot_val, false) FROM pg_catalog.pg_settings
             WHERE source IN ('database', 'user', 'database user');
             SET standard_conforming_strings = on",
        )
        .await
        .map_err(|e| {
            server.error(
                "starting the restore role's session from known settings",
                &e,
            )
        })?;
    Ok(client)
}

/// The restore role's login, as [`put_back`] leaves it.
pub enum Login<'a> {
    /// It logs in with the operator's password (`database.restore_password_file`).
    Configured(&'a Secret),
    /// It logs in with the password just set for this run ([`ensure`]).
    ForRun(&'a Secret),
    /// It may not log in: the run's login is taken back. `had` is the run's password, when
    /// known, to tell whether something changed it.
    Taken { had: Option<&'a Secret> },
}

impl Reach {
    /// The login a run starts with.
    pub fn during_run(&self) -> Login<'_> {
        match self {
            Reach::Configured(password) => Login::Configured(password),
            Reach::ForRun(password) => Login::ForRun(password),
        }
    }

    /// The login a run leaves.
    pub fn after_run(&self) -> Login<'_> {
        match self {
            Reach::Configured(password) => Login::Configured(password),
            Reach::ForRun(password) => Login::Taken {
                had: Some(password),
            },
        }
    }
}

/// Puts the restore role back as a run must find and leave it, over a session of its own:
/// the password (the operator's, or the run's login taken back), none of its sessions
/// left, no setting of its own (in any database); then proves it ([`prove`], `scratch`
/// being the scratch database, if there is one). Returns what it found changed, for the
/// report; an error says what could not be put back and how to do it by hand.
pub async fn put_back(
    server: &Server,
    role: &str,
    login: Login<'_>,
    scratch: Option<&str>,
) -> Result<Vec<String>, DbError> {
    let what = format!("putting the restore role {role:?} back");
    let error = |e: &tokio_postgres::Error| server.error(&what, e);
    // A session of its own: the role is reached with SET ROLE inside a transaction, so the
    // session never outlives it as the role, and no code of the dump's runs in it.
    let client = server.connect(None).await?;
    let exists = client
        .query_opt(
            "SELECT FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(|e| error(&e))?
        .is_some();
    if !exists {
        // A run that died before it created the role left nothing on it.
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let had = match login {
        Login::Configured(password)
        | Login::Taken {
            had: Some(password),
        } => Some(password),
        Login::ForRun(_) | Login::Taken { had: None } => None,
    };
    if let Some(password) = had
        && !logs_in(server, role, password).await?
    {
        found.push("its password had been changed".to_owned());
    }
    let settings = client
        .query(
            "SELECT coalesce(pg_catalog.quote_ident(d.datname), ''), s.setconfig::text[]
             FROM pg_catalog.pg_db_role_setting s
             JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
             LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
             WHERE r.rolname = $1 ORDER BY 1",
            &[&role],
        )
        .await
        .map_err(|e| error(&e))?;
    let mut as_itself = Vec::new();
    if let Login::Configured(password) = login {
        as_itself.push(format!(
            "ALTER ROLE CURRENT_USER PASSWORD {}",
            verifier(password)
        ));
    }
    for row in &settings {
        let (database, config): (String, Vec<String>) = (row.get(0), row.get(1));
        let names: Vec<&str> = config
            .iter()
            .map(|c| c.split_once('=').map_or(c.as_str(), |(name, _)| name))
            .collect();
        let (scope, reset) = match database.as_str() {
            "" => ("in every database".to_owned(), String::new()),
            db => (format!("in database {db}"), format!(" IN DATABASE {db}")),
        };
        found.push(format!("it had settings {scope}: {}", names.join(", ")));
        as_itself.push(format!("ALTER ROLE CURRENT_USER{reset} RESET ALL"));
    }
    if !as_itself.is_empty() {
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL ROLE {}; {}; COMMIT",
                quote_ident(role),
                as_itself.join("; ")
            ))
            .await
            .map_err(|e| error(&e))?;
    }
    if let Login::Taken { .. } = login {
        client
            .batch_execute(&format!(
                "ALTER ROLE {} NOLOGIN PASSWORD NULL",
                quote_ident(role)
            ))
            .await
            .map_err(|e| error(&e))?;
    }
    // Its sessions end last: one that logged in before the password was put back could
    // change it again.
    client
        .execute(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
             WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()",
            &[&role],
        )
        .await
        .map_err(|e| error(&e))?;
    let left = prove(server, &client, role, &login, scratch).await?;
    if !left.is_empty() {
        return Err(DbError {
            what,
            server: server.redacted().to_owned(),
            message: ServerMessage::plain(left.join("; ")),
        });
    }
    Ok(found)
}

/// What is wrong with the restore role, seen from outside (`client` is the refresh role's
/// session), each with the SQL that fixes it: its login is not `login`'s, it has settings,
/// it is a member of a role, it owns or holds privileges on objects outside `scratch`.
/// Empty when it is as a run must leave it.
pub async fn prove(
    server: &Server,
    client: &Client,
    role: &str,
    login: &Login<'_>,
    scratch: Option<&str>,
) -> Result<Vec<String>, DbError> {
    let row = client
        .query_one(
            "SELECT r.rolcanlogin,
                 (SELECT string_agg(coalesce(pg_catalog.quote_ident(d.datname), ''), ',')
                  FROM pg_catalog.pg_db_role_setting s
                  LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
                  WHERE s.setrole = r.oid),
                 (SELECT string_agg(pg_catalog.quote_ident(g.rolname), ', ')
                  FROM pg_catalog.pg_auth_members m
                  JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid),
                 (SELECT count(*) FROM pg_catalog.pg_shdepend d,
                      (SELECT (SELECT oid FROM pg_catalog.pg_database WHERE datname = $2) AS oid) x
                  WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                    AND d.refobjid = r.oid
                    AND d.dbid IS DISTINCT FROM x.oid
                    AND NOT (d.classid = 'pg_catalog.pg_database'::pg_catalog.regclass
                             AND d.objid IS NOT DISTINCT FROM x.oid))
             FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[&role, &scratch],
        )
        .await
        .map_err(|e| server.error(format!("checking the restore role {role:?}"), &e))?;
    let (can_login, settings, member_of, holds): (bool, Option<String>, Option<String>, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let quoted = quote_ident(role);
    let mut left = Vec::new();
    match login {
        Login::Configured(password) | Login::ForRun(password) => {
            if !logs_in(server, role, password).await? {
                left.push(format!(
                    "its password does not log in: whoever changed it may log in as it; rotate \
                     it, as a superuser: ALTER ROLE {quoted} PASSWORD '<new password>'; and \
                     write it to database.restore_password_file"
                ));
            }
        }
        Login::Taken { .. } if can_login => left.push(format!(
            "it may still log in: as a superuser run: ALTER ROLE {quoted} NOLOGIN PASSWORD NULL;"
        )),
        Login::Taken { .. } => {}
    }
    if let Some(databases) = settings {
        let sql: Vec<String> = databases
            .split(',')
            .map(|db| match db {
                "" => format!("ALTER ROLE {quoted} RESET ALL;"),
                db => format!("ALTER ROLE {quoted} IN DATABASE {db} RESET ALL;"),
            })
            .collect();
        left.push(format!(
            "it has settings of its own: as a superuser run: {}",
            sql.join(" ")
        ));
    }
    if let Some(groups) = member_of {
        left.push(format!(
            "it is a member of {groups}: as a superuser run: REVOKE {groups} FROM {quoted};"
        ));
    }
    if holds > 0 {
        left.push(format!(
            "it owns or holds privileges on {holds} objects outside the scratch database: as a \
             superuser, in each database: REASSIGN OWNED BY {quoted} TO <database.owner>; \
             DROP OWNED BY {quoted};"
        ));
    }
    Ok(left)
}

/// Whether `role` logs in with `password` (to the maintenance database, as the restore's
/// sessions reach the server); false when the server says the password (or the login) is
/// refused.
async fn logs_in(server: &Server, role: &str, password: &Secret) -> Result<bool, DbError> {
    match server.connect_as(None, role, password).await {
        Ok(_) => Ok(true),
        Err(e) if e.message.code().is_some_and(|c| c.starts_with("28")) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The SCRAM-SHA-256 verifier of `password` as a SQL literal: the server stores it as it is,
/// and the password itself appears in no statement (a server logging statements logs it).
fn verifier(password: &Secret) -> String {
    format!(
        "'{}'",
        postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes())
    )
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
