//! Verification inside the anonymizing transaction: the masking (and `extra_sql`) left what
//! staging promises, or nothing commits.

use crate::config::ExposeSecret;
use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;

use super::{AnonymizeError, sql_error};
use crate::config::AnonymizeConfig;
use crate::database::sql::quote_ident;
use crate::mask::Masked;
use crate::mask::language::{Language, language};
use crate::mask::shape::{BaseType, ColumnShape};
use crate::table::{TableName, display_ident};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: String) -> Verification {
    Verification {
        name: name.to_owned(),
        ok,
        detail,
    }
}

/// The account checks, and that masked columns hold masked values. With a production admin:
/// it kept its id and its hash verifies `admin_password`, it is the one active superuser
/// (where the table has a superuser column) and the one account that can log in; without,
/// there is no active superuser and no account can log in.
pub async fn run(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    masked: &Masked,
) -> Result<Vec<Verification>, AnonymizeError> {
    let admin_id = &masked.admin_id;
    let accounts = &cfg.accounts;
    let table = accounts.table.sql();
    let [id, email, password] = [&accounts.id, &accounts.email, &accounts.password]
        .map(|column| format!("{}::text", quote_ident(column)));
    // Accounts that can log in: all of them without an active column.
    let active = accounts
        .active
        .as_deref()
        .map_or("true".into(), quote_ident);
    let not_admin = format!("{id} IS DISTINCT FROM $1::text");
    let suffix = format!("@{}", cfg.email_domain.to_lowercase());
    let suffix_len = suffix.chars().count() as i32;
    let outside: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM {table} WHERE {not_admin}
                 AND right(lower({email}), $3) <> $2"
            ),
            &[&admin_id, &suffix, &suffix_len],
        )
        .await
        .map_err(sql_error("verifying"))?
        .get(0);
    let mut checks = vec![check(
        "non-admin emails in the reserved domain",
        outside == 0,
        format!("{outside} non-admin accounts have an email outside {suffix}"),
    )];
    let mut verifying = None;
    if let Some(admin_id) = admin_id {
        let admin = tx
            .query_opt(
                &format!("SELECT {email}, {password} FROM {table} WHERE {id} = $1"),
                &[&admin_id],
            )
            .await
            .map_err(sql_error("verifying"))?;
        let (admin_email, admin_hash): (Option<String>, Option<String>) =
            admin.map(|r| (r.get(0), r.get(1))).unwrap_or_default();
        let admin_email = admin_email.unwrap_or_default();
        checks.push(check(
            "admin kept its id",
            admin_email == cfg.admin_email,
            format!(
                "account {admin_id} has email {:?}",
                shown_email(&admin_email, cfg)
            ),
        ));
        // bcrypt takes a core for a quarter of a second: it runs beside the queries below.
        let password = cfg.admin_password.expose_secret().to_owned();
        let hash = admin_hash.unwrap_or_default();
        verifying = Some(tokio::task::spawn_blocking(move || {
            bcrypt::verify(password, &hash).unwrap_or(false)
        }));
    }
    if let Some(superuser) = &accounts.superuser {
        let superusers = tx
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE {not_admin}), count(*) FILTER (WHERE {id} = $1)
                     FROM {table} WHERE {} AND {active}",
                    quote_ident(superuser)
                ),
                &[&admin_id],
            )
            .await
            .map_err(sql_error("verifying"))?;
        let (others, admin): (i64, i64) = (superusers.get(0), superusers.get(1));
        checks.push(match admin_id {
            Some(_) => check(
                "exactly one active superuser",
                others == 0 && admin == 1,
                format!(
                    "{others} other active superusers; the admin {}",
                    if admin == 1 { "is one" } else { "is not" }
                ),
            ),
            None => check(
                "no active superuser",
                others == 0,
                format!("{others} active superusers, and no production admin is configured"),
            ),
        });
    }
    // Masked hashes carry the key's marker salt; any other hash could be production's.
    let prefix = &masked.password_prefix;
    let kept_production_hash: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM {table} WHERE {active} AND {not_admin}
                 AND left({password}, $3) <> $2"
            ),
            &[&admin_id, prefix, &(prefix.chars().count() as i32)],
        )
        .await
        .map_err(sql_error("verifying"))?
        .get(0);
    let outside_masks = outside_masks(tx, cfg, masked).await?;
    let detail = format!(
        "{kept_production_hash} active non-admin accounts have a password hash the masking did \
         not write"
    );
    match verifying {
        Some(verifying) => {
            let verifies = verifying.await.expect("bcrypt does not panic");
            checks.push(check(
                "admin password verifies",
                verifies,
                "the admin's hash checked against anonymize.admin_password".into(),
            ));
            checks.push(check(
                "exactly one login-capable account",
                kept_production_hash + i64::from(verifies) == 1,
                detail,
            ));
        }
        None => checks.push(check(
            "no login-capable account",
            kept_production_hash == 0,
            detail,
        )),
    }
    checks.push(check(
        "masked columns hold masked values",
        outside_masks.is_empty(),
        if outside_masks.is_empty() {
            format!("{} masked columns checked", masked.applied.len())
        } else {
            outside_masks.join(", ")
        },
    ));
    Ok(checks)
}

