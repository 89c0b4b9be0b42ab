//! The provisioning pipeline: what a claimed task does. A new service is placed on the
//! least-loaded eligible server, then six steps run, each a typed command to the server's agent
//! (the welcome email is the controller's own, committed to the outbox); a lifecycle task sends
//! one command. Claiming, leases, retries and wake-ups are the job runner's (`crate::jobs`).

pub mod credentials;
mod pipeline;
pub mod placement;
mod step_data;

pub(crate) use pipeline::Failure;
pub use pipeline::{Finished, Provisioner};
