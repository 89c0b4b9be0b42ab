//! Changes to an existing account over its life: suspend, unsuspend, terminate, change package,
//! change password. Each converges: suspending a suspended account, terminating one that is
//! gone or setting the package it already has all succeed.

use serde_json::{Value, json};
use tracing::debug;

use super::CommandResult;
use super::payload::Payload;
use crate::panel::{ControlPanel, ErrorClass};

/// Recorded on panels that keep a suspension reason, when the controller gives none.
const DEFAULT_SUSPEND_REASON: &str = "suspended by mpanel";

/// `suspend_account {username, reason?}` → `{username, suspended: true}`.
pub(super) async fn suspend_account(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("suspend_account", payload)?;
    let username = p.string("username")?;
    let reason = p.opt_string("reason")?.unwrap_or(DEFAULT_SUSPEND_REASON);
    panel.suspend_account(username, reason).await?;
    debug!(username, "account suspended");
    Ok(json!({ "username": username, "suspended": true }))
}

/// `unsuspend_account {username}` → `{username, suspended: false}`.
pub(super) async fn unsuspend_account(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("unsuspend_account", payload)?;
    let username = p.string("username")?;
    panel.unsuspend_account(username).await?;
    debug!(username, "account unsuspended");
    Ok(json!({ "username": username, "suspended": false }))
}

/// `terminate_account {username}` → `{username, terminated: true}`; an account that is already
/// gone is a success.
pub(super) async fn terminate_account(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("terminate_account", payload)?;
    let username = p.string("username")?;
    match panel.terminate_account(username).await {
        Ok(()) => {}
        // The drivers already treat "gone" as done; this covers one that reports it instead.
        Err(e) if e.class() == ErrorClass::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    debug!(username, "account terminated");
    Ok(json!({ "username": username, "terminated": true }))
}

/// `change_package {username, package}` → `{username, package}`.
pub(super) async fn change_package(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("change_package", payload)?;
    let username = p.string("username")?;
    let package = p.string("package")?;
    panel.change_package(username, package).await?;
    debug!(username, package, "package changed");
    Ok(json!({ "username": username, "package": package }))
}

/// `change_password {username, password}` → `{username, passwordChanged: true}`.
pub(super) async fn change_password(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("change_password", payload)?;
    let username = p.string("username")?;
    let password = p.secret("password")?;
    panel.change_password(username, &password).await?;
    debug!(username, "password changed");
    Ok(json!({ "username": username, "passwordChanged": true }))
}
