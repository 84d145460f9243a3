//! The tables as the scratch database stores them: asked on the loader's own session, so a
//! COPY's table name resolves as the server resolves it (the dump's `search_path`, after
//! every statement before it ran), and each column's type is the server's, domains, arrays,
//! composites and ranges followed down to the types its values are made of. One query per
//! question, whatever the number of tables.
//!
//! The session is the dump's: its `search_path` may put the dump's own functions and
//! operators before pg_catalog's, so every name below is pg_catalog's, qualified, and every
//! operator is written `OPERATOR(pg_catalog.x)`.

use serde::Deserialize;
use tokio_postgres::Client;

use super::shape::{BaseType, Check, ColumnShape};
use super::tables::{Catalogued, ColumnId, TableShape};
use crate::database::sql::ServerMessage;
use crate::table::TableName;

/// What to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// A COPY's or an INSERT's table as the dump writes it (each part quoted): which table
    /// it is, with its partitions.
    pub target: Option<String>,
    /// Every table in the dump's schemas too.
    pub all: bool,
}

/// The answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The table the COPY or INSERT writes into; `None` when it is not a table (a view, a
    /// foreign table).
    pub target: Option<TableName>,
    pub tables: Vec<TableShape>,
}

/// The COPY's or INSERT's table, as the server resolves the name `$1`.
const TARGET: &str = "target AS (SELECT $1::pg_catalog.text::pg_catalog.regclass AS oid),";

/// The tables asked about: that table and its partitions...
const TREE: &str = "c.oid OPERATOR(pg_catalog.=) ANY (
        SELECT t.relid FROM target, pg_catalog.pg_partition_tree(target.oid) t
        UNION ALL SELECT target.oid FROM target)";

/// ... and every table outside the system's schemas.
const ALL: &str = "n.nspname OPERATOR(pg_catalog.<>) ALL
        (ARRAY['pg_catalog', 'information_schema']::pg_catalog.name[])
    AND n.nspname OPERATOR(pg_catalog.!~) '^pg_(toast|temp)'";