/// The tables whose rows must all be their COPYs': those with masked columns and those the
/// PII scan read in the stream.
pub struct RowVersions<'a> {
    pub tables: &'a BTreeSet<&'a TableName>,
    /// Each table's ancestors: a COPY into a partitioned table loads its partitions' rows.
    pub parents: &'a BTreeMap<TableName, Vec<TableName>>,
    /// The xids of each table's COPY transactions.
    pub xids: &'a BTreeMap<TableName, Vec<String>>,
}

impl RowVersions<'_> {
    /// The tables whose rows were not all written by a COPY of that table (or of a table its
    /// rows were routed through: a partitioned parent) or by the transaction `own` (the
    /// anonymization's, once it wrote rows itself), as `table: count`: any other row was
    /// written after the stream masked and scanned it, by code of the dump's (an index
    /// expression, a CHECK, a materialized view's refresh, a trigger of another table's
    /// COPY).
    pub async fn written_after_copies(
        &self,
        tx: &Transaction<'_>,
        own: Option<&str>,
    ) -> Result<Vec<String>, AnonymizeError> {
        let mut written_after = Vec::new();
        for table in self.tables {
            // A table no COPY loaded: any row it has was written otherwise.
            let parents = self.parents.get(*table).map_or(&[][..], Vec::as_slice);
            let ids: Vec<&str> = std::iter::once(*table)
                .chain(parents)
                .filter_map(|t| self.xids.get(t))
                .flatten()
                .map(String::as_str)
                .chain(own)
                .collect();
            // ONLY: an inheriting table's rows are its own COPY's. Compared as xids: this
            // reads every row of every table the stream read, and text costs twice as much.
            let count: i64 = tx
                .query_one(
                    &format!(
                        "SELECT count(*) FROM ONLY {} WHERE xmin <> ALL($1::text[]::xid[])",
                        table.sql()
                    ),
                    &[&ids],
                )
                .await
                .map_err(sql_error("verifying the restored tables' rows"))?
                .get(0);
            if count > 0 {
                written_after.push(format!(
                    "rows of {table} written after its COPY: {count} (by code in the dump)"
                ));
            }
        }
        Ok(written_after)
    }
}

/// The verification [`RowVersions::written_after_copies`] found (`checked` tables).
pub fn only_copied_rows(written_after: Vec<String>, checked: usize) -> Verification {
    check(
        "restored tables hold only their COPY's rows",
        written_after.is_empty(),
        if written_after.is_empty() {
            format!("{checked} tables checked")
        } else {
            written_after.join(", ")
        },
    )
}

/// The anonymization transaction's xid, as `xmin::text` shows the rows it writes.
pub async fn own_xid(tx: &Transaction<'_>) -> Result<String, AnonymizeError> {
    let xid: i64 = tx
        .query_one("SELECT txid_current()", &[])
        .await
        .map_err(sql_error("reading the transaction's id"))?
        .get(0);
    Ok((xid % (1 << 32)).to_string())
}

