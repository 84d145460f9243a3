//! The summary email on the wire: one multipart (text and HTML) message through lettre's SMTP
//! transport.

use crate::config::ExposeSecret;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Summary;
use crate::config::EmailConfig;

/// Connecting, and each SMTP command, give up after this long.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify.smtp_url: {0}")]
    Url(lettre::transport::smtp::Error),
    #[error("{key}: {address:?} is not a usable address: {message}")]
    Address {
        key: &'static str,
        address: String,
        message: String,
    },
    #[error("building the email: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("sending through notify.smtp_url: {0}")]
    Send(lettre::transport::smtp::Error),
}

/// Sends `summary` to `notify.to`: plain SMTP, STARTTLS (`smtp://...?tls=required`) or
/// implicit TLS (`smtps://`), as the URL says.
pub async fn send(notify: EmailConfig<'_>, summary: &Summary) -> Result<(), NotifyError> {
    let mailbox = |key: &'static str, address: &str| {
        address
            .parse::<Mailbox>()
            .map_err(|e| NotifyError::Address {
                key,
                address: address.to_owned(),
                message: e.to_string(),
            })
    };
    let mut message = Message::builder()
        .from(mailbox("notify.from", notify.from)?)
        .subject(&summary.subject);
    for to in notify.to {
        message = message.to(mailbox("notify.to", to)?);
    }
    let message = message.multipart(MultiPart::alternative_plain_html(
        summary.text.clone(),
        summary.html.clone(),
    ))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(notify.smtp_url.expose_secret())
        .map_err(NotifyError::Url)?
        .timeout(Some(SMTP_TIMEOUT))
        .build();
    transport.send(message).await.map_err(NotifyError::Send)?;
    Ok(())
}
