//! The anonymization rules. The admin is found by the production admin email and then
//! addressed by id (the runbook's second UPDATE matched by email after the admin's had
//! changed, anonymizing the admin too). Every other user gets a reserved-domain address, a
//! placeholder name, no superuser flag, and a password hash no password matches.
//! Production's own triggers on these tables are disabled for the transaction: they are
//! production code (an audit trigger would copy the old PII elsewhere).

use std::collections::BTreeMap;

use tokio_postgres::Transaction;

use super::{AnonymizeError, sql_error};
use crate::config::{AnonymizeConfig, PasswordHash};
use crate::database::sql::ServerMessage;

pub const USERS: &str = "public.\"user\"";
pub const INTEGRATIONS: &str = "public.external_system_integration";
/// The columns these rules set, by table: the PII scan leaves them out.
pub const RULE_COLUMNS: &[(&str, &str)] = &[
    ("public.user", "email"),
    ("public.user", "full_name"),
    ("public.user", "hashed_password"),
    (
        "public.external_system_integration",
        "push_service_base_url",
    ),
    ("public.external_system_integration", "push_service_api_key"),
];
const BCRYPT_COST: u32 = 12;
/// Rows per UPDATE when writing real bcrypt hashes.
const HASH_BATCH: usize = 5000;

/// A unique, well-formed bcrypt string per row that no password hashes to: `$2b$12$`, then
/// 22 characters of salt (16 random bytes) and 31 of "hash" (23 random bytes), standard
/// base64 translated to bcrypt's alphabet. Base64 of 16 and 23 bytes leaves the unused low
/// bits of the last character zero, as strict bcrypt parsers require. Only core functions.
const UNUSABLE_HASH: &str = "'$2b$12$' || translate(
    substr(encode(decode(replace(gen_random_uuid()::text, '-', ''), 'hex'), 'base64'), 1, 22)
    || substr(encode(substring(sha256(convert_to(gen_random_uuid()::text, 'UTF8')) FROM 1 FOR 23), 'base64'), 1, 31),
    'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/',
    './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')";

pub struct Applied {
    pub admin_id: String,
    pub rows: BTreeMap<String, u64>,
}

/// Runs the rules. Leaves user triggers disabled for `extra_sql`; [`finish`] re-enables them.
pub async fn apply(tx: &Transaction<'_>, cfg: &AnonymizeConfig) -> Result<Applied, AnonymizeError> {
    let admins = tx
        .query(
            &format!("SELECT id::text FROM {USERS} WHERE email = $1"),
            &[&cfg.prod_admin_email],
        )
        .await
        .map_err(sql_error("looking up the production admin"))?;
    let admin_id: String = match admins.as_slice() {
        [row] => row.get(0),
        [] => {
            return Err(AnonymizeError::AdminNotFound {
                email: cfg.prod_admin_email.clone(),
            });
        }
        many => {
            return Err(AnonymizeError::Sql {
                what: "looking up the production admin".into(),
                message: ServerMessage::plain(format!(
                    "{} users have that email; expected one",
                    many.len()
                )),
            });
        }
    };
    // Production hashes, to verify later that no account kept one.
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE staging_refresh_production_hashes ON COMMIT DROP AS
             SELECT DISTINCT hashed_password FROM {USERS} WHERE hashed_password IS NOT NULL;
         ALTER TABLE {USERS} DISABLE TRIGGER USER;
         ALTER TABLE {INTEGRATIONS} DISABLE TRIGGER USER;"
    ))
    .await
    .map_err(sql_error("preparing the users and integrations tables"))?;

    let password = cfg.admin_password.expose().to_owned();
    let admin_hash = tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await
        .expect("bcrypt does not panic")
        .map_err(|e| AnonymizeError::Sql {
            what: "hashing the admin password".into(),
            message: ServerMessage::plain(e.to_string()),
        })?;
    tx.execute(
        &format!(
            "UPDATE {USERS} SET email = $2, full_name = 'Staging Admin', hashed_password = $3,
                 is_superuser = true, is_active = true
             WHERE id::text = $1"
        ),
        &[&admin_id, &cfg.admin_email, &admin_hash],
    )
    .await
    .map_err(sql_error("re-keying the admin"))?;

    let others = tx
        .execute(
            &format!(
                "UPDATE {USERS} SET email = 'anon_' || replace(id::text, '-', '') || '@' || $2,
                     full_name = 'Anonymized User', is_superuser = false,
                     hashed_password = {UNUSABLE_HASH}
                 WHERE id::text <> $1"
            ),
            &[&admin_id, &cfg.email_domain],
        )
        .await
        .map_err(sql_error("anonymizing the users"))?;
    if cfg.password_hash == PasswordHash::Bcrypt {
        real_hashes(tx, &admin_id).await?;
    }

    let integrations = tx
        .execute(
            &format!(
                "UPDATE {INTEGRATIONS} SET push_products = false,
                     push_service_base_url = NULL, push_service_api_key = NULL"
            ),
            &[],
        )
        .await
        .map_err(sql_error("neutralising the integrations"))?;
    Ok(Applied {
        admin_id,
        // Keyed like the restore's rows per table, so reports can line the two up.
        rows: BTreeMap::from([
            (USERS.to_owned(), others + 1),
            (INTEGRATIONS.to_owned(), integrations),
        ]),
    })
}

/// Re-enables the triggers and refreshes materialized views, which still hold what they
/// computed from production rows during the restore.
pub async fn finish(tx: &Transaction<'_>) -> Result<(), AnonymizeError> {
    tx.batch_execute(&format!(
        "ALTER TABLE {USERS} ENABLE TRIGGER USER;
         ALTER TABLE {INTEGRATIONS} ENABLE TRIGGER USER;"
    ))
    .await
    .map_err(sql_error("re-enabling triggers"))?;
    let views = tx
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'm' AND c.relispopulated ORDER BY c.oid",
            &[],
        )
        .await
        .map_err(sql_error("listing materialized views"))?;
    for view in views {
        let name: String = view.get(0);
        tx.batch_execute(&format!("REFRESH MATERIALIZED VIEW {name}"))
            .await
            .map_err(sql_error(&format!("refreshing materialized view {name}")))?;
    }
    Ok(())
}

/// `password_hash = "bcrypt"`: a real cost-12 hash of a random secret for every non-admin
/// user, computed on every core (slow by nature: about 0.2 s of CPU each).
async fn real_hashes(tx: &Transaction<'_>, admin_id: &str) -> Result<(), AnonymizeError> {
    let ids: Vec<String> = tx
        .query(
            &format!("SELECT id::text FROM {USERS} WHERE id::text <> $1"),
            &[&admin_id],
        )
        .await
        .map_err(sql_error("listing users"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for chunk in ids.chunks(HASH_BATCH) {
        let chunk = chunk.to_vec();
        let (chunk, hashes) = tokio::task::spawn_blocking(move || {
            let hashes = hash_random_secrets(chunk.len());
            (chunk, hashes)
        })
        .await
        .expect("hashing does not panic");
        tx.execute(
            &format!(
                "UPDATE {USERS} u SET hashed_password = v.hash
                 FROM unnest($1::text[], $2::text[]) AS v(id, hash) WHERE u.id::text = v.id"
            ),
            &[&chunk, &hashes],
        )
        .await
        .map_err(sql_error("writing bcrypt hashes"))?;
    }
    Ok(())
}

fn hash_random_secrets(n: usize) -> Vec<String> {
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
                            bcrypt::hash(hex::encode(secret), BCRYPT_COST)
                                .expect("a 48-byte secret hashes")
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
