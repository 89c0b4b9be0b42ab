//! The overview's forms: drain, enable, enrollment token and certificate revocation for a
//! server; retry and clear for a failed task. Each goes through the call its API route makes
//! (`ServerStore::update_server`, `Fleet::create_enrollment_token`, `Fleet::revoke`,
//! `Lifecycle::retry`, `ReportingStore::clear_failed_tasks`), so the same checks run and the same
//! activity rows are written, naming the signed-in admin.
//!
//! Order of checks: a live session and the form's CSRF token (403, nothing done), then the id
//! (404 page), then the state (409 page saying why, nothing done). Success answers 303 back to
//! the overview with a fixed confirmation (`?done=…`).

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mpanel_common::JobId;
use mpanel_common::ids::{ServerId, TaskId};
use mpanel_common::status::{AgentStatus, ServerStatus};
use serde_json::json;

use super::signin::SignedIn;
use crate::lifecycle::{Actor, LifecycleError};
use crate::store::admin_users::shown_time;
use crate::store::{Server, ServerPatch, StoreError};
use crate::web::{Web, form_fields, see_other};

type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

/// A positive decimal id, as the overview's links carry them.
fn parse_id(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok().filter(|id| *id > 0)
}

impl Web {
    /// A refused change: 409 with why, and that nothing was done.
    fn conflict(&self, message: &str) -> Response {
        self.render(
            StatusCode::CONFLICT,
            "message.html",
            json!({
                "title": "Nothing was changed",
                "message": message,
                "link": "/admin",
                "link_text": "Back to the dashboard",
            }),
        )
    }

    /// The signed-in admin of a form and the server it names, or the answer to send instead.
    async fn server_form(
        &self,
        headers: &HeaderMap,
        form: Fields,
        raw_id: &str,
    ) -> Result<(SignedIn, Server), Response> {
        let fields = form_fields(form);
        let admin = self.admin_form(headers, &fields).await?;
        let Some(id) = parse_id(raw_id) else {
            return Err(self.not_found("/admin"));
        };
        match self.app.store.get_server(ServerId::new(id)).await {
            Ok(server) => Ok((admin, server)),
            Err(StoreError::NotFound { .. }) => Err(self.not_found("/admin")),
            Err(e) => Err(self.failure(&e, "/admin")),
        }
    }

    /// Moves a server to `status` as `PATCH /api/servers/{id}` does.
    async fn set_server_status(
        &self,
        headers: &HeaderMap,
        form: Fields,
        raw_id: &str,
        status: ServerStatus,
        done: &str,
    ) -> Response {
        let (admin, server) = match self.server_form(headers, form, raw_id).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        if server.status == status {
            return self.conflict(&format!("{} is already {status}.", server.hostname));
        }
        let patch = ServerPatch {
            status: Some(status),
            ..ServerPatch::default()
        };
        match self
            .app
            .store
            .update_server(server.id, &patch, &admin.actor())
            .await
        {
            Ok(_) => {
                tracing::info!(
                    server_id = server.id.get(),
                    status = status.as_str(),
                    admin_user = admin.session.user_id,
                    "server status changed from the dashboard"
                );
                see_other(&format!("/admin?done={done}#fleet"))
            }
            Err(StoreError::NotFound { .. }) => self.not_found("/admin"),
            Err(StoreError::Conflict(message)) => self.conflict(&message),
            Err(e) => self.failure(&e, "/admin"),
        }
    }
}

pub(super) async fn drain_server(
    State(web): State<Web>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    web.set_server_status(&headers, form, &id, ServerStatus::Draining, "drained")
        .await
}

pub(super) async fn enable_server(
    State(web): State<Web>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    web.set_server_status(&headers, form, &id, ServerStatus::Active, "enabled")
        .await
}

