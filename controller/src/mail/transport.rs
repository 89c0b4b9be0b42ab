//! Turning a rendered message into MIME and handing it to the configured transport: SMTP
//! (`SMTP_TLS` none, STARTTLS or implicit TLS) or, with `EMAIL_PROVIDER=log`, the log.
//!
//! The log transport writes only that a message was delivered (id, template), never its body
//! or subject: welcome emails carry credentials.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment as MimeAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use super::templates::Rendered;
use crate::config::{Config, EmailProvider, SmtpTls};

/// How long one SMTP exchange may take. Shorter than the outbox lease, so a send that hangs is
/// abandoned (and retried) before another sender could claim the same row.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Not worth retrying: the message itself is wrong (an unparsable address).
    #[error("{0}")]
    Permanent(String),
    /// The server or the network; try again later.
    #[error("{0}")]
    Transient(String),
}

/// Where messages go.
#[derive(Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Smtp(_) => f.write_str("Transport::Smtp"),
            Transport::Log => f.write_str("Transport::Log"),
        }
    }
}

impl Transport {
    /// The transport `EMAIL_PROVIDER` and `SMTP_*` ask for. Nothing connects yet: an SMTP
    /// server that is down only delays mail.
    pub fn from_config(config: &Config) -> Result<Transport, MailError> {
        if config.email_provider == EmailProvider::Log {
            return Ok(Transport::Log);
        }
        let smtp = &config.smtp;
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(|e| MailError::Permanent(format!("SMTP_HOST: {e}")))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| MailError::Permanent(format!("SMTP_HOST: {e}")))?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(SMTP_TIMEOUT));
        if let Some(user) = &smtp.username {
            let password = smtp
                .password
                .as_ref()
                .map(|p| p.expose().clone())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Transport::Smtp(builder.build()))
    }

    /// Delivers one message. `id` and `template` are only for the log line.
    pub async fn deliver(
        &self,
        message: Message,
        id: i64,
        template: &str,
    ) -> Result<(), MailError> {
        match self {
            Transport::Log => {
                tracing::info!(
                    email_id = id,
                    template,
                    "email delivered to the log (body withheld: it may carry credentials)"
                );
                Ok(())
            }
            // Even a 5xx stays retryable: a wrong SMTP password or a relay policy is the
            // operator's to fix, and the message must still go out once they have.
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Transient(format!("smtp: {e}"))),
        }
    }
}

/// The headers every message shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// Right-hand side of generated `Message-ID`s.
    pub domain: String,
}

impl Envelope {
    /// From: `EMAIL_FROM`, else `no-reply@COMPANY_DOMAIN` (or `no-reply@localhost`), named
    /// `COMPANY_NAME`; Reply-To: `SUPPORT_EMAIL`. A malformed value names its variable.
    pub fn from_config(config: &Config) -> Result<Envelope, MailError> {
        let domain = config
            .company_domain
            .clone()
            .unwrap_or_else(|| "localhost".to_owned());
        let from = match &config.email_from {
            Some(raw) => raw
                .parse::<Mailbox>()
                .map_err(|e| MailError::Permanent(format!("EMAIL_FROM: '{raw}': {e}")))?,
            None => {
                let address = format!("no-reply@{domain}");
                let address = address.parse().map_err(|e| {
                    MailError::Permanent(format!("COMPANY_DOMAIN: '{address}': {e}"))
                })?;
                Mailbox::new(config.company_name.clone(), address)
            }
        };
        let reply_to = match &config.support_email {
            Some(raw) => Some(
                raw.parse::<Mailbox>()
                    .map_err(|e| MailError::Permanent(format!("SUPPORT_EMAIL: '{raw}': {e}")))?,
            ),
            None => None,
        };
        Ok(Envelope {
            from,
            reply_to,
            domain,
        })
    }

    /// A multipart/alternative message (text first, HTML preferred), wrapped in
    /// multipart/mixed with the attachments when there are any. The `Message-ID` is derived
    /// from the outbox key, so should a crash make us send a message twice, mail clients can
    /// recognise the copy.
    pub fn build(
        &self,
        to: &str,
        dedupe_key: &str,
        rendered: &Rendered,
        attachments: &[Attachment],
    ) -> Result<Message, MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| MailError::Permanent(format!("recipient address: {e}")))?;
        let id_left: String = dedupe_key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '.'
                }
            })
            .collect();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject.clone())
            .message_id(Some(format!(
                "<{}@{}>",
                id_left.trim_matches('.'),
                self.domain
            )));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let alternative = MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(rendered.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(rendered.html.clone()),
            );
        let body = if attachments.is_empty() {
            alternative
        } else {
            let mut mixed = MultiPart::mixed().multipart(alternative);
            for attachment in attachments {
                let content_type = ContentType::parse(&attachment.content_type).map_err(|e| {
                    MailError::Permanent(format!(
                        "attachment '{}': content type '{}': {e}",
                        attachment.filename, attachment.content_type
                    ))
                })?;
                mixed = mixed.singlepart(
                    MimeAttachment::new(attachment.filename.clone())
                        .body(attachment.body.clone(), content_type),
                );
            }
            mixed
        };
        builder
            .multipart(body)
            .map_err(|e| MailError::Permanent(format!("building the message: {e}")))
    }
}

/// A file sent with a message, such as an invoice PDF.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name mail clients offer to save it under.
    pub filename: String,
    /// `application/pdf`
    pub content_type: String,
    pub body: Vec<u8>,
}

// The body is a customer's document: name it, never print it.
impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("len", &self.body.len())
            .finish()
    }
}
