//! The outbox sender: what one attempt at a claimed message does (open its sealed context,
//! render, draw the attachments it asks for, send). The job runner (`crate::jobs`, the `email`
//! job) claims due messages, retries and records the outcome.
//!
//! Delivery is exactly once in normal operation and at least once across a crash:
//! * a row is claimed with a lease (`sending`, `lease_expires_at`), so two senders (two
//!   replicas) never hold it at once, and every later write is fenced by that lease;
//! * a message is marked `sent` right after the SMTP server accepted it, by the same sender
//!   (the runner retries that write a few times);
//! * the window: should the process die, or the database be unreachable for the whole retry of
//!   the `sent` write, between the server's acceptance and that write, the lease expires and
//!   the message goes out again. Its `Message-ID` is derived from the outbox key, so the copy
//!   is recognisable as one.
//!
//! Failures are retried with exponential backoff and jitter (base `EMAIL_RETRY_BASE_MS`,
//! doubled per attempt, capped at 10 minutes) for as long as it takes: an SMTP outage delays
//! mail but never drops it. From attempt `LOUD_AFTER_ATTEMPTS` on, each failure is logged at
//! `error`, and the row keeps the last error. Only a message that can never be sent (an
//! unparsable recipient) is marked `failed`, also logged at `error`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::templates::Templates;
use super::transport::{Attachment, Envelope, MailError, SMTP_TIMEOUT, Transport};
use crate::billing::pdf::{InvoiceDocument, PdfError, render_invoice_pdf};
use crate::config::Config;
use crate::crypto::Cipher;
use crate::store::DynStore;
use crate::store::outbox::OutboxEmail;

/// A claimed message belongs to its sender this long; well above `SMTP_TIMEOUT`, so a slow but
/// live send is never taken over.
pub const LEASE: Duration = Duration::from_secs(SMTP_TIMEOUT.as_secs() * 4);
/// The longest retry delay.
pub const MAX_BACKOFF_MS: u64 = 10 * 60 * 1000;
/// From this attempt on, failures are logged at `error`: someone should look.
pub const LOUD_AFTER_ATTEMPTS: i32 = 10;

/// Sends what the outbox holds. Cheap to clone.
#[derive(Clone)]
pub struct OutboxSender {
    store: DynStore,
    cipher: Arc<Cipher>,
    templates: Arc<Templates>,
    transport: Transport,
    envelope: Envelope,
    /// Values every template may use, unless the message's own context sets them.
    defaults: Map<String, Value>,
    retry_base_ms: u64,
}

