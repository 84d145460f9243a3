//! The accounts table `[anonymize.accounts]` names, as the dump must have it (checked when
//! the pre-data and its COPY pass, so a wrong name fails before any row is loaded), and the
//! production admin's row in it: found in the COPY by `anonymize.prod_admin_email`, it gets
//! the staging admin's email, name and password hash, is superuser and active, and keeps its
//! id (the runbook keyed its second UPDATE on the email it had just changed, and so
//! anonymized the admin too). Without a production admin no row is re-keyed.

use crate::config::masking::ADMIN_NAME;
use crate::config::{AccountsConfig, AnonymizeConfig, ExposeSecret};

use super::copy;
use super::error::MaskError;

/// The cost of the admin's bcrypt hash (and of real hashes with `password_hash = "bcrypt"`).
pub const BCRYPT_COST: u32 = 12;

/// Fails unless the accounts table is among the dump's tables (`columns`: its columns, `None`
/// when the dump has no such table) with every column the section names.
pub fn check_table<'a>(
    accounts: &AccountsConfig,
    columns: Option<impl IntoIterator<Item = &'a str>>,
) -> Result<(), MaskError> {
    let Some(columns) = columns else {
        return Err(MaskError::AccountsTable {
            table: accounts.table.to_string(),
        });
    };
    check_columns(accounts, &columns.into_iter().collect::<Vec<_>>())
}

/// Fails unless `names` (the accounts table's columns, or those its COPY lists) holds every
/// column the section names.
pub fn check_columns(accounts: &AccountsConfig, names: &[&str]) -> Result<(), MaskError> {
    let missing: Vec<String> = accounts
        .columns()
        .into_iter()
        .filter(|(_, column)| !names.contains(column))
        .map(|(key, column)| format!("{column:?} (anonymize.accounts.{key})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MaskError::AccountsColumns {
            table: accounts.table.to_string(),
            columns: missing,
        })
    }
}

/// The staging admin, who replaces the production admin's row.
#[derive(Debug, Clone)]
pub struct Admin {
    pub prod_email: String,
    pub email: String,
    /// bcrypt hash of `anonymize.admin_password`.
    pub hash: String,
}

impl Admin {
    /// The admin `cfg` describes, if it names a production admin. Slow (bcrypt): call it off
    /// the async runtime.
    pub fn from_config(cfg: &AnonymizeConfig) -> Result<Option<Admin>, MaskError> {
        let Some(prod_email) = &cfg.prod_admin_email else {
            return Ok(None);
        };
        let hash = bcrypt::hash(cfg.admin_password.expose_secret(), BCRYPT_COST)
            .map_err(|e| MaskError::AdminHash(e.to_string()))?;
        Ok(Some(Admin {
            prod_email: prod_email.clone(),
            email: cfg.admin_email.clone(),
            hash,
        }))
    }

    pub(super) fn not_found(&self, accounts: &AccountsConfig) -> MaskError {
        MaskError::AdminNotFound {
            table: accounts.table.to_string(),
            column: accounts.email.clone(),
            email: self.prod_email.clone(),
        }
    }

    /// Exactly one of the rows read was the admin's (`ids`, their ids).
    pub(super) fn found_once(
        &self,
        accounts: &AccountsConfig,
        ids: &[String],
    ) -> Result<(), MaskError> {
        match ids.len() {
            1 => Ok(()),
            0 => Err(self.not_found(accounts)),
            count => Err(MaskError::AdminNotUnique {
                table: accounts.table.to_string(),
                count,
            }),
        }
    }

    /// Where the admin's columns are in the accounts table's COPY (`names`, its column list,
    /// which [`check_columns`] found complete).
    pub(super) fn fields(&self, accounts: &AccountsConfig, names: &[String]) -> AdminFields {
        let at = |column: &str| names.iter().position(|n| n == column);
        let set = [
            (Some(&accounts.email), self.email.as_str()),
            (accounts.name.as_ref(), ADMIN_NAME),
            (Some(&accounts.password), self.hash.as_str()),
            (accounts.superuser.as_ref(), "t"),
            (accounts.active.as_ref(), "t"),
        ]
        .into_iter()
        .filter_map(|(column, value)| Some((at(column?)?, value.as_bytes().to_vec())))
        .collect();
        let listed = "the accounts COPY lists every configured column";
        AdminFields {
            email: at(&accounts.email).expect(listed),
            id: at(&accounts.id).expect(listed),
            prod_email: self.prod_email.clone().into_bytes(),
            set,
        }
    }
}

/// The admin's fields in the accounts table's COPY rows.
pub(super) struct AdminFields {
    email: usize,
    id: usize,
    prod_email: Vec<u8>,
    /// (field, value) the admin row gets.
    set: Vec<(usize, Vec<u8>)>,
}

impl AdminFields {
    /// The row's id (as COPY text) when `fields` are the admin's row.
    pub(super) fn admin_id(&self, fields: &[&[u8]]) -> Option<String> {
        let email = copy::decode(fields[self.email])?;
        (email == self.prod_email).then(|| {
            let id = copy::decode(fields[self.id]).unwrap_or_default();
            String::from_utf8_lossy(&id).into_owned()
        })
    }

    /// The value the admin's row gets in field `i`, if it gets one.
    pub(super) fn value(&self, i: usize) -> Option<&[u8]> {
        self.set
            .iter()
            .find(|(f, _)| *f == i)
            .map(|(_, value)| value.as_slice())
    }
}
