//! The shared test harness: fresh databases on the machine's real PostgreSQL, and helpers for
//! end-to-end tests that start real mpanel processes and the Stripe fakes. A test that needs a service and cannot
//! reach it fails with a message saying which service and how to start it; nothing is skipped.

pub mod browser;
pub mod cluster;
pub mod databases;
pub mod fastclock;
pub mod pebble;
pub mod ports;
pub mod powerdns;
pub mod process;
pub mod stripe;
