//! The outbox sender: a background loop that claims due messages, opens their sealed context,
//! renders and sends them, and records the outcome.
//!
//! Delivery is exactly once in normal operation and at least once across a crash:
//! * a row is claimed with a lease (`sending`, `lease_expires_at`), so two senders (two
//!   replicas) never hold it at once, and every later write is fenced by that lease;
//! * a message is marked `sent` right after the SMTP server accepted it, by the same sender;
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
use tokio_util::sync::CancellationToken;

use super::OutboxSignal;
use super::templates::Templates;
use super::transport::{Envelope, MailError, SMTP_TIMEOUT, Transport};
use crate::config::Config;
use crate::crypto::Cipher;
use crate::store::outbox::OutboxEmail;
use crate::store::{DynStore, now_ms};

/// How often an idle sender looks for due messages even without a wake-up (another replica's
/// messages, retries falling due).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// A claimed message belongs to its sender this long; well above `SMTP_TIMEOUT`, so a slow but
/// live send is never taken over.
const LEASE: Duration = Duration::from_secs(SMTP_TIMEOUT.as_secs() * 4);
/// The longest retry delay.
const MAX_BACKOFF_MS: u64 = 10 * 60 * 1000;
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
    signal: OutboxSignal,
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
    /// nothing until a message is due. `signal` is the handle queuers wake it through.
    pub fn from_config(
        store: DynStore,
        cipher: Arc<Cipher>,
        config: &Config,
        signal: OutboxSignal,
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
            signal,
        })
    }

    /// Runs the loop until `shutdown`; a send in progress finishes first (bounded by the SMTP
    /// timeout).
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run(shutdown).await })
    }

    async fn run(self, shutdown: CancellationToken) {
        let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        while !shutdown.is_cancelled() {
            match self.store.claim_next_email(lease_ms).await {
                Ok(Some(email)) => self.send(email).await,
                Ok(None) => self.idle(&shutdown).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim an email; retrying shortly");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(POLL_INTERVAL) => {}
                    }
                }
            }
        }
    }

    /// Sleeps until the next message is due, a wake-up, the poll interval or shutdown.
    async fn idle(&self, shutdown: &CancellationToken) {
        let mut sleep = POLL_INTERVAL;
        if let Ok(Some(due)) = self.store.next_email_due_at().await {
            let until = u64::try_from(due - now_ms()).unwrap_or(0);
            sleep = sleep.min(Duration::from_millis(until.max(5)));
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.signal.woken() => {}
            () = tokio::time::sleep(sleep) => {}
        }
    }

    /// One attempt at one claimed message, and its outcome recorded under the claim's lease.
    async fn send(&self, email: OutboxEmail) {
        // The claim always writes a lease; a row without one cannot be ours.
        let Some(lease) = email.lease_expires_at else {
            return;
        };
        let outcome = self.deliver(&email).await;
        let id = email.id;
        let template = email.template.as_str();
        let attempt = email.attempts;
        let recorded = match outcome {
            Ok(()) => {
                let r = self.record_sent(id, lease).await;
                if let Ok(true) = r {
                    tracing::info!(email_id = id, template, attempt, "email sent");
                }
                r
            }
            Err(MailError::Permanent(error)) => {
                tracing::error!(email_id = id, template, attempt, error = %error, "email can never be sent; marked failed");
                self.store.fail_email(id, lease, &error).await
            }
            Err(MailError::Transient(error)) => {
                let delay = self.backoff_ms(attempt);
                if attempt >= LOUD_AFTER_ATTEMPTS {
                    tracing::error!(email_id = id, template, attempt, retry_in_ms = delay, error = %error, "email still not sent; will keep retrying");
                } else {
                    tracing::warn!(email_id = id, template, attempt, retry_in_ms = delay, error = %error, "email not sent; will retry");
                }
                let due = now_ms() + i64::try_from(delay).unwrap_or(i64::MAX / 2);
                self.store.retry_email(id, lease, &error, due).await
            }
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    email_id = id,
                    "email lease lost before its outcome was written; another sender has it"
                );
            }
            Err(e) => {
                tracing::warn!(email_id = id, error = %e, "could not record the email's outcome; it is retried after its lease");
            }
        }
    }

    /// Opens the sealed context, renders, builds the MIME message and hands it over.
    async fn deliver(&self, email: &OutboxEmail) -> Result<(), MailError> {
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

    /// Writes `sent`, retrying briefly: failing here is the one way a message goes out twice.
    async fn record_sent(&self, id: i64, lease: i64) -> crate::store::StoreResult<bool> {
        let mut tries = 0;
        loop {
            match self.store.complete_email(id, lease).await {
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(email_id = id, error = %e, "cannot mark the email sent yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                other => return other,
            }
        }
    }

    /// base × 2^(attempt−1) with ±25 % jitter, capped at 10 minutes.
    fn backoff_ms(&self, attempts: i32) -> u64 {
        backoff_ms(self.retry_base_ms, attempts, jitter())
    }
}

/// The retry delay for `attempts` begun so far, `jitter` in [0.75, 1.25].
pub fn backoff_ms(base_ms: u64, attempts: i32, jitter: f64) -> u64 {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
    let delay = base_ms.saturating_mul(1u64 << exp).min(MAX_BACKOFF_MS);
    ((delay as f64 * jitter) as u64).min(MAX_BACKOFF_MS)
}

fn jitter() -> f64 {
    let mut byte = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    0.75 + f64::from(byte[0]) / 255.0 * 0.5
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
    fn backoff_doubles_from_the_base_and_stops_at_ten_minutes() {
        assert_eq!(backoff_ms(2000, 1, 1.0), 2000);
        assert_eq!(backoff_ms(2000, 2, 1.0), 4000);
        assert_eq!(backoff_ms(2000, 5, 1.0), 32_000);
        assert_eq!(backoff_ms(2000, 12, 1.0), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(2000, 1000, 1.25), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(2000, 1, 0.75), 1500);
        assert_eq!(backoff_ms(2000, 0, 1.0), 2000);
    }

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
