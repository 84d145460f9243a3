//! Staging as the refresh tests, the demo and the benchmark set it up: a least-privileged
//! refresh role (CREATEDB, member of the owner role, may end sessions), the app database's
//! restore role with a password, granted to it (as the README has the operator create it),
//! an app database with data of its own, and the production dump to restore.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use super::fixtures::{dump_sql, seed_prod};
use super::services::{Postgres, prod_postgres};

// Test files import the staging names from here too.
use super::constants::PROD_DB;
pub use super::constants::{OWNER, PROD_USERS, REFRESH_ROLE, RESTORE_PASSWORD, SENTINEL};

/// Creates the refresh and owner roles on the staging server `pg` (once per server and
/// process); returns the maintenance URL for the refresh role.
pub fn refresh_role_url(pg: &Postgres) -> String {
    create_roles(pg);
    refresh_url(pg)
}

/// The maintenance URL for the refresh role on `pg`, once [`create_roles`] made it there.
pub fn refresh_url(pg: &Postgres) -> String {
    format!("postgres://{REFRESH_ROLE}@127.0.0.1:{}/postgres", pg.port)
}

/// Creates the refresh and owner roles and the opt-in marker table on `pg`, once per server
/// and process: tests sharing a server call it concurrently, and the marker table's
/// `CREATE TABLE IF NOT EXISTS` is not safe to race.
pub fn create_roles(pg: &Postgres) {
    static DONE: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    // Held while the roles are made: a test on the same server waits for them.
    let mut done = DONE.lock().unwrap();
    if !done.insert(pg.port) {
        return;
    }
    for sql in [
        format!("CREATE ROLE {OWNER} NOLOGIN"),
        format!("CREATE ROLE {REFRESH_ROLE} LOGIN CREATEDB"),
        format!("GRANT {OWNER} TO {REFRESH_ROLE}"),
        format!("GRANT pg_signal_backend TO {REFRESH_ROLE}"),
        format!("GRANT CREATE ON SCHEMA public TO {REFRESH_ROLE}"),
    ] {
        // A role may be there already: the production fixtures can share the server.
        let _ = pg.psql("postgres", &sql);
    }
    // The marker table is the refresh role's, whichever configuration's init-target runs
    // first on this server (a superuser's would own it and lock the refresh role out).
    pg.query(
        "postgres",
        &format!(
            "SET ROLE {REFRESH_ROLE}; {}",
            staging_refresh::database::markers::CREATE_TABLE
        ),
    );
}

/// Creates `<db>_restore` (LOGIN with [`RESTORE_PASSWORD`], a member of nothing) and grants
/// it to `grantee`.
pub fn create_restore_role(pg: &Postgres, db: &str, grantee: &str) {
    let role = staging_refresh::database::sql::quote_ident(&format!("{db}_restore"));
    // A second grantee finds the role there.
    let _ = pg.psql(
        "postgres",
        &format!("CREATE ROLE {role} LOGIN PASSWORD '{RESTORE_PASSWORD}'"),
    );
    pg.query("postgres", &format!("GRANT {role} TO \"{grantee}\""));
}

/// A staging app database owned by [`OWNER`], holding one [`SENTINEL`] row, and its restore
/// role granted to [`REFRESH_ROLE`].
pub fn seed_staging(pg: &Postgres, db: &str) {
    refresh_role_url(pg);
    create_restore_role(pg, db, REFRESH_ROLE);
    pg.query(
        "postgres",
        &format!("CREATE DATABASE \"{db}\" OWNER {OWNER}"),
    );
    pg.query(
        db,
        &format!(
            "SET ROLE {OWNER}; CREATE TABLE sentinel (note text); \
             INSERT INTO sentinel VALUES ('{SENTINEL}')"
        ),
    );
}

/// The production database [`PROD_DB`] (prod-shaped, [`PROD_USERS`] users) on the production
/// server, dumped as plain SQL once per process.
pub fn prod_dump() -> &'static [u8] {
    static DUMP: OnceLock<Vec<u8>> = OnceLock::new();
    DUMP.get_or_init(|| {
        let prod = prod_postgres();
        seed_prod(prod, PROD_DB, PROD_USERS);
        dump_sql(prod, PROD_DB)
    })
}
