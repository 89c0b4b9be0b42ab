//! What the agent does with a controller command. The session turns each wire `Command` into a
//! typed [`Command`] (`mpanel_proto::convert`) and calls a [`CommandHandler`] with it,
//! concurrently; the panel commands plug in behind the same trait. [`BuiltinHandler`] answers the
//! diagnostic `ping` and `echo` (tests, the benchmark, `POST /api/servers/:id/commands`) and
//! delegates everything else.

use std::sync::Arc;

use async_trait::async_trait;
pub use mpanel_common::command::{Command, ErrorClass, Failure, Outcome, Reply, Waiting};
use mpanel_common::command::{Echo, Pong};

#[async_trait]
pub trait CommandHandler: Send + Sync {
    /// Runs one command. The idempotency key is the same on every retry of the same step, so a
    /// handler can recognise work it already did.
    async fn handle(&self, command: Command, idempotency_key: &str) -> Outcome;
}

/// `ping` and `echo`, then the next handler (if any).
#[derive(Clone, Default)]
pub struct BuiltinHandler {
    next: Option<Arc<dyn CommandHandler>>,
}

impl std::fmt::Debug for BuiltinHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BuiltinHandler(next: {})", self.next.is_some())
    }
}

impl BuiltinHandler {
    pub fn with_next(next: Arc<dyn CommandHandler>) -> Self {
        Self { next: Some(next) }
    }
}

/// The answer to a command no handler of this agent takes (a panel command on an agent
/// without a panel): permanent, since asking again cannot change the agent's configuration.
pub fn not_handled(command: &Command) -> Outcome {
    Outcome::Failed(Failure::permanent(format!(
        "this agent cannot run '{}': it has no handler for it (is a [panel] configured?)",
        command.name()
    )))
}

#[async_trait]
impl CommandHandler for BuiltinHandler {
    async fn handle(&self, command: Command, idempotency_key: &str) -> Outcome {
        match command {
            Command::Ping => Outcome::Done(Reply::Pong(Pong {
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            })),
            Command::Echo(Echo { payload }) => Outcome::Done(Reply::Echo(Echo { payload })),
            other => match &self.next {
                Some(next) => next.handle(other, idempotency_key).await,
                None => not_handled(&other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpanel_common::command::TerminateAccount;

    #[tokio::test]
    async fn builtins_answer_and_commands_without_a_handler_fail_permanently() {
        let h = BuiltinHandler::default();
        match h.handle(Command::Ping, "k").await {
            Outcome::Done(Reply::Pong(p)) => assert_eq!(p.agent_version, env!("CARGO_PKG_VERSION")),
            other => panic!("{other:?}"),
        }
        let echo = Echo {
            payload: b"{\"a\":1}".to_vec(),
        };
        assert_eq!(
            h.handle(Command::Echo(echo.clone()), "k").await,
            Outcome::Done(Reply::Echo(echo))
        );
        let terminate = Command::Terminate(TerminateAccount {
            username: "shop".into(),
        });
        match h.handle(terminate, "k").await {
            Outcome::Failed(f) => {
                assert_eq!(f.class, ErrorClass::Permanent);
                assert!(f.message.contains("terminate_account"), "{}", f.message);
            }
            other => panic!("{other:?}"),
        }
    }
}
