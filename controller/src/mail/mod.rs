//! Outgoing email: templates (built in, overridable from `EMAIL_TEMPLATES_DIR`), MIME building
//! and the SMTP or log transport, and the outbox sender that delivers what the store's outbox
//! holds, with the invoice PDF attached when the message's context carries an
//! `invoice_document`.
//!
//! Callers never send mail themselves: they commit a message to the outbox
//! (`OutboxStore::queue_email`, with secrets sealed in its context) and wake the sender with
//! `Dispatcher::wake_queue(&lease_queue::EMAIL)`. This module does not decide which notices exist
//! or when they are due.

pub mod sender;
pub mod templates;
pub mod transport;

pub use sender::OutboxSender;
pub use templates::{Rendered, TemplateError, Templates};
pub use transport::{Attachment, Envelope, MailError, Transport};
