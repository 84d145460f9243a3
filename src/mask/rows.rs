//! COPY rows of a table with masked columns, rewritten field by field: each ruled field's
//! value decoded, masked ([`Masks::apply`]), checked against its type's length and encoded
//! again; the admin's row re-keyed ([`super::admin`]). Rows arrive in chunks that cut them
//! anywhere: the cut row waits for the next chunk.

use crate::config::masking::Mask;
use crate::table::{TableName, display_ident};

use super::admin::{Admin, AdminFields};
use super::copy;
use super::error::MaskError;
use super::kinds::Masks;
use super::schema::Schema;

/// Longest COPY row of a masked table held at once; pg_dump lines are far shorter unless a
/// single value is huge, and that value would need masking whole. A row is held a few
/// times over while it is decoded, masked and encoded again (a 200 MiB value took the
/// process to 431 MB): the limit keeps that well under the memory a refresh otherwise uses
/// times a few.
pub(super) const MAX_ROW: usize = 32 << 20;

/// A COPY being masked.
pub(super) struct MaskedCopy {
    /// Per field: its mask and length limit, `None` to keep.
    fields: Vec<Option<(Mask, Option<u64>)>>,
    pub(super) names: Vec<String>,
    /// Field indexes of the admin's columns, in the users table.
    pub(super) admin: Option<AdminFields>,
    /// The start of a row the last chunk cut.
    pub(super) partial: Vec<u8>,
    pub(super) rows: u64,
    /// Values masked, per field.
    pub(super) values: Vec<u64>,
}

impl MaskedCopy {
    /// The COPY of `table` listing `names`, each masked by `masks` (`None` keeps it) within
    /// the length its type allows.
    pub(super) fn new(
        schema: &Schema,
        table: &TableName,
        names: Vec<String>,
        masks: Vec<Option<Mask>>,
        admin: Option<AdminFields>,
    ) -> MaskedCopy {
        let columns = schema.columns(table).unwrap_or_default();
        let limit = |name: &String| {
            columns
                .iter()
                .find(|c| c.name == *name)
                .and_then(|c| Schema::max_len(&c.ty))
        };
        MaskedCopy {
            fields: masks
                .into_iter()
                .zip(&names)
                .map(|(m, name)| m.map(|m| (m, limit(name))))
                .collect(),
            values: vec![0; names.len()],
            names,
            admin,
            partial: Vec::new(),
            rows: 0,
        }
    }
}

/// Rewrites whole COPY lines (each ending in `\n`); the admin rows' ids go to `admins`.
pub(super) fn rows(
    masks: &Masks,
    admin: &Admin,
    admins: &mut Vec<String>,
    table: &TableName,
    m: &mut MaskedCopy,
    lines: &[u8],
) -> Result<Vec<u8>, MaskError> {
    let mut out = Vec::with_capacity(lines.len() + lines.len() / 4);
    let mut fields: Vec<&[u8]> = Vec::with_capacity(m.fields.len());
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        fields.clear();
        fields.extend(copy::fields(line));
        if fields.len() != m.fields.len() {
            return Err(MaskError::Row {
                table: table.to_string(),
                fields: fields.len(),
                columns: m.fields.len(),
            });
        }
        let admin_row = m
            .admin
            .as_ref()
            .and_then(|a| Some((a, a.admin_id(&fields, &admin.prod_email)?)))
            .map(|(a, id)| {
                admins.push(id);
                a
            });
        m.rows += 1;
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            if let Some(value) = admin_row.and_then(|a| a.value(i)) {
                copy::encode(Some(value), &mut out);
                continue;
            }
            let Some((mask, limit)) = &m.fields[i] else {
                out.extend_from_slice(field);
                continue;
            };
            let Some(value) = copy::decode(field) else {
                out.extend_from_slice(b"\\N");
                continue;
            };
            let column = || format!("{table}.{}", display_ident(&m.names[i]));
            let masked = masks
                .apply(mask, &value)
                .map_err(|error| MaskError::Value {
                    column: column(),
                    error,
                })?;
            if let (Some(limit), Some(v)) = (limit, &masked)
                && String::from_utf8_lossy(v).chars().count() as u64 > *limit
            {
                return Err(MaskError::TooLong {
                    column: column(),
                    limit: *limit,
                });
            }
            m.values[i] += 1;
            copy::encode(masked.as_deref(), &mut out);
        }
        out.push(b'\n');
    }
    Ok(out)
}