/// A one-use enrollment token, shown once on the page this answers with (never stored in the
/// clear, never in a URL).
pub(super) async fn enrollment_token(
    State(web): State<Web>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let (admin, server) = match web.server_form(&headers, form, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let grant = match web
        .app
        .fleet
        .create_enrollment_token(server.id, &admin.actor())
        .await
    {
        Ok(grant) => grant,
        Err(e) => return web.failure(&e, "/admin"),
    };
    tracing::info!(
        server_id = server.id.get(),
        admin_user = admin.session.user_id,
        "enrollment token made from the dashboard"
    );
    web.render(
        StatusCode::OK,
        "admin/enrollment_token.html",
        json!({
            "hostname": server.hostname,
            "token": grant.token,
            "expires_at": shown_time(grant.expires_at_ms),
            "ca_fingerprint": grant.ca_fingerprint,
            "controller": grpc_address(&web),
        }),
    )
}

/// Where agents dial: the first name of the gRPC certificate and the gRPC port.
fn grpc_address(web: &Web) -> String {
    let config = &web.app.config;
    let name = config
        .grpc_server_names
        .first()
        .map_or("localhost", String::as_str);
    let host = if name.contains(':') {
        format!("[{name}]")
    } else {
        name.to_owned()
    };
    format!("https://{host}:{}", config.grpc_listen.port())
}

/// Revokes the agent's certificates as `POST /api/servers/{id}/revoke-certificate` does.
pub(super) async fn revoke_server(
    State(web): State<Web>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let (admin, server) = match web.server_form(&headers, form, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let agent = match web.app.fleet.agents().await {
        Ok(agents) => agents.into_iter().find(|a| a.row.server_id == server.id),
        Err(e) => return web.failure(&e, "/admin"),
    };
    match agent.map(|a| a.status) {
        None => {
            return web.conflict(&format!(
                "{} has no enrolled agent, so there is no certificate to revoke.",
                server.hostname
            ));
        }
        Some(AgentStatus::Revoked) => {
            return web.conflict(&format!(
                "The agent of {} is already revoked.",
                server.hostname
            ));
        }
        Some(_) => {}
    }
    match web.app.fleet.revoke(server.id, &admin.actor()).await {
        Ok(_) => see_other("/admin?done=revoked#fleet"),
        Err(crate::fleet::FleetError::Store(StoreError::NotFound { .. })) => {
            web.not_found("/admin")
        }
        Err(e) => web.failure(&e, "/admin"),
    }
}

/// Re-queues a failed task as `POST /api/provisioning/retry/{id}` does.
pub(super) async fn retry_task(
    State(web): State<Web>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let fields = form_fields(form);
    let admin = match web.admin_form(&headers, &fields).await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let Some(id) = parse_id(&id) else {
        return web.not_found("/admin");
    };
    let actor = Actor::AdminUser(admin.session.user_id);
    match web.app.lifecycle().retry(&actor, TaskId::new(id)).await {
        Ok(_) => see_other("/admin?done=retried#queue"),
        Err(
            LifecycleError::NotFound { .. } | LifecycleError::Store(StoreError::NotFound { .. }),
        ) => web.not_found("/admin"),
        Err(e @ (LifecycleError::TaskNotFailed { .. } | LifecycleError::TaskOpen { .. })) => {
            web.conflict(&format!("{e}."))
        }
        Err(e) => web.failure(&e, "/admin"),
    }
}

/// Takes one failed task off the failed list (it stays in history as failed).
pub(super) async fn clear_task(
    State(web): State<Web>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let fields = form_fields(form);
    let admin = match web.admin_form(&headers, &fields).await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let Some(id) = parse_id(&id) else {
        return web.not_found("/admin");
    };
    let task = TaskId::new(id);
    match web.app.store.clear_failed_task(task, &admin.actor()).await {
        Ok(Ok(_)) => see_other("/admin?done=cleared#queue"),
        Ok(Err(found)) if found.cleared_at.is_some() => web.conflict(&format!(
            "{} is already off the failed list.",
            JobId::for_task(task)
        )),
        Ok(Err(found)) => web.conflict(&format!(
            "{} is {}; only failed tasks can be cleared from the failed list.",
            JobId::for_task(task),
            found.status
        )),
        Err(StoreError::NotFound { .. }) => web.not_found("/admin"),
        Err(e) => web.failure(&e, "/admin"),
    }
}

/// Clears the whole failed list as `DELETE /api/provisioning/failed` does.
pub(super) async fn clear_failed(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let fields = form_fields(form);
    let admin = match web.admin_form(&headers, &fields).await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    match web.app.store.clear_failed_tasks(&admin.actor()).await {
        Ok(cleared) => {
            tracing::info!(
                cleared,
                admin_user = admin.session.user_id,
                "failed list cleared from the dashboard"
            );
            see_other("/admin?done=cleared-all#queue")
        }
        Err(e) => web.failure(&e, "/admin"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_id;

    #[test]
    fn ids_are_positive_decimals() {
        assert_eq!(parse_id("42"), Some(42));
        for bad in ["", "0", "-1", "4 2", "job_4", "99999999999999999999", "+3"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