/// Each table's columns, each column's type walked through domains, arrays, composites and
/// ranges (`walk`) down to its leaves, the types its values are made of; its domains' and
/// the table's CHECKs; the table's ancestors (`pg_inherits`, partitions included).
const BODY: &str = "
walk (relid, attnum, typid, typmod, arr, inside, depth) AS (
    SELECT a.attrelid, a.attnum, a.atttypid, a.atttypmod, false, false, 0
    FROM pg_catalog.pg_attribute a
    JOIN rel ON rel.oid OPERATOR(pg_catalog.=) a.attrelid
    WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
  UNION ALL
    SELECT w.relid, w.attnum, s.typid, s.typmod, w.arr OR (s.arr AND NOT w.inside),
           w.inside OR s.inside, w.depth OPERATOR(pg_catalog.+) 1
    FROM walk w
    JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) w.typid
    CROSS JOIN LATERAL (
        SELECT t.typbasetype, t.typtypmod, false, false
        WHERE t.typtype OPERATOR(pg_catalog.=) 'd'
      UNION ALL
        SELECT t.typelem, w.typmod, true, false
        WHERE t.typtype OPERATOR(pg_catalog.=) 'b' AND t.typcategory OPERATOR(pg_catalog.=) 'A'
          AND t.typelem OPERATOR(pg_catalog.<>) 0
      UNION ALL
        SELECT f.atttypid, f.atttypmod, false, true
        FROM pg_catalog.pg_attribute f
        WHERE t.typtype OPERATOR(pg_catalog.=) 'c' AND f.attrelid OPERATOR(pg_catalog.=) t.typrelid
          AND f.attnum OPERATOR(pg_catalog.>) 0 AND NOT f.attisdropped
      UNION ALL
        SELECT r.rngsubtype, -1, false, true
        FROM pg_catalog.pg_range r
        WHERE r.rngtypid OPERATOR(pg_catalog.=) t.oid OR r.rngmultitypid OPERATOR(pg_catalog.=) t.oid
    ) s (typid, typmod, arr, inside)
    WHERE w.depth OPERATOR(pg_catalog.<) 32
),
stepped AS (
    SELECT w.*, t.typname, t.typtype, t.typcategory, t.typnotnull, n.nspname
    FROM walk w
    JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) w.typid
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
),
leaves AS (
    SELECT relid, attnum, pg_catalog.json_agg(pg_catalog.json_build_object(
        'schema', nspname, 'name', typname, 'category', typcategory, 'kind', typtype,
        'inside', inside, 'array', arr, 'modifier', typmod)) AS leaves
    FROM stepped
    WHERE typtype OPERATOR(pg_catalog.<>) ALL (ARRAY['d', 'c', 'r', 'm']::pg_catalog.\"char\"[])
      AND NOT (typtype OPERATOR(pg_catalog.=) 'b' AND typcategory OPERATOR(pg_catalog.=) 'A')
    GROUP BY relid, attnum
),
domains AS (
    SELECT s.relid, s.attnum, pg_catalog.bool_or(s.typnotnull AND NOT s.arr) AS not_null,
        pg_catalog.json_agg(pg_catalog.json_build_object(
            'name', c.conname, 'definition', pg_catalog.pg_get_constraintdef(c.oid)))
            FILTER (WHERE c.oid IS NOT NULL) AS checks
    FROM stepped s
    LEFT JOIN pg_catalog.pg_constraint c ON c.contypid OPERATOR(pg_catalog.=) s.typid
         AND c.contype OPERATOR(pg_catalog.=) 'c'
    WHERE s.typtype OPERATOR(pg_catalog.=) 'd' AND NOT s.inside
    GROUP BY s.relid, s.attnum
),
checks AS (
    SELECT c.conrelid AS relid, k.attnum, pg_catalog.json_agg(pg_catalog.json_build_object(
        'name', c.conname, 'definition', pg_catalog.pg_get_constraintdef(c.oid),
        'columns', (SELECT pg_catalog.json_agg(a.attname ORDER BY a.attnum)
                    FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) c.conrelid
                      AND a.attnum OPERATOR(pg_catalog.=) ANY (c.conkey)))) AS checks
    FROM pg_catalog.pg_constraint c
    JOIN rel ON rel.oid OPERATOR(pg_catalog.=) c.conrelid
    CROSS JOIN LATERAL pg_catalog.unnest(c.conkey) k (attnum)
    WHERE c.contype OPERATOR(pg_catalog.=) 'c'
    GROUP BY c.conrelid, k.attnum
),
columns AS (
    SELECT a.attrelid AS relid, pg_catalog.json_agg(pg_catalog.json_build_object(
        'name', a.attname, 'number', a.attnum,
        'type_name', pg_catalog.format_type(a.atttypid, a.atttypmod),
        'type_oid', a.atttypid::pg_catalog.int8, 'modifier', a.atttypmod,
        'not_null', a.attnotnull OR coalesce(d.not_null, false),
        'generated', a.attgenerated OPERATOR(pg_catalog.<>) '',
        'default', pg_catalog.pg_get_expr(ad.adbin, ad.adrelid),
        'leaves', coalesce(l.leaves, '[]'::pg_catalog.json),
        'checks', coalesce(k.checks, '[]'::pg_catalog.json),
        'domain_checks', coalesce(d.checks, '[]'::pg_catalog.json)) ORDER BY a.attnum) AS columns
    FROM pg_catalog.pg_attribute a
    JOIN rel ON rel.oid OPERATOR(pg_catalog.=) a.attrelid
    LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid OPERATOR(pg_catalog.=) a.attrelid
         AND ad.adnum OPERATOR(pg_catalog.=) a.attnum
    LEFT JOIN leaves l ON l.relid OPERATOR(pg_catalog.=) a.attrelid
         AND l.attnum OPERATOR(pg_catalog.=) a.attnum
    LEFT JOIN domains d ON d.relid OPERATOR(pg_catalog.=) a.attrelid
         AND d.attnum OPERATOR(pg_catalog.=) a.attnum
    LEFT JOIN checks k ON k.relid OPERATOR(pg_catalog.=) a.attrelid
         AND k.attnum OPERATOR(pg_catalog.=) a.attnum
    WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
    GROUP BY a.attrelid
),
ancestors (relid, parent, depth, seq) AS (
    SELECT i.inhrelid, i.inhparent, 1, i.inhseqno
    FROM pg_catalog.pg_inherits i JOIN rel ON rel.oid OPERATOR(pg_catalog.=) i.inhrelid
  UNION ALL
    SELECT a.relid, i.inhparent, a.depth OPERATOR(pg_catalog.+) 1, i.inhseqno
    FROM ancestors a JOIN pg_catalog.pg_inherits i ON i.inhrelid OPERATOR(pg_catalog.=) a.parent
    WHERE a.depth OPERATOR(pg_catalog.<) 32
),
parents AS (
    SELECT a.relid, pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, c.relname)
                                        ORDER BY a.depth, a.seq) AS parents
    FROM ancestors a
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.parent
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    GROUP BY a.relid
)
SELECT pg_catalog.json_build_object(
    'oid', rel.oid::pg_catalog.int8, 'schema', rel.nspname, 'name', rel.relname,
    'target', coalesce(rel.oid OPERATOR(pg_catalog.=) (SELECT oid FROM target), false),
    'partitioned', rel.relkind OPERATOR(pg_catalog.=) 'p', 'partition', rel.relispartition,
    'extension', rel.extension,
    'has_rows', pg_catalog.pg_relation_size(rel.oid) OPERATOR(pg_catalog.>) 0,
    'parents', coalesce(p.parents, '[]'::pg_catalog.json),
    'columns', coalesce(c.columns, '[]'::pg_catalog.json))::pg_catalog.text