impl std::fmt::Debug for OutboxSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSender")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl OutboxSender {
    /// Checks the mail settings (addresses, SMTP host) and builds the sender; it connects to
    /// nothing until a message is due.
    pub fn from_config(
        store: DynStore,
        cipher: Arc<Cipher>,
        config: &Config,
    ) -> Result<Self, MailError> {
        let mut defaults = Map::new();
        defaults.insert("company_name".into(), company_name(config).into());
        defaults.insert(
            "support_email".into(),
            config
                .support_email
                .clone()
                .map_or(Value::Null, Value::from),
        );
        Ok(Self {
            store,
            cipher,
            templates: Arc::new(Templates::new(config.email_templates_dir.clone())),
            transport: Transport::from_config(config)?,
            envelope: Envelope::from_config(config)?,
            defaults,
            retry_base_ms: config.email_retry_base_ms.max(1),
        })
    }

    pub(crate) fn store(&self) -> &DynStore {
        &self.store
    }

    pub(crate) fn retry_base_ms(&self) -> u64 {
        self.retry_base_ms
    }

    /// Opens the sealed context, renders, builds the MIME message and hands it over.
    pub(crate) async fn deliver(&self, email: &OutboxEmail) -> Result<(), MailError> {
        let opened = self
            .cipher
            .open_string(&email.body_encrypted)
            .map_err(|e| MailError::Transient(format!("sealed body: {e}")))?;
        let body: Value = serde_json::from_str(&opened)
            .map_err(|e| MailError::Transient(format!("sealed body is not JSON: {e}")))?;
        let mut context = open_sealed_fields(body, &self.cipher)
            .map_err(|e| MailError::Transient(format!("sealed field: {e}")))?;
        if let Value::Object(map) = &mut context {
            for (key, value) in &self.defaults {
                if map.get(key).is_none_or(Value::is_null) {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
        let rendered = self
            .templates
            .render(&email.template, &context)
            .map_err(|e| MailError::Transient(e.to_string()))?;
        let attachments = attachments_for(&context)?;
        let message = self.envelope.build(
            &email.to_address,
            &email.dedupe_key,
            &rendered,
            &attachments,
        )?;
        tracing::debug!(email_id = email.id, to = %email.to_address, "sending email");
        self.transport
            .deliver(message, email.id, &email.template)
            .await
    }
}

/// Key of the context that asks for the invoice PDF to be attached.
pub const INVOICE_DOCUMENT: &str = "invoice_document";

/// The files a message's context asks for: the invoice PDF when it holds an `invoice_document`
/// (an [`InvoiceDocument`] as JSON), drawn now so the outbox stores data, not documents.
///
/// A document that does not parse, or names no valid currency, can never be drawn: the message
/// fails for good. A font failure is this build's defect, so the message waits for a fixed one.
pub fn attachments_for(context: &Value) -> Result<Vec<Attachment>, MailError> {
    let Some(raw) = context.get(INVOICE_DOCUMENT).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let document = InvoiceDocument::deserialize(raw)
        .map_err(|e| MailError::Permanent(format!("{INVOICE_DOCUMENT}: {e}")))?;
    let body = render_invoice_pdf(&document).map_err(|e| match e {
        PdfError::Currency { .. } => MailError::Permanent(format!("{INVOICE_DOCUMENT}: {e}")),
        PdfError::Font(_) => MailError::Transient(format!("{INVOICE_DOCUMENT}: {e}")),
    })?;
    Ok(vec![Attachment {
        filename: document.file_name(),
        content_type: "application/pdf".to_owned(),
        body,
    }])
}

fn company_name(config: &Config) -> String {
    config
        .company_name
        .clone()
        .or_else(|| config.company_domain.clone())
        .unwrap_or_else(|| "Your hosting provider".to_owned())
}

/// Replaces every `NAME_sealed` string (at any depth) by `NAME` holding the opened value: the
/// queued context keeps secrets sealed a second time, so the outbox body reveals nothing even
/// to someone holding an old key, and templates see plain names.
pub fn open_sealed_fields(
    value: Value,
    cipher: &Cipher,
) -> Result<Value, crate::crypto::CryptoError> {
    Ok(match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, value) in map {
                match (key.strip_suffix("_sealed"), value) {
                    (Some(name), Value::String(sealed)) => {
                        out.insert(name.to_owned(), Value::String(cipher.open_string(&sealed)?));
                    }
                    (Some(name), Value::Null) => {
                        out.insert(name.to_owned(), Value::Null);
                    }
                    (_, value) => {
                        out.insert(key, open_sealed_fields(value, cipher)?);
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| open_sealed_fields(v, cipher))
                .collect::<Result<_, _>>()?,
        ),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncryptionKeys;
    use serde_json::json;

    #[test]
    fn sealed_fields_open_at_any_depth_under_their_plain_names() {
        let cipher = Cipher::new(&EncryptionKeys {
            current: [9; 32],
            previous: vec![],
        });
        let body = json!({
            "username": "u",
            "password_sealed": cipher.seal_str("p1").unwrap(),
            "mailbox": {"address": "a@b.c", "password_sealed": cipher.seal_str("p2").unwrap()},
            "database": null,
            "list": [{"x_sealed": null}],
        });
        let opened = open_sealed_fields(body, &cipher).unwrap();
        assert_eq!(
            opened,
            json!({
                "username": "u",
                "password": "p1",
                "mailbox": {"address": "a@b.c", "password": "p2"},
                "database": null,
                "list": [{"x": null}],
            })
        );
    }

    fn invoice_document() -> Value {
        json!({
            "number": "INV-2026-000042",
            "status": "unpaid",
            "issuedOn": "2026-03-01",
            "dueOn": "2026-03-15",
            "periodStart": null,
            "periodEnd": null,
            "currency": "EUR",
            "companyName": "Acme Hosting",
            "companyAddress": null,
            "companyEmail": null,
            "customerName": "Zoë Müller",
            "customerEmail": "zoe@example.org",
            "lines": [{"description": "Hosting", "amount": 1000}],
            "subtotal": 1000,
            "tax": 0,
            "taxLabel": null,
            "total": 1000,
            "amountPaid": 0,
            "amountDue": 1000,
        })
    }

    #[test]
    fn a_context_without_a_document_has_no_attachments() {
        assert!(attachments_for(&json!({"x": 1})).unwrap().is_empty());
        assert!(
            attachments_for(&json!({"invoice_document": null}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_invoice_document_becomes_a_pdf_named_after_its_number() {
        let files = attachments_for(&json!({"invoice_document": invoice_document()})).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].filename, "INV-2026-000042.pdf");
        assert_eq!(files[0].content_type, "application/pdf");
        assert!(files[0].body.starts_with(b"%PDF-"));
        let debug = format!("{:?}", files[0]);
        assert!(
            debug.contains("INV-2026-000042.pdf") && !debug.contains("PDF-"),
            "{debug}"
        );
    }

    #[test]
    fn a_document_that_cannot_be_drawn_fails_the_message_for_good() {
        let mut missing = invoice_document();
        missing.as_object_mut().unwrap().remove("total");
        let mut currency = invoice_document();
        currency["currency"] = json!("EURO");
        for doc in [missing, currency, json!("INV-1")] {
            let err = attachments_for(&json!({"invoice_document": doc})).unwrap_err();
            assert!(matches!(err, MailError::Permanent(_)), "{err}");
            assert!(err.to_string().contains("invoice_document"), "{err}");
        }
    }

    #[test]
    fn a_message_with_an_attachment_is_mixed_around_the_alternative_parts() {
        let envelope = Envelope {
            from: "Acme <no-reply@acme.example>".parse().unwrap(),
            reply_to: None,
            domain: "acme.example".into(),
        };
        let rendered = super::super::templates::Rendered {
            subject: "Invoice".into(),
            text: "plain".into(),
            html: "<p>html</p>".into(),
        };
        let files = attachments_for(&json!({"invoice_document": invoice_document()})).unwrap();
        let raw = envelope
            .build("zoe@example.org", "invoice:42", &rendered, &files)
            .unwrap()
            .formatted();
        let mail = mailparse::parse_mail(&raw).unwrap();
        assert_eq!(mail.ctype.mimetype, "multipart/mixed");
        assert_eq!(mail.subparts.len(), 2);
        assert_eq!(mail.subparts[0].ctype.mimetype, "multipart/alternative");
        let pdf = &mail.subparts[1];
        assert_eq!(pdf.ctype.mimetype, "application/pdf");
        assert_eq!(pdf.get_body_raw().unwrap(), files[0].body);
        let plain = envelope
            .build("zoe@example.org", "invoice:42", &rendered, &[])
            .unwrap()
            .formatted();
        let mail = mailparse::parse_mail(&plain).unwrap();
        assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    }
}
