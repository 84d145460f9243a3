//! What the dump left that could change what the anonymization writes or concludes, set
//! aside for its transaction: row-level security (a policy keyed on `current_user` would
//! hide rows from the masking and the verification) and rules (a `DO INSTEAD NOTHING` would
//! swallow an UPDATE). Both are disabled on every table at the start and put back as they
//! were before the commit, so staging keeps production's policies and rules. Extensions'
//! own tables are the template's, left as they are.

use tokio_postgres::Transaction;

use super::{AnonymizeError, sql_error};

/// The statements that put back what [`set_aside`] disabled.
pub struct SetAside {
    restore: Vec<String>,
}

/// Disables row-level security and rules on every table that has them.
pub async fn set_aside(tx: &Transaction<'_>) -> Result<SetAside, AnonymizeError> {
    let rows = tx
        .query(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),
                 c.relrowsecurity, c.relforcerowsecurity
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND (c.relrowsecurity OR c.relforcerowsecurity)
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                     AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(sql_error("listing tables with row-level security"))?;
    let mut disable = Vec::new();
    let mut restore = Vec::new();
    for row in rows {
        let (table, enabled, forced): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        disable.push(format!(
            "ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY"
        ));
        let enable = if enabled { "ENABLE" } else { "DISABLE" };
        let force = if forced { "FORCE" } else { "NO FORCE" };
        restore.push(format!(
            "ALTER TABLE {table} {enable} ROW LEVEL SECURITY, {force} ROW LEVEL SECURITY"
        ));
    }
    let rules = tx
        .query(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),
                 pg_catalog.quote_ident(r.rulename), r.ev_enabled::text
             FROM pg_catalog.pg_rewrite r
             JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND r.ev_enabled <> 'D'
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                     AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(sql_error("listing rules"))?;
    for row in rules {
        let (table, rule, mode): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        disable.push(format!("ALTER TABLE {table} DISABLE RULE {rule}"));
        let enable = match mode.as_str() {
            "A" => "ENABLE ALWAYS",
            "R" => "ENABLE REPLICA",
            _ => "ENABLE",
        };
        restore.push(format!("ALTER TABLE {table} {enable} RULE {rule}"));
    }
    if !disable.is_empty() {
        tx.batch_execute(&disable.join(";\n"))
            .await
            .map_err(sql_error("disabling row-level security and rules"))?;
    }
    Ok(SetAside { restore })
}

impl SetAside {
    /// Puts row-level security and rules back as the dump had them.
    pub async fn put_back(self, tx: &Transaction<'_>) -> Result<(), AnonymizeError> {
        if self.restore.is_empty() {
            return Ok(());
        }
        tx.batch_execute(&self.restore.join(";\n"))
            .await
            .map_err(sql_error("re-enabling row-level security and rules"))
    }
}
