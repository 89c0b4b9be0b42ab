//! The money side of the controller: the Stripe API client and webhook signatures. More
//! modules will join (invoices, the webhook handler, auto-charging).
//!
//! It does not own the storage of invoices or payments ([`crate::store`]) nor configuration
//! ([`crate::config::StripeConfig`]).

pub mod signature;
pub mod stripe;