FROM rel
LEFT JOIN columns c ON c.relid OPERATOR(pg_catalog.=) rel.oid
LEFT JOIN parents p ON p.relid OPERATOR(pg_catalog.=) rel.oid
ORDER BY rel.nspname, rel.relname";

impl Question {
    /// Asks it on `client`, the loader's session.
    pub async fn ask(self, client: &Client) -> Result<Answer, ServerMessage> {
        let wanted = if self.all {
            format!("({TREE}) OR ({ALL})")
        } else {
            TREE.to_owned()
        };
        let sql = format!(
            "WITH RECURSIVE {TARGET}
             rel AS (
                SELECT c.oid, c.relkind, c.relispartition, n.nspname, c.relname,
                    EXISTS (SELECT FROM pg_catalog.pg_depend d
                            WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                              AND d.objid OPERATOR(pg_catalog.=) c.oid
                              AND d.deptype OPERATOR(pg_catalog.=) 'e') AS extension
                FROM pg_catalog.pg_class c
                JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                WHERE c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog.\"char\"[])
                  AND ({wanted})
             ),
             {BODY}"
        );
        let rows = client.query(&sql, &[&self.target]).await?;
        let mut answer = Answer {
            target: None,
            tables: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            let text: String = row.get(0);
            let table: Table = serde_json::from_str(&text).map_err(|e| {
                ServerMessage::plain(format!("reading the catalog's description of a table: {e}"))
            })?;
            let (target, shape) = table.shape();
            if target {
                answer.target = Some(shape.name.clone());
            }
            answer.tables.push(shape);
        }
        Ok(answer)
    }
}

/// One table as the query describes it.
#[derive(Deserialize)]
struct Table {
    oid: u32,
    schema: String,
    name: String,
    target: bool,
    partitioned: bool,
    partition: bool,
    extension: bool,
    has_rows: bool,
    parents: Vec<(String, String)>,
    columns: Vec<Column>,
}

#[derive(Deserialize)]
struct Column {
    name: String,
    number: i16,
    type_name: String,
    type_oid: u32,
    modifier: i32,
    not_null: bool,
    generated: bool,
    default: Option<String>,
    leaves: Vec<Leaf>,
    checks: Vec<TableCheck>,
    domain_checks: Vec<DomainCheck>,
}

