//! Commands to agents: what `Fleet::send_command` and `Fleet::request` return, and how a
//! failure should be treated. Offline, timeout and a session lost mid-command are retryable by
//! nature; an agent-reported failure carries the agent's own classification, and a wait (DNS not
//! pointing at the server yet) is neither a success nor a failure.

use mpanel_common::command::Waiting;
pub use mpanel_common::command::{ErrorClass, Reply};
use mpanel_common::ids::ServerId;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    #[error("the agent of server {0} is not connected")]
    Offline(ServerId),
    #[error("the agent of server {0} did not answer before the deadline")]
    Timeout(ServerId),
    #[error("the session of server {0} closed before the agent answered")]
    Disconnected(ServerId),
    #[error("the agent reported a {class} failure: {message}")]
    Failed { class: ErrorClass, message: String },
    /// The agent cannot finish yet and nothing is wrong; ask again later.
    #[error("{0}")]
    Waiting(Waiting),
    /// The agent's result could not be read, or answers another command: the two sides
    /// disagree about the protocol, which retrying does not fix.
    #[error("the agent of server {server} sent an unusable result: {problem}")]
    BadReply { server: ServerId, problem: String },
}

impl CommandError {
    /// Whether retrying later may succeed. The provisioning pipeline retries these with
    /// backoff and the same idempotency key.
    pub fn is_retryable(&self) -> bool {
        match self {
            CommandError::Offline(_)
            | CommandError::Timeout(_)
            | CommandError::Disconnected(_)
            | CommandError::Waiting(_) => true,
            CommandError::Failed { class, .. } => class.is_retryable(),
            CommandError::BadReply { .. } => false,
        }
    }
}
