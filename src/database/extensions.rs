//! What the restore role can and cannot create on this server, read before the dump runs: the
//! extensions the server has and which of them it may create itself (trusted, or not
//! superuser-only), and what the scratch database holds before the restore, copied from
//! `database.template` (the extensions a superuser created there once, their schemas and
//! tables, the languages only a superuser may write functions in). The template's schemas
//! are handed to the restore role ([`adopt_schemas`]).

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;

use super::sql::quote_ident;
use super::{DbError, Server};
use crate::table::TableName;

/// The database the scratch database is created from, configured or not.
#[derive(Debug, Clone)]
pub struct Template {
    /// `database.template`, when set.
    pub configured: Option<String>,
    /// The name the fix suggests when none is set: `<database.name>_template`.
    pub suggested: String,
}

impl Template {
    pub fn new(configured: Option<&str>, database: &str) -> Template {
        Template {
            configured: configured.map(str::to_owned),
            suggested: format!("{database}_template"),
        }
    }

    /// The database to create the scratch database from.
    pub fn source(&self) -> &str {
        self.configured.as_deref().unwrap_or("template0")
    }
}

/// Gives `restore_role` the schemas the scratch database (`client`, connected as the refresh
/// role, a member of the restore role that owns the database) has from its template owned
/// by `pg_database_owner` (as the README's one-time step creates an extension's schema),
/// `public` aside: the restore role owns them as it owns a schema the dump creates, so it
/// keeps its way into them once the anonymization hands the database to `database.owner`,
/// and they are handed over with the rest.
pub async fn adopt_schemas(
    server: &Server,
    client: &Client,
    restore_role: &str,
) -> Result<(), DbError> {
    let what = "handing the template's schemas to the restore role";
    let schemas: Vec<String> = client
        .query(
            "SELECT nspname::text FROM pg_catalog.pg_namespace
             WHERE nspowner = 'pg_database_owner'::pg_catalog.regrole AND nspname <> 'public'",
            &[],
        )
        .await
        .map_err(|e| server.error(what, &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sql: String = schemas
        .iter()
        .map(|schema| {
            format!(
                "ALTER SCHEMA {} OWNER TO {};",
                quote_ident(schema),
                quote_ident(restore_role)
            )
        })
        .collect();
    server.execute(client, what, &sql).await
}

/// The restore role's view of extensions on this server.
#[derive(Debug, Clone)]
pub struct Extensions {
    pub template: Template,
    /// Every extension the server can install, and whether the restore role may create it.
    pub available: HashMap<String, bool>,
    /// The extensions the scratch database has before the restore, and their schemas.
    pub installed: HashMap<String, String>,
    /// The extensions' own tables (and views, sequences) there, and whether the restore
    /// role may insert into each (a superuser granted it in the template).
    pub tables: HashMap<TableName, bool>,
    /// The schemas the scratch database has before the restore (not the system's).
    pub schemas: HashSet<String>,
    /// The languages only a superuser may create functions in.
    pub untrusted_languages: HashSet<String>,
}

impl Extensions {
    /// Reads them on `client`, connected to the scratch database or the template as the
    /// refresh role; `None` for a database like `template0` (its contents are known: the
    /// `public` schema, nothing else) read on the maintenance database, `restore_role` the
    /// role the dump runs as.
    pub async fn read(
        server: &Server,
        client: &Client,
        template: Template,
        contents: bool,
        restore_role: &str,
    ) -> Result<Extensions, DbError> {
        let what = "reading the extensions the server has";
        let error = |e| server.error(what, &e);
        let rows = |sql: &'static str| async move {
            client
                .query(sql, &[])
                .await
                .map_err(|e| server.error(what, &e))
        };
        let available = rows(
            "SELECT e.name::text, NOT v.superuser OR v.trusted
             FROM pg_catalog.pg_available_extensions e
             JOIN pg_catalog.pg_available_extension_versions v
               ON v.name = e.name AND v.version = e.default_version",
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let untrusted_languages =
            rows("SELECT lanname::text FROM pg_catalog.pg_language WHERE NOT lanpltrusted")
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
        let mut extensions = Extensions {
            template,
            available,
            installed: HashMap::new(),
            tables: HashMap::new(),
            schemas: HashSet::from(["public".to_owned()]),
            untrusted_languages,
        };
        if !contents {
            return Ok(extensions);
        }
        extensions.installed = rows(
            "SELECT e.extname::text, n.nspname::text FROM pg_catalog.pg_extension e
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace",
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        extensions.schemas = rows(
            "SELECT nspname::text FROM pg_catalog.pg_namespace
             WHERE nspname NOT IN ('pg_catalog', 'information_schema')
               AND nspname !~ '^pg_(toast|temp)'",
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        // The restore role owns the scratch database, so what is granted to
        // pg_database_owner there is granted to it.
        extensions.tables = client
            .query(
                "SELECT n.nspname::text, c.relname::text,
                     pg_catalog.has_table_privilege('pg_database_owner', c.oid, 'INSERT')
                     OR (EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1)
                         AND pg_catalog.has_table_privilege($1, c.oid, 'INSERT'))
                 FROM pg_catalog.pg_depend d
                 JOIN pg_catalog.pg_class c ON c.oid = d.objid
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND d.deptype = 'e'",
                &[&restore_role],
            )
            .await
            .map_err(error)?
            .iter()
            .map(|r| (TableName::new(r.get(0), r.get(1)), r.get(2)))
            .collect();
        Ok(extensions)
    }

    /// What a scratch database created from `template` would let the restore role do, read
    /// on the template itself, or on `maintenance` for template0 (which allows no
    /// connections): for `plan` and `check`, which create nothing.
    pub async fn of_template(
        server: &Server,
        maintenance: &Client,
        template: Template,
        restore_role: &str,
    ) -> Result<Extensions, DbError> {
        match template.configured.clone() {
            Some(name) => {
                let client = server.connect(Some(&name)).await?;
                Extensions::read(server, &client, template, true, restore_role).await
            }
            None => Extensions::read(server, maintenance, template, false, restore_role).await,
        }
    }

    /// The one-time step a superuser takes so the restore role finds `extension` made, in
    /// `schema` (the dump's).
    pub fn fix(&self, extension: &str, schema: &str) -> String {
        let (ext, schema_q) = (quote_ident(extension), quote_ident(schema));
        let own_schema = if schema == "public" {
            String::new()
        } else {
            format!("CREATE SCHEMA IF NOT EXISTS {schema_q} AUTHORIZATION pg_database_owner; ")
        };
        let create = format!("{own_schema}CREATE EXTENSION {ext} SCHEMA {schema_q};");
        match &self.template.configured {
            Some(template) => format!(
                "as a superuser, in database.template {template:?} (`\\c {}`): {create}",
                quote_ident(template)
            ),
            None => {
                let template = quote_ident(&self.template.suggested);
                format!(
                    "as a superuser, once: CREATE DATABASE {template} IS_TEMPLATE true; \
                     `\\c {template}`; {create} then set database.template = {:?}",
                    self.template.suggested
                )
            }
        }
    }
}
