//! The production admin's row, re-keyed in place: found in the users table's COPY by
//! `anonymize.prod_admin_email`, it gets the staging admin's email, name and password hash,
//! is superuser and active, and keeps its id (the runbook keyed its second UPDATE on the
//! email it had just changed, and so anonymized the admin too).

use crate::config::masking::{ACTIVE, ADMIN_NAME, EMAIL, FULL_NAME, ID, PASSWORD, SUPERUSER};
use crate::config::{AnonymizeConfig, ExposeSecret};

use super::copy;
use super::error::MaskError;

/// The cost of the admin's bcrypt hash (and of real hashes with `password_hash = "bcrypt"`).
pub const BCRYPT_COST: u32 = 12;

/// The staging admin, who replaces the production admin's row.
#[derive(Debug, Clone)]
pub struct Admin {
    pub prod_email: String,
    pub email: String,
    /// bcrypt hash of `anonymize.admin_password`.
    pub hash: String,
}

impl Admin {
    /// The admin `cfg` describes. Slow (bcrypt): call it off the async runtime.
    pub fn from_config(cfg: &AnonymizeConfig) -> Result<Admin, MaskError> {
        let hash = bcrypt::hash(cfg.admin_password.expose_secret(), BCRYPT_COST)
            .map_err(|e| MaskError::AdminHash(e.to_string()))?;
        Ok(Admin {
            prod_email: cfg.prod_admin_email.clone(),
            email: cfg.admin_email.clone(),
            hash,
        })
    }

    pub(super) fn not_found(&self) -> MaskError {
        MaskError::AdminNotFound {
            email: self.prod_email.clone(),
        }
    }

    /// Exactly one of the rows read was the admin's (`ids`, their ids).
    pub(super) fn found_once(&self, ids: &[String]) -> Result<(), MaskError> {
        match ids.len() {
            1 => Ok(()),
            0 => Err(self.not_found()),
            count => Err(MaskError::AdminNotUnique { count }),
        }
    }

    /// Where the admin's columns are in the users table's COPY (`names`, its column list);
    /// `None` without email or id.
    pub(super) fn fields(&self, names: &[String]) -> Option<AdminFields> {
        let at = |column: &str| names.iter().position(|n| n == column);
        let set = [
            (EMAIL, self.email.as_str()),
            (FULL_NAME, ADMIN_NAME),
            (PASSWORD, self.hash.as_str()),
            (SUPERUSER, "t"),
            (ACTIVE, "t"),
        ]
        .into_iter()
        .filter_map(|(column, value)| Some((at(column)?, value.as_bytes().to_vec())))
        .collect();
        Some(AdminFields {
            email: at(EMAIL)?,
            id: at(ID)?,
            set,
        })
    }
}

/// The admin's fields in the users table's COPY rows.
pub(super) struct AdminFields {
    email: usize,
    id: usize,
    /// (field, value) the admin row gets.
    set: Vec<(usize, Vec<u8>)>,
}

impl AdminFields {
    /// The row's id (as COPY text) when `fields` are the admin's row.
    pub(super) fn admin_id(&self, fields: &[&[u8]], prod_email: &str) -> Option<String> {
        let email = copy::decode(fields[self.email])?;
        (email == prod_email.as_bytes()).then(|| {
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
