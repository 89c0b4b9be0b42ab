//! The outbox sender: what one attempt at a claimed message does (open its sealed context,
//! render, send). The job runner (`crate::jobs`, the `email` job) claims due messages, retries
//! and records the outcome.
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

use serde_json::{Map, Value};

use super::templates::Templates;
use super::transport::{Envelope, MailError, SMTP_TIMEOUT, Transport};
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
        let message = self
            .envelope
            .build(&email.to_address, &email.dedupe_key, &rendered)?;
        tracing::debug!(email_id = email.id, to = %email.to_address, "sending email");
        self.transport
            .deliver(message, email.id, &email.template)
            .await
    }
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
}
