//! A small in-memory double of the Stripe API for mpanel's tests: the parts mpanel uses that
//! the third-party fake localstripe lacks — Checkout Sessions, `checkout.session.*` and
//! `charge.*` events, `Idempotency-Key` replay, and the 402 `authentication_required` of an
//! off-session charge — answered in Stripe's documented shapes.
//!
//! It owns customers, payment methods (Stripe's test ids: `pm_card_visa`,
//! `pm_card_chargeDeclined`, `pm_card_authenticationRequired`, ...), Checkout Sessions in
//! `payment` mode, PaymentIntents and their charges, refunds, disputes, events and their signed
//! webhook delivery, and scripted faults. It does not own subscriptions, invoices, prices,
//! products or Connect (localstripe covers the billing objects), nor any real card handling.
//!
//! Stripe's API is under `/v1/*` (any `sk_...` key); test controls are under `/__double/*`
//! (no auth; what a customer or a bank would do, webhook delivery controls, faults, state);
//! `/pay/<session>` is a minimal payment page. See this crate's README for each behaviour and
//! the Stripe fact it follows.

// Stripe's objects have many fields; `json!` expands one macro level per field.
#![recursion_limit = "256"]

mod api;
mod cards;
mod control;
mod error;
mod faults;
mod form;
mod idempotency;
mod ids;
mod model;
mod page;
mod store;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use webhooks::{WebhookTarget, signature_header};

/// The API version events carry (and responses report) unless configured otherwise.
pub const DEFAULT_API_VERSION: &str = "2024-06-20";

/// How to run the double; the same knobs as the command line.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// The webhook endpoint events are sent to from the start (also settable at run time).
    pub webhook: Option<WebhookTarget>,
    /// `api_version` of events and the default `Stripe-Version` of answers.
    pub api_version: String,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        DoubleConfig {
            webhook: None,
            api_version: DEFAULT_API_VERSION.to_owned(),
        }
    }
}

/// Shared by every handler and the delivery task.
pub(crate) struct Double {
    store: Mutex<store::Store>,
    pub idempotency: Mutex<idempotency::Keys>,
    pub faults: Mutex<faults::Faults>,
    /// Woken when an event is queued or deliveries resume.
    pub wake: Arc<Notify>,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub api_version: String,
}

impl Double {
    /// The store. A handler that panicked while holding it left it usable (every change is
    /// made in one step), so a poisoned lock is taken over rather than failing every request.
    pub fn lock(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn idempotency(&self) -> MutexGuard<'_, idempotency::Keys> {
        self.idempotency.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn faults(&self) -> MutexGuard<'_, faults::Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running double. Dropping the handle does not stop it (it serves until the runtime ends,
/// as at the end of a `#[tokio::test]`); `shutdown` stops it and waits.
pub struct DoubleHandle {
    addr: SocketAddr,
    double: Arc<Double>,
    stop: CancellationToken,
    server: JoinHandle<()>,
    delivery: JoinHandle<()>,
}

impl std::fmt::Debug for DoubleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DoubleHandle {
    /// `http://127.0.0.1:PORT`: the API base to give a Stripe client.
    pub fn base_url(&self) -> String {
        self.double.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The same document as `GET /__double/state`.
    pub fn state_json(&self) -> serde_json::Value {
        control::state_json(&self.double)
    }

    /// Stops accepting, lets in-flight requests finish, stops deliveries, and waits.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.server.await;
        let _ = self.delivery.await;
    }
}

/// Starts the double on `listener` and returns once it accepts connections.
pub async fn start(config: DoubleConfig, listener: TcpListener) -> anyhow::Result<DoubleHandle> {
    if let Some(target) = &config.webhook {
        validate_target(target).map_err(anyhow::Error::msg)?;
    }
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    // reqwest's TLS stack needs a process-wide provider even for plain-HTTP endpoints.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let wake = Arc::new(Notify::new());
    let double = Arc::new(Double {
        store: Mutex::new(store::Store::new(
            config.api_version.clone(),
            webhooks::Outbox::new(config.webhook, Arc::clone(&wake)),
        )),
        idempotency: Mutex::default(),
        faults: Mutex::default(),
        wake,
        http: webhooks::client(),
        base_url: format!("http://{addr}"),
        api_version: config.api_version,
    });
    let stop = CancellationToken::new();
    let app = api::routes(Arc::clone(&double))
        .merge(control::routes(Arc::clone(&double)))
        .merge(page::routes(Arc::clone(&double)));
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "server stopped");
            }
        })
    };
    let delivery = tokio::spawn(webhooks::run(Arc::clone(&double), stop.clone()));
    tracing::info!(%addr, "stripe double listening");
    Ok(DoubleHandle {
        addr,
        double,
        stop,
        server,
        delivery,
    })
}

/// A webhook endpoint must be an http(s) URL and its secret a `whsec_` one.
pub(crate) fn validate_target(target: &WebhookTarget) -> Result<(), String> {
    if !(target.url.starts_with("http://") || target.url.starts_with("https://")) {
        return Err("webhook url must start with http:// or https://".into());
    }
    if !target.secret.starts_with("whsec_") || target.secret.len() <= "whsec_".len() {
        return Err("webhook secret must start with whsec_".into());
    }
    Ok(())
}
