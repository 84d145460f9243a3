//! Why a run failed, as far as what to do about it differs: read from the error's kinds
//! ([`Cause::of`]), never from its text, and kept in the report, so the email, the chat
//! message and the operator's text each say what to do for it ([`super::outline`]).

use std::error::Error;

use serde::{Deserialize, Serialize};

use crate::error::{Guard, Refused};
use crate::mask::MaskError;
use crate::restore::RestoreError;
use crate::restore::decode::DecodeError;
use crate::restore::privileges::Forbidden;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// Columns no rule classifies (`anonymize.unclassified = "fail"`), this many (the
    /// report's `unclassified_columns` names them).
    Unclassified { columns: usize },
    /// The snapshot's bytes are bad: its checksum does not match, it does not decompress or
    /// decrypt to its end. `previous`: the snapshot before it, to choose instead.
    BadSnapshot {
        snapshot: String,
        previous: Option<String>,
    },
    /// `anonymize.prod_admin_email` matched no row where it was looked for.
    AdminNotFound { table: String, column: String },
    /// A target without its opt-in marker.
    NotOptedIn,
    /// The restore role cannot log in: either statement, run by a superuser, fixes it.
    RestoreRoleLogin { sql: Vec<String> },
    /// A statement of the dump the restore role may not run (an extension it may not create,
    /// an object only a superuser may), with the one-time step that makes it possible.
    Forbidden {
        line: u64,
        statement: String,
        why: String,
    },
}

impl Cause {
    /// The cause `err` (or an error under it) stands for, if it is one of those above.
    pub fn of(err: &(dyn Error + 'static)) -> Option<Cause> {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(cause) = Cause::at(err) {
                return Some(cause);
            }
            next = err.source();
        }
        None
    }

    /// What `err` itself says, looking through the wrappers that hide their inner error
    /// from `source()` (`#[error(transparent)]`).
    fn at(err: &(dyn Error + 'static)) -> Option<Cause> {
        if let Some(restore) = err.downcast_ref::<RestoreError>() {
            return match restore {
                RestoreError::Decode(e) => Cause::of(e),
                RestoreError::Forbidden(e) => Cause::of(e),
                RestoreError::Stage(e) => Cause::of(&**e),
                _ => None,
            };
        }
        if let Some(mask) = err.downcast_ref::<MaskError>() {
            return match mask {
                MaskError::Unclassified(unclassified) => Some(Cause::Unclassified {
                    columns: unclassified.columns().len(),
                }),
                MaskError::AdminNotFound { table, column, .. } => Some(Cause::AdminNotFound {
                    table: table.clone(),
                    column: column.clone(),
                }),
                _ => None,
            };
        }
        if let Some(decode) = err.downcast_ref::<DecodeError>() {
            return match decode {
                DecodeError::Checksum { name, .. }
                | DecodeError::Decompress { name, .. }
                | DecodeError::Tampered { name, .. } => Some(Cause::BadSnapshot {
                    snapshot: name.clone(),
                    previous: None,
                }),
                _ => None,
            };
        }
        if let Some(forbidden) = err.downcast_ref::<Forbidden>() {
            return Some(Cause::Forbidden {
                line: forbidden.line,
                statement: forbidden.statement.clone(),
                why: forbidden.why.clone(),
            });
        }
        err.downcast_ref::<Refused>()
            .and_then(|refused| match &refused.guard {
                Guard::NotOptedIn => Some(Cause::NotOptedIn),
                Guard::RestoreRoleLogin { sql } => {
                    Some(Cause::RestoreRoleLogin { sql: sql.clone() })
                }
                Guard::TargetIsSource => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Unclassified;
    use crate::media::MediaError;
    use crate::snapshot::{ChecksumKind, Compression};

    fn restore(err: impl Into<RestoreError>) -> RestoreError {
        err.into()
    }

    #[test]
    fn causes_are_read_from_the_errors_kinds_through_their_wrappers() {
        let mut columns = Unclassified::default();
        columns.push("public.member".into(), "referral_note (text)".into());
        let unclassified = RestoreError::Stage(Box::new(MaskError::Unclassified(columns)));
        assert_eq!(
            Cause::of(&unclassified),
            Some(Cause::Unclassified { columns: 1 })
        );
        let admin = RestoreError::Stage(Box::new(MaskError::AdminNotFound {
            table: "public.member".into(),
            column: "email".into(),
            email: "boss@example.com".into(),
        }));
        assert_eq!(
            Cause::of(&admin),
            Some(Cause::AdminNotFound {
                table: "public.member".into(),
                column: "email".into()
            })
        );
        let bad = |e: DecodeError| Cause::of(&restore(e));
        let checksum = DecodeError::Checksum {
            name: "s.sql.zst".into(),
            kind: ChecksumKind::Md5,
            expected: "a".into(),
            actual: "b".into(),
        };
        let truncated = DecodeError::Decompress {
            name: "s.sql.zst".into(),
            compression: Compression::Zstd,
            message: "incomplete frame".into(),
        };
        for e in [checksum, truncated] {
            assert_eq!(
                bad(e),
                Some(Cause::BadSnapshot {
                    snapshot: "s.sql.zst".into(),
                    previous: None
                })
            );
        }
        assert_eq!(bad(DecodeError::NoSecret { name: "s".into() }), None);
        let forbidden = Forbidden {
            line: 7,
            statement: "CREATE EXTENSION postgis".into(),
            why: "install it".into(),
        };
        assert!(matches!(
            Cause::of(&restore(forbidden)),
            Some(Cause::Forbidden { line: 7, .. })
        ));
        let marker = MediaError::Refused(Refused::new(Guard::NotOptedIn, "no marker"));
        assert_eq!(Cause::of(&marker), Some(Cause::NotOptedIn));
        let sql = vec!["CREATE ROLE r;".to_owned()];
        let login = Refused::new(Guard::RestoreRoleLogin { sql: sql.clone() }, "no login");
        assert_eq!(Cause::of(&login), Some(Cause::RestoreRoleLogin { sql }));
        let production = Refused::new(Guard::TargetIsSource, "production");
        assert_eq!(Cause::of(&production), None);
        assert_eq!(Cause::of(&RestoreError::Syntax("dump line 1".into())), None);
    }
}
