//! The provisioning pipeline: workers claim tasks from the durable queue with a lease, place
//! new services on the least-loaded eligible server, and run the steps, each as a command to the
//! server's agent (the welcome email is the controller's own).

pub mod credentials;
pub mod placement;
mod step_data;
mod worker;

pub(crate) use worker::Failure;

pub use crate::jobs::Dispatcher;
pub use worker::Provisioner;
