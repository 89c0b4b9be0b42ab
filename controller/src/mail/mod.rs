//! Outgoing email: templates (built in, overridable from `EMAIL_TEMPLATES_DIR`), MIME building
//! and the SMTP or log transport, and the outbox sender that delivers what the store's outbox
//! holds.
//!
//! Callers never send mail themselves: they commit a message to the outbox
//! (`OutboxStore::queue_email`, with secrets sealed in its context) and wake the sender through
//! an [`OutboxSignal`]. This module does not decide which notices exist or when they are due.

pub mod sender;
pub mod templates;
pub mod transport;

use std::sync::Arc;

use tokio::sync::Notify;

pub use sender::OutboxSender;
pub use templates::{Rendered, TemplateError, Templates};
pub use transport::{Envelope, MailError, Transport};

/// Wakes the outbox sender after a message is queued. A wake-up is only a hint: the outbox row is the record, and the sender also polls, so a lost
/// wake-up costs at most one poll interval.
#[derive(Clone, Debug, Default)]
pub struct OutboxSignal {
    wake: Arc<Notify>,
}

impl OutboxSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the sender a message may be due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves on the next wake-up (or at once if one is pending).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}
