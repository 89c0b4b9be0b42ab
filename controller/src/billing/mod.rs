//! The money side: what customers are billed and how it reaches them. `pdf` turns an invoice,
//! already computed (lines, tax, totals), into the PDF attached to billing emails.
//!
//! The emails themselves are templates in `crate::mail` (`invoice`, `payment_receipt`,
//! `payment_failed`, …), queued through the outbox like every other message; the outbox sender
//! renders the PDF at send time from the `invoice_document` its context holds.

pub mod pdf;

pub use pdf::{InvoiceDocument, InvoiceLine, PdfError, render_invoice_pdf};
