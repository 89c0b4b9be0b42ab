//! What the agent does with a controller command. The session calls a [`CommandHandler`] for
//! each `Command`, concurrently; the provisioning work plugs the panel drivers in behind the same
//! trait. [`BuiltinHandler`] answers the diagnostic `ping` and `echo` (tests, the benchmark,
//! `POST /api/servers/:id/commands`) and delegates everything else.

use std::sync::Arc;

use async_trait::async_trait;

/// How the controller should treat a failure (`CommandResult.error_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Permanent,
    Auth,
    Conflict,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Auth => "auth",
            ErrorClass::Conflict => "conflict",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    Ok(serde_json::Value),
    Failed { class: ErrorClass, message: String },
}

#[async_trait]
pub trait CommandHandler: Send + Sync {
    /// Runs one command. `payload` is the command's JSON; the idempotency key is the same on
    /// every retry of the same step, so a handler can recognise work it already did.
    async fn handle(
        &self,
        kind: &str,
        payload: serde_json::Value,
        idempotency_key: &str,
    ) -> CommandOutcome;
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

#[async_trait]
impl CommandHandler for BuiltinHandler {
    async fn handle(
        &self,
        kind: &str,
        payload: serde_json::Value,
        idempotency_key: &str,
    ) -> CommandOutcome {
        match kind {
            "ping" => CommandOutcome::Ok(
                serde_json::json!({ "pong": true, "version": env!("CARGO_PKG_VERSION") }),
            ),
            "echo" => CommandOutcome::Ok(payload),
            _ => match &self.next {
                Some(next) => next.handle(kind, payload, idempotency_key).await,
                None => CommandOutcome::Failed {
                    class: ErrorClass::Permanent,
                    message: format!("this agent does not know the command '{kind}'"),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builtins_answer_and_unknown_commands_fail_permanently() {
        let h = BuiltinHandler::default();
        assert!(matches!(
            h.handle("ping", serde_json::Value::Null, "k").await,
            CommandOutcome::Ok(_)
        ));
        let payload = serde_json::json!({"a": 1});
        assert_eq!(
            h.handle("echo", payload.clone(), "k").await,
            CommandOutcome::Ok(payload)
        );
        match h
            .handle("create_account", serde_json::Value::Null, "k")
            .await
        {
            CommandOutcome::Failed { class, .. } => assert_eq!(class, ErrorClass::Permanent),
            other => panic!("{other:?}"),
        }
    }
}