/// The masked columns (`table.column: count`) holding values their mask never writes:
/// every value (every element of an array, the paths of a JSON document) checked against
/// its mask's [`language`]. The admin's row is the admin's.
async fn outside_masks(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    masked: &Masked,
) -> Result<Vec<String>, AnonymizeError> {
    let mut outside = Vec::new();
    for (table, shape, mask) in &masked.applied {
        let Some(language) = language(
            mask,
            &shape.base,
            &cfg.email_domain,
            &masked.password_prefix,
        ) else {
            continue;
        };
        let column = quote_ident(&shape.name);
        // $1 is the admin's id, typed in every query and used in the accounts table's.
        let not_admin = if *table == cfg.accounts.table {
            format!(
                "{}::text IS DISTINCT FROM $1::text",
                quote_ident(&cfg.accounts.id)
            )
        } else {
            "($1::text IS NULL OR true)".into()
        };
        let rows = format!(
            "FROM ONLY {} WHERE {column} IS NOT NULL AND {not_admin}",
            table.sql()
        );
        let count = match &language {
            Language::Pattern(_) | Language::Json { .. } => {
                read_outside(tx, &rows, &column, shape, &language, masked).await?
            }
            Language::Null | Language::Constant(_) => {
                let sql = match &language {
                    Language::Constant(constant) if shape.array => format!(
                        "SELECT count(*) {rows} AND EXISTS (SELECT FROM unnest({column}) v \
                         WHERE v IS NOT NULL AND {})",
                        constant_outside(constant, &shape.base)
                    ),
                    Language::Constant(constant) => format!(
                        "SELECT count(*) FROM (SELECT {column} AS v {rows}) value WHERE {}",
                        constant_outside(constant, &shape.base)
                    ),
                    _ => format!("SELECT count(*) {rows}"),
                };
                tx.query_one(&sql, &[&masked.admin_id])
                    .await
                    .map_err(sql_error("verifying the masked columns"))?
                    .get(0)
            }
        };
        if count > 0 {
            outside.push(format!("{table}.{}: {count}", display_ident(&shape.name)));
        }
    }
    Ok(outside)
}

/// A value `x` of type `base` as text, as the masks' languages read it: bytea's escape form
/// leaves printable ASCII but `\` as it is (the masks' bytes).
fn value_text(x: &str, base: &BaseType) -> String {
    match base {
        BaseType::Bytea => format!("encode({x}, 'escape')"),
        _ => format!("({x})::text"),
    }
}

/// The SQL condition that a non-NULL value `v` of type `base` is not `constant`, as the
/// value's type reads it (`f` for a boolean reads `false`).
fn constant_outside(constant: &str, base: &BaseType) -> String {
    // A literal: the constant comes from the config, never from the dump.
    let literal = format!("E'{}'", constant.replace('\\', "\\\\").replace('\'', "''"));
    format!(
        "{} IS DISTINCT FROM {}",
        value_text("v", base),
        value_text(&format!("(ARRAY[v, {literal}])[2]"), base)
    )
}

/// How many of the rows `rows` (`FROM ... WHERE ...`, $1 the admin's id) select hold a value
/// in `column` (an element, for an array) outside `language`, read here: a JSON document
/// walked as the mask walked it, a value matched against its pattern (PostgreSQL's regular
/// expressions take microseconds a value for the masks' counted repetitions, the regex
/// crate nanoseconds).
async fn read_outside(
    tx: &Transaction<'_>,
    rows: &str,
    column: &str,
    shape: &ColumnShape,
    language: &Language,
    masked: &Masked,
) -> Result<i64, AnonymizeError> {
    let what = "verifying the masked columns";
    let values = if shape.array {
        format!(
            "ARRAY(SELECT {} FROM unnest({column}) v WHERE v IS NOT NULL)",
            value_text("v", &shape.base)
        )
    } else {
        format!("ARRAY[{}]", value_text(column, &shape.base))
    };
    let values = tx
        .query_raw(&format!("SELECT {values} {rows}"), [&masked.admin_id])
        .await
        .map_err(sql_error(what))?;
    let mut values = std::pin::pin!(values);
    let mut count = 0;
    while let Some(row) = values.try_next().await.map_err(sql_error(what))? {
        let values: Vec<&str> = row.get(0);
        count += i64::from(!values.iter().all(|v| language.contains(v)));
    }
    Ok(count)
}

/// An email safe to report: the staging admin's, or only its domain.
fn shown_email(email: &str, cfg: &AnonymizeConfig) -> String {
    if email == cfg.admin_email {
        email.to_owned()
    } else {
        match email.split_once('@') {
            Some((_, domain)) => format!("…@{domain}"),
            None => "(none)".into(),
        }
    }
}
