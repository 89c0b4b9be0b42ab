//! The router and the one pipeline every simulated API call goes through:
//! count → latency → auth → scripted fault → random transient failure → panel handler.
//!
//! A fault that fires before the handler changes nothing; `PartialSuccess` runs the handler
//! and then answers with the panel's failure anyway (the boxbilling#19 trap, reference §4.1).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::faults::FaultKind;
use crate::reply::{self, Reply};
use crate::request::ApiRequest;
use crate::server::ConnInfo;
use crate::sim::Sim;
use crate::{SimKind, control, cpanel, directadmin, plesk, webroot};

/// How long a `Timeout` fault holds a request: longer than any sane client timeout.
const TIMEOUT_FAULT_HOLD: Duration = Duration::from_secs(30);

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// root / admin.
    Admin,
    /// DirectAdmin impersonation (`admin|user`).
    User(String),
}

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    let mut router = Router::new()
        .route("/__sim/state", get(control::state))
        .route(
            "/__sim/faults",
            get(control::list_faults)
                .post(control::add_faults)
                .delete(control::clear_faults),
        )
        .route("/__sim/seed", post(control::seed))
        .route("/__sim/usage", post(control::set_usage));
    if sim.config.web_root_http {
        router = router.route(
            "/.well-known/acme-challenge/{token}",
            get(webroot::challenge),
        );
    }
    router
        .fallback(api)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&sim),
            plain_port_guard,
        ))
        .with_state(sim)
}

/// On a TLS listener, plain HTTP only reaches the ACME challenge route.
async fn plain_port_guard(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    let plain = request
        .extensions()
        .get::<ConnInfo>()
        .is_some_and(|c| c.plain_on_tls_port);
    let challenge = request
        .uri()
        .path()
        .starts_with("/.well-known/acme-challenge/");
    if plain && !(challenge && sim.config.web_root_http) {
        return reply::text(
            StatusCode::BAD_REQUEST,
            "text/html; charset=utf-8",
            "<html><body><h1>400 Bad Request</h1>\
             <p>The plain HTTP request was sent to HTTPS port</p></body></html>\n"
                .to_owned(),
        );
    }
    next.run(request).await
}

async fn api(State(sim): State<Arc<Sim>>, request: Request) -> Response {
    let req = match ApiRequest::read(request).await {
        Ok(req) => req,
        Err(response) => return response,
    };
    let kind = sim.kind();
    let endpoint = endpoint(kind, &req);
    sim.world().count_call(&endpoint);

    if sim.config.latency_ms > 0 {
        sim.sleep_or_shutdown(Duration::from_millis(sim.config.latency_ms))
            .await;
    }

    let Some(caller) = authenticate(&sim, &req) else {
        tracing::debug!(%endpoint, "authentication failed");
        return auth_failure(&sim, &req);
    };

    if let Some(fault) = sim.take_fault(&req.fault_target()) {
        tracing::info!(%endpoint, fault = fault.as_str(), "injecting scripted fault");
        return match fault {
            FaultKind::AuthFailure => auth_failure(&sim, &req),
            FaultKind::Timeout => {
                sim.sleep_or_shutdown(TIMEOUT_FAULT_HOLD).await;
                server_error(kind, StatusCode::GATEWAY_TIMEOUT)
            }
            FaultKind::ServerError => server_error(kind, StatusCode::INTERNAL_SERVER_ERROR),
            FaultKind::AlreadyExists => already_exists(&sim, &req),
            FaultKind::PartialSuccess => {
                let done = handle(&sim, &req, &caller).await;
                if done.ok {
                    already_exists(&sim, &req)
                } else {
                    done.into_response()
                }
            }
        };
    }

    if sim.roll_transient() {
        tracing::info!(%endpoint, "injecting random transient failure");
        return server_error(kind, StatusCode::SERVICE_UNAVAILABLE);
    }

    handle(&sim, &req, &caller).await.into_response()
}

fn endpoint(kind: SimKind, req: &ApiRequest) -> String {
    match kind {
        SimKind::Cpanel => cpanel::endpoint(req),
        SimKind::Plesk => plesk::endpoint(req),
        SimKind::Directadmin => directadmin::endpoint(req),
    }
}

fn authenticate(sim: &Sim, req: &ApiRequest) -> Option<Caller> {
    match sim.kind() {
        SimKind::Cpanel => cpanel::authenticate(sim, req),
        SimKind::Plesk => plesk::authenticate(sim, req),
        SimKind::Directadmin => directadmin::authenticate(sim, req),
    }
}

fn auth_failure(sim: &Sim, req: &ApiRequest) -> Response {
    match sim.kind() {
        SimKind::Cpanel => cpanel::auth_failure(),
        SimKind::Plesk => plesk::auth_failure(sim, req),
        SimKind::Directadmin => directadmin::auth_failure(sim, req),
    }
}

fn server_error(kind: SimKind, status: StatusCode) -> Response {
    match kind {
        SimKind::Cpanel => cpanel::server_error(status),
        SimKind::Plesk => plesk::server_error(status),
        SimKind::Directadmin => directadmin::server_error(status),
    }
}

fn already_exists(sim: &Sim, req: &ApiRequest) -> Response {
    match sim.kind() {
        SimKind::Cpanel => cpanel::already_exists(sim, req),
        SimKind::Plesk => plesk::already_exists(req),
        SimKind::Directadmin => directadmin::already_exists(req),
    }
}

async fn handle(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    match sim.kind() {
        SimKind::Cpanel => cpanel::handle(sim, req).await,
        SimKind::Plesk => plesk::handle(sim, req, caller).await,
        SimKind::Directadmin => directadmin::handle(sim, req, caller).await,
    }
}
