//! COPY rows of a table with masked columns, rewritten field by field: each row checked to
//! be read by the server as it is here ([`copy::framing`]), each ruled field's value decoded,
//! masked through its column's shape ([`mask_field`]: element by element for an array, as
//! bytes for bytea) and encoded again; the admin's row re-keyed ([`super::admin`]). Rows
//! arrive in chunks that cut them anywhere: the cut row waits for the next chunk.

use crate::config::masking::Mask;
use crate::table::{TableName, display_ident};

use super::admin::AdminFields;
use super::error::MaskError;
use super::gate::misfits;
use super::kinds::{KindError, Masks};
use super::shape::ColumnShape;
use super::tables::TableShape;
use super::{array, copy};

/// Longest COPY row of a masked table held at once; pg_dump lines are far shorter unless a
/// single value is huge, and that value would need masking whole. A row is held a few
/// times over while it is decoded, masked and encoded again (a 200 MiB value took the
/// process to 431 MB): the limit keeps that well under the memory a refresh otherwise uses
/// times a few.
pub(super) const MAX_ROW: usize = 32 << 20;

/// A COPY being masked.
pub(super) struct MaskedCopy {
    /// Per field: its mask and its column's shape, `None` to keep.
    fields: Vec<Option<(Mask, ColumnShape)>>,
    pub(super) names: Vec<String>,
    /// Field indexes of the admin's columns, in the accounts table.
    pub(super) admin: Option<AdminFields>,
    /// The start of a row the last chunk cut.
    pub(super) partial: Vec<u8>,
    pub(super) rows: u64,
    /// Values masked, per field.
    pub(super) values: Vec<u64>,
    /// The COPY statement's dump line.
    line: u64,
}

impl MaskedCopy {
    /// The COPY (at dump line `line`) of `table` listing `names`, each masked by its mask in
    /// `rules` (`None` keeps it) through its column's shape; refused, before any row, when a
    /// mask does not fit its column.
    pub(super) fn new(
        masks: &Masks,
        table: &TableShape,
        line: u64,
        names: Vec<String>,
        rules: Vec<Option<Mask>>,
        admin: Option<AdminFields>,
    ) -> Result<MaskedCopy, MaskError> {
        let mut misfit = Vec::new();
        let fields: Vec<Option<(Mask, ColumnShape)>> = rules
            .into_iter()
            .zip(&names)
            .map(|(mask, name)| {
                let mask = mask?;
                match table.column(name) {
                    Some(shape) => Some((mask, shape.clone())),
                    None => {
                        // The server refuses such a COPY too; refused here first, so no
                        // masked field is ever passed through unread.
                        misfit.push(format!(
                            "{}.{}: the COPY lists a column the table does not have",
                            table.name,
                            display_ident(name)
                        ));
                        None
                    }
                }
            })
            .collect();
        misfit.extend(misfits(
            masks.email_domain(),
            &table.name,
            fields.iter().flatten().map(|(m, s)| (s, m)),
        ));
        if !misfit.is_empty() {
            return Err(MaskError::Misfit(misfit));
        }
        Ok(MaskedCopy {
            fields,
            values: vec![0; names.len()],
            names,
            admin,
            partial: Vec::new(),
            rows: 0,
            line,
        })
    }
}

/// One field's masked value (COPY-decoded), through its column's shape: element by element
/// for an array (NULL elements stay NULL), bytes for bytea. `null` makes the whole field
/// NULL, an array included.
pub(super) fn mask_field(
    masks: &Masks,
    mask: &Mask,
    shape: &ColumnShape,
    value: &[u8],
) -> Result<Option<Vec<u8>>, KindError> {
    if *mask == Mask::Null {
        return Ok(None);
    }
    if shape.array {
        return array::map(value, |element| {
            masks.apply_value(mask, &shape.base, element)
        })
        .map(Some);
    }
    masks.apply_value(mask, &shape.base, value)
}

/// Rewrites whole COPY lines (each ending in `\n`); the admin rows' ids go to `admins`.
pub(super) fn rows(
    masks: &Masks,
    admins: &mut Vec<String>,
    table: &TableName,
    m: &mut MaskedCopy,
    lines: &[u8],
) -> Result<Vec<u8>, MaskError> {
    let mut out = Vec::with_capacity(lines.len() + lines.len() / 4);
    let mut fields: Vec<&[u8]> = Vec::with_capacity(m.fields.len());
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        copy::framing(line).map_err(|why| MaskError::Framing {
            line: m.line,
            table: table.to_string(),
            row: m.rows + 1,
            why,
        })?;
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
            .and_then(|a| Some((a, a.admin_id(&fields)?)))
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
            let Some((mask, shape)) = &m.fields[i] else {
                out.extend_from_slice(field);
                continue;
            };
            let Some(value) = copy::decode(field) else {
                out.extend_from_slice(b"\\N");
                continue;
            };
            let masked =
                mask_field(masks, mask, shape, &value).map_err(|error| MaskError::Value {
                    column: format!("{table}.{}", display_ident(&m.names[i])),
                    error,
                })?;
            m.values[i] += 1;
            copy::encode(masked.as_deref(), &mut out);
        }
        out.push(b'\n');
    }
    Ok(out)
}
