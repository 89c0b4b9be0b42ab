//! The mpanel controller: billing, the durable provisioning queue, cron, the admin API and the
//! agents' certificate authority. The binary in `main.rs` only parses the command line and calls
//! into `commands`.

pub mod api;
pub mod app;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod dns;
pub mod drift;
pub mod fleet;
pub mod mail;
pub mod provisioning;
pub mod store;
pub mod telemetry;