/// A type a column's values are made of.
#[derive(Deserialize)]
struct Leaf {
    schema: String,
    name: String,
    category: String,
    kind: String,
    /// Inside a composite or a range.
    inside: bool,
    array: bool,
    modifier: i32,
}

#[derive(Deserialize)]
struct TableCheck {
    name: String,
    definition: String,
    columns: Vec<String>,
}

#[derive(Deserialize)]
struct DomainCheck {
    name: String,
    definition: String,
}

impl Table {
    /// The shape, and whether it is the table asked about.
    fn shape(self) -> (bool, TableShape) {
        let ids = self
            .columns
            .iter()
            .map(|c| ColumnId {
                number: c.number,
                type_oid: c.type_oid,
                modifier: c.modifier,
            })
            .collect();
        let shape = TableShape {
            name: TableName {
                schema: self.schema,
                name: self.name,
            },
            parents: self
                .parents
                .into_iter()
                .map(|(schema, name)| TableName { schema, name })
                .collect(),
            partition: self.partition,
            partitioned: self.partitioned,
            columns: self.columns.into_iter().map(Column::shape).collect(),
            catalog: Some(Catalogued {
                oid: self.oid,
                columns: ids,
                has_rows: self.has_rows,
                extension: self.extension,
            }),
        };
        (self.target, shape)
    }
}

impl Column {
    fn shape(self) -> ColumnShape {
        let (base, array, type_length) = element(&self.leaves);
        let checks = self
            .checks
            .into_iter()
            .map(|c| Check {
                name: c.name,
                definition: c.definition,
                columns: c.columns,
            })
            .chain(self.domain_checks.into_iter().map(|c| Check {
                name: c.name,
                definition: c.definition,
                columns: Vec::new(),
            }))
            .collect();
        ColumnShape {
            name: self.name,
            type_name: self.type_name,
            base,
            array,
            not_null: self.not_null,
            type_length,
            checks,
            generated: self.generated,
            default: self.default,
        }
    }
}

/// What one value (one element) of a column made of `leaves` is: its base type, whether the
/// column is an array of it, and its length limit.
fn element(leaves: &[Leaf]) -> (BaseType, bool, Option<u64>) {
    let [leaf] = leaves else {
        // A composite or a range: personal unless everything in it is not.
        let personal = leaves.is_empty() || leaves.iter().any(|l| base(l) != BaseType::NotPersonal);
        let base = if personal {
            BaseType::Other
        } else {
            BaseType::NotPersonal
        };
        return (base, leaves.iter().any(|l| l.array), None);
    };
    if leaf.inside {
        let base = match base(leaf) {
            BaseType::NotPersonal => BaseType::NotPersonal,
            _ => BaseType::Other,
        };
        return (base, leaf.array, None);
    }
    let limited =
        leaf.schema == "pg_catalog" && ["varchar", "bpchar"].contains(&leaf.name.as_str());
    // A varchar(n)'s modifier is n + 4 (the varlena header).
    let length = (limited && leaf.modifier >= 4).then(|| (leaf.modifier - 4) as u64);
    (base(leaf), leaf.array, length)
}

/// What a value of a leaf type is.
fn base(leaf: &Leaf) -> BaseType {
    // Enums are the dump's own; every other leaf is a base type, which only a superuser (or
    // an extension) can create.
    if leaf.kind == "e" {
        return BaseType::NotPersonal;
    }
    if leaf.category == "S" {
        return BaseType::Text;
    }
    if leaf.schema != "pg_catalog" {
        return BaseType::Other;
    }
    match leaf.name.as_str() {
        "bytea" => BaseType::Bytea,
        "json" => BaseType::Json,
        "jsonb" => BaseType::Jsonb,
        "xml" => BaseType::Xml,
        "inet" | "cidr" | "macaddr" | "macaddr8" => BaseType::Network,
        "uuid" | "pg_lsn" | "xid" | "xid8" | "cid" | "tid" => BaseType::NotPersonal,
        // Numbers (oids and reg* types among them), booleans, dates, times, intervals, bits.
        _ if ["N", "B", "D", "T", "V"].contains(&leaf.category.as_str()) => BaseType::NotPersonal,
        _ => BaseType::Other,
    }
}
