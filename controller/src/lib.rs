//! The mpanel controller: the admin API, the durable provisioning queue, the agents'
//! certificate authority and sessions, the email outbox, billing (Stripe Checkout, signed
//! events, invoices and their PDFs, payments, renewal charges) and scheduled jobs (`cron`).
//! The binary in `main.rs` only parses the command line and calls into `commands`.

pub mod api;
pub mod app;
pub mod backups;
pub mod billing;
pub mod commands;
pub mod config;
pub mod cron;
pub mod crypto;
pub mod dns;
pub mod drift;
pub mod fleet;
pub mod jobs;
pub mod lifecycle;
pub mod mail;
pub mod provisioning;
pub mod request_id;
pub mod ssl;
pub mod store;
pub mod telemetry;
pub mod usage;
pub mod web;
