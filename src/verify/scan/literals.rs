//! The schema's own literals, which are data too (a view over `VALUES` of customer emails
//! holds them as surely as a table): view and materialized view definitions, function and
//! procedure definitions, column defaults, CHECK expressions, comments, enum labels, and the
//! names of schemas, tables, columns, functions and types. The system's schemas and what
//! extensions made are left out. A finding names the object that holds the literal (for a
//! name: the schema or table it is in), never the literal.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::classify::kinds_in_value;
use super::{Finding, USER_SCHEMA};
use crate::config::AnonymizeConfig;
use crate::verify::{AnonymizeError, sql_error};

/// (object, which of its texts, the text) for every literal of the dump's objects.
fn literals_sql() -> String {
    format!(
        "WITH member AS (
             SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
         ), schema AS (
             SELECT n.oid, n.nspname FROM pg_namespace n
             WHERE {USER_SCHEMA}
               AND n.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_namespace'::regclass)
         ), relation AS (
             SELECT c.oid, c.relname, c.relkind, c.relnamespace FROM pg_class c
             WHERE c.relnamespace IN (SELECT oid FROM schema)
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND c.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_class'::regclass)
         ), routine AS (
             SELECT p.oid, p.proname, p.prokind, p.pronamespace FROM pg_proc p
             WHERE p.pronamespace IN (SELECT oid FROM schema)
               AND p.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_proc'::regclass)
         ), type AS (
             SELECT t.oid, t.typname, t.typnamespace FROM pg_type t
             WHERE t.typnamespace IN (SELECT oid FROM schema) AND t.typtype IN ('d', 'e', 'r', 'm')
               AND t.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_type'::regclass)
         )
         SELECT 'database', 'schema name', nspname::text FROM schema
         UNION ALL
         SELECT pg_describe_object('pg_namespace'::regclass, relnamespace, 0),
                CASE relkind WHEN 'v' THEN 'view name' WHEN 'm' THEN 'materialized view name'
                             ELSE 'table name' END,
                relname::text
         FROM relation
         UNION ALL
         SELECT pg_describe_object('pg_class'::regclass, oid, 0), 'definition', pg_get_viewdef(oid)
         FROM relation WHERE relkind IN ('v', 'm')
         UNION ALL
         SELECT pg_describe_object('pg_class'::regclass, a.attrelid, 0), 'column name',
                a.attname::text
         FROM pg_attribute a JOIN relation r ON r.oid = a.attrelid
         WHERE a.attnum > 0 AND NOT a.attisdropped
         UNION ALL
         SELECT pg_describe_object('pg_class'::regclass, d.adrelid, d.adnum), 'default',
                pg_get_expr(d.adbin, d.adrelid)
         FROM pg_attrdef d JOIN relation r ON r.oid = d.adrelid
         UNION ALL
         SELECT pg_describe_object('pg_namespace'::regclass, pronamespace, 0),
                CASE prokind WHEN 'p' THEN 'procedure name' WHEN 'a' THEN 'aggregate name'
                             ELSE 'function name' END,
                proname::text
         FROM routine
         UNION ALL
         SELECT pg_describe_object('pg_proc'::regclass, oid, 0), 'definition',
                pg_get_functiondef(oid)
         FROM routine WHERE prokind <> 'a'
         UNION ALL
         SELECT pg_describe_object('pg_namespace'::regclass, typnamespace, 0), 'type name',
                typname::text
         FROM type
         UNION ALL
         SELECT pg_describe_object('pg_type'::regclass, e.enumtypid, 0), 'enum label',
                e.enumlabel::text
         FROM pg_enum e JOIN type t ON t.oid = e.enumtypid
         UNION ALL
         SELECT pg_describe_object('pg_constraint'::regclass, c.oid, 0), 'expression',
                pg_get_constraintdef(c.oid)
         FROM pg_constraint c
         WHERE c.contype = 'c'
           AND (c.conrelid IN (SELECT oid FROM relation) OR c.contypid IN (SELECT oid FROM type))
         UNION ALL
         -- Comments on anything the dump made. What initdb made has oids below 16384
         -- (FirstNormalObjectId), though a dump may comment on schema public.
         SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), 'comment', d.description
         FROM pg_description d
         WHERE d.classoid <> 'pg_extension'::regclass
           AND (d.objoid >= 16384
                OR (d.classoid = 'pg_namespace'::regclass AND d.objoid IN (SELECT oid FROM schema)))
           AND NOT EXISTS (SELECT FROM member m WHERE m.classid = d.classoid AND m.objid = d.objoid)"
    )
}

/// Findings in the schema's literals, counted per object, text and kind.
pub(super) async fn scan(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
) -> Result<Vec<Finding>, AnonymizeError> {
    let what = "scanning the schema's literals";
    let rows = tx
        .query_raw(&literals_sql(), std::iter::empty::<&(dyn ToSql + Sync)>())
        .await
        .map_err(sql_error(what))?;
    let mut rows = std::pin::pin!(rows);
    let mut counts: BTreeMap<(String, String, &'static str), u64> = BTreeMap::new();
    while let Some(row) = rows.try_next().await.map_err(sql_error(what))? {
        let (Some(object), Some(field), Some(literal)) = (
            row.get::<_, Option<&str>>(0),
            row.get::<_, Option<&str>>(1),
            row.get::<_, Option<&str>>(2),
        ) else {
            continue;
        };
        for kind in kinds_in_value(literal, cfg) {
            *counts
                .entry((object.to_owned(), field.to_owned(), kind))
                .or_insert(0) += 1;
        }
    }
    Ok(counts
        .into_iter()
        .map(|((table, column, kind), count)| Finding {
            table,
            column,
            kind: kind.to_owned(),
            by: "schema literal".to_owned(),
            count,
        })
        .collect())
}
