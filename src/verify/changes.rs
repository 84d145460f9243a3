//! What is left to do after the masked restore: production's own triggers on the accounts
//! table and the tables with masked columns are disabled while `extra_sql` runs (they are
//! production code: an audit trigger would copy values elsewhere), and with
//! `password_hash = "bcrypt"` every non-admin account gets a real bcrypt hash of a random
//! secret. The runbook's steps themselves are masking rules applied in the restore stream
//! (`config::masking`).

use std::collections::BTreeSet;

use tokio_postgres::Transaction;

use super::{AnonymizeError, sql_error};
use crate::config::{AnonymizeConfig, PasswordHash};
use crate::database::sql::quote_ident;
use crate::mask::{BCRYPT_COST, Masked};
use crate::table::TableName;

/// Rows per UPDATE when writing real bcrypt hashes.
const HASH_BATCH: usize = 5000;

/// Whether anything changes rows after the masked restore. Without `extra_sql` or real
/// bcrypt hashes the dump's own `REFRESH MATERIALIZED VIEW` already saw the masked rows, so
/// there is nothing to refresh again (at 100k users that was a third of the phase).
pub fn changes_data(cfg: &AnonymizeConfig) -> bool {
    !cfg.extra_sql.is_empty() || cfg.password_hash == PasswordHash::Bcrypt
}

/// Disables user triggers for `extra_sql` ([`finish`] re-enables them) and, in bcrypt mode,
/// writes the real hashes.
pub async fn apply(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    masked: &Masked,
) -> Result<(), AnonymizeError> {
    tx.batch_execute(&triggers(cfg, masked, "DISABLE"))
        .await
        .map_err(sql_error("disabling triggers on the masked tables"))?;
    if cfg.password_hash == PasswordHash::Bcrypt {
        real_hashes(tx, cfg, masked).await?;
    }
    Ok(())
}

/// Re-enables the triggers and refreshes materialized views, so they show what `extra_sql`
/// changed too (not an extension's: its owner refreshes those). Each refresh runs after
/// `settings` (the transaction's own, which code of the dump's that ran before may have
/// changed) and in a subtransaction of its own: rows the dump's code in a view's query writes
/// then carry its xid, which the row-version check after it tells from the anonymization's
/// own.
pub async fn finish(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    masked: &Masked,
    settings: &str,
) -> Result<(), AnonymizeError> {
    tx.batch_execute(&triggers(cfg, masked, "ENABLE"))
        .await
        .map_err(sql_error("re-enabling triggers"))?;
    let views = tx
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'm' AND c.relispopulated
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY c.oid",
            &[],
        )
        .await
        .map_err(sql_error("listing materialized views"))?;
    for view in views {
        let name: String = view.get(0);
        tx.batch_execute(&format!(
            "{settings}; SAVEPOINT refresh; REFRESH MATERIALIZED VIEW {name}; \
             RELEASE SAVEPOINT refresh"
        ))
        .await
        .map_err(sql_error(&format!("refreshing materialized view {name}")))?;
    }
    Ok(())
}

/// `ALTER TABLE ... <action> TRIGGER USER` for the accounts table and every table with
/// masked columns.
fn triggers(cfg: &AnonymizeConfig, masked: &Masked, action: &str) -> String {
    let tables: BTreeSet<&TableName> = masked
        .applied
        .iter()
        .map(|(table, _, _)| table)
        .chain([&cfg.accounts.table])
        .collect();
    tables
        .iter()
        .map(|table| format!("ALTER TABLE {} {action} TRIGGER USER;", table.sql()))
        .collect()
}

/// `password_hash = "bcrypt"`: a real cost-12 hash of a random secret for every non-admin
/// account, computed on every core (slow by nature: about 0.2 s of CPU each). They carry the
/// masked hashes' marker salt, so verification tells them from production's.
async fn real_hashes(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    masked: &Masked,
) -> Result<(), AnonymizeError> {
    let accounts = &cfg.accounts;
    let (table, id) = (accounts.table.sql(), quote_ident(&accounts.id));
    let ids: Vec<String> = tx
        .query(
            &format!("SELECT {id}::text FROM {table} WHERE {id}::text IS DISTINCT FROM $1"),
            &[&masked.admin_id],
        )
        .await
        .map_err(sql_error("listing accounts"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for chunk in ids.chunks(HASH_BATCH) {
        let chunk = chunk.to_vec();
        let salt = masked.password_salt;
        let (chunk, hashes) = tokio::task::spawn_blocking(move || {
            let hashes = hash_random_secrets(chunk.len(), salt);
            (chunk, hashes)
        })
        .await
        .expect("hashing does not panic");
        tx.execute(
            &format!(
                "UPDATE {table} u SET {password} = v.hash
                 FROM unnest($1::text[], $2::text[]) AS v(id, hash) WHERE u.{id}::text = v.id",
                password = quote_ident(&accounts.password),
            ),
            &[&chunk, &hashes],
        )
        .await
        .map_err(sql_error("writing bcrypt hashes"))?;
    }
    Ok(())
}

fn hash_random_secrets(n: usize, salt: [u8; 16]) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n)
            .step_by(per_thread)
            .map(|start| {
                let count = per_thread.min(n - start);
                scope.spawn(move || {
                    (0..count)
                        .map(|_| {
                            let mut secret = [0u8; 24];
                            getrandom::fill(&mut secret).expect("the OS random source works");
                            bcrypt::hash_with_salt(hex::encode(secret), BCRYPT_COST, salt)
                                .expect("a 48-byte secret hashes")
                                .format_for_version(bcrypt::Version::TwoB)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("hashing does not panic"))
            .collect()
    })
}
