//! Changes to an existing account over its life: suspend, unsuspend, terminate, change package,
//! change password. Each converges: suspending a suspended account, terminating one that is
//! gone or setting the package it already has all succeed.

use mpanel_common::command::{
    AccountSuspended, AccountTerminated, AccountUnsuspended, ChangePackage, ChangePassword,
    PackageChanged, PasswordChanged, Reply, SuspendAccount, TerminateAccount, UnsuspendAccount,
};
use tracing::debug;

use super::CommandResult;
use crate::panel::{ControlPanel, ErrorClass, Secret};

/// Recorded on panels that keep a suspension reason, when the controller gives none.
const DEFAULT_SUSPEND_REASON: &str = "suspended by mpanel";

pub(super) async fn suspend_account(panel: &dyn ControlPanel, c: SuspendAccount) -> CommandResult {
    let reason = c.reason.as_deref().unwrap_or(DEFAULT_SUSPEND_REASON);
    panel.suspend_account(&c.username, reason).await?;
    debug!(username = %c.username, "account suspended");
    Ok(Reply::Suspended(AccountSuspended {
        username: c.username,
    }))
}

pub(super) async fn unsuspend_account(
    panel: &dyn ControlPanel,
    c: UnsuspendAccount,
) -> CommandResult {
    panel.unsuspend_account(&c.username).await?;
    debug!(username = %c.username, "account unsuspended");
    Ok(Reply::Unsuspended(AccountUnsuspended {
        username: c.username,
    }))
}

/// An account that is already gone is a success.
pub(super) async fn terminate_account(
    panel: &dyn ControlPanel,
    c: TerminateAccount,
) -> CommandResult {
    match panel.terminate_account(&c.username).await {
        Ok(()) => {}
        // The drivers already treat "gone" as done; this covers one that reports it instead.
        Err(e) if e.class() == ErrorClass::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    debug!(username = %c.username, "account terminated");
    Ok(Reply::Terminated(AccountTerminated {
        username: c.username,
    }))
}

pub(super) async fn change_package(panel: &dyn ControlPanel, c: ChangePackage) -> CommandResult {
    panel.change_package(&c.username, &c.package).await?;
    debug!(username = %c.username, package = %c.package, "package changed");
    Ok(Reply::PackageChanged(PackageChanged {
        username: c.username,
        package: c.package,
    }))
}

pub(super) async fn change_password(panel: &dyn ControlPanel, c: ChangePassword) -> CommandResult {
    panel
        .change_password(&c.username, &Secret::from(c.password))
        .await?;
    debug!(username = %c.username, "password changed");
    Ok(Reply::PasswordChanged(PasswordChanged {
        username: c.username,
    }))
}
