//! SQL text we write ourselves, and what the server says back, kept in its parts.

use std::fmt;

/// Identifiers in the SQL we write are quoted the way table names are.
pub use crate::table::quote_ident;

/// What PostgreSQL said about a failed statement, in its parts: DETAIL and CONTEXT can quote
/// rows (a duplicated key, the COPY line that failed), so [`ServerMessage::without_values`]
/// leaves them out where production values must not go (email, chat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    /// `SEVERITY: message`, or the client's own error when the server said nothing.
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
}

impl From<&tokio_postgres::Error> for ServerMessage {
    fn from(err: &tokio_postgres::Error) -> ServerMessage {
        match err.as_db_error() {
            Some(db) => ServerMessage {
                message: format!("{}: {}", db.severity(), db.message()),
                detail: db.detail().map(str::to_owned),
                hint: db.hint().map(str::to_owned),
                context: db.where_().map(str::to_owned),
            },
            None => ServerMessage::plain(err.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for ServerMessage {
    fn from(err: tokio_postgres::Error) -> ServerMessage {
        ServerMessage::from(&err)
    }
}

impl ServerMessage {
    /// A message of our own about the server's state (nothing to quote).
    pub fn plain(message: impl Into<String>) -> ServerMessage {
        ServerMessage {
            message: message.into(),
            detail: None,
            hint: None,
            context: None,
        }
    }

    /// The message alone: no part that can quote a row.
    pub fn without_values(&self) -> &str {
        &self.message
    }
}

/// The whole message with its detail, hint and context, for the operator.
impl fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for (label, part) in [
            ("DETAIL", &self.detail),
            ("HINT", &self.hint),
            ("CONTEXT", &self.context),
        ] {
            if let Some(part) = part {
                write!(f, "; {label}: {part}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ServerMessage {}

/// `err` and its causes joined by ": " (as `{:#}` prints them), with every server message
/// [without its values](ServerMessage::without_values).
pub fn chain_without_values(err: &(dyn std::error::Error + 'static)) -> String {
    crate::error::chain_with(err, |e| match e.downcast_ref::<ServerMessage>() {
        Some(server) => server.without_values().to_owned(),
        None => e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dump line 7")]
    struct AtLine(#[source] ServerMessage);

    #[test]
    fn values_stay_out_of_the_shown_chain() {
        let server = ServerMessage {
            message: "ERROR: could not create unique index \"user_email_key\"".into(),
            detail: Some("Key (email)=(jane@example.org) is duplicated.".into()),
            hint: None,
            context: Some("COPY user, line 3".into()),
        };
        let err = AtLine(server);
        assert_eq!(
            chain_without_values(&err),
            "dump line 7: ERROR: could not create unique index \"user_email_key\""
        );
        assert!(err.0.to_string().ends_with(
            "; DETAIL: Key (email)=(jane@example.org) is duplicated.; CONTEXT: COPY user, line 3"
        ));
    }
}
