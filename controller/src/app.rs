//! Assembles the controller from its configuration and runs it until shutdown.
//! `run` is the testable entry point: tests call it with their own listener (port 0) and their
//! own shutdown future, exactly as `main` does with the configured address and signals.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::cron::Clock;
use crate::crypto::Cipher;
use crate::fleet::Fleet;
use crate::store::{self, DynStore};

/// What every handler and worker shares.
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub config: Arc<Config>,
    pub cipher: Arc<Cipher>,
    pub shutdown: CancellationToken,
    /// The agent fleet: enrollment, sessions, heartbeats, commands.
    pub fleet: Fleet,
    /// Wakes the job runner's workers after a row is queued.
    pub dispatcher: crate::jobs::Dispatcher,
    /// Checkout, Stripe events, invoices and payments.
    pub billing: crate::billing::Billing,
    /// Scheduled jobs: their status, runs and manual runs.
    pub cron: crate::cron::Cron,
    /// Checkouts per client address, for the checkout route's rate limit.
    pub checkout_limiter: Arc<crate::api::billing::CheckoutLimiter>,
    /// Taking account backups through the agents, and their retention.
    pub backups: crate::backups::Backups,
}

impl AppState {
    /// The lifecycle of services, for handlers to call with their actor.
    pub fn lifecycle(&self) -> crate::lifecycle::Lifecycle {
        crate::lifecycle::Lifecycle::new(self.store.clone(), self.dispatcher.clone())
    }
}

/// The sockets the controller serves: the HTTP API, the agents' mTLS gRPC endpoint and, when
/// `METRICS_LISTEN` is set, the metrics endpoint (`None` here with `METRICS_LISTEN` set: `run`
/// binds it itself).
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds `HTTP_LISTEN` and `GRPC_LISTEN`, naming the variable on failure.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("HTTP_LISTEN: cannot listen on {}", config.http_listen))?;
        let grpc = TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| format!("GRPC_LISTEN: cannot listen on {}", config.grpc_listen))?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(bind_metrics(addr).await?),
            None => None,
        };
        Ok(Listeners {
            http,
            grpc,
            metrics,
        })
    }
}

async fn bind_metrics(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("METRICS_LISTEN: cannot listen on {addr}"))
}

/// Opens the store named by `DATABASE_URL` and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<DynStore> {
    let store = store::connect(config.database_url.expose())
        .await
        .context("DATABASE_URL: cannot open the database")?;
    store
        .migrate()
        .await
        .context("DATABASE_URL: cannot apply migrations")?;
    Ok(store)
}

/// What [`run_with`] takes besides the configuration. [`run`] uses the default.
#[derive(Clone)]
pub struct RunOptions {
    /// The time scheduled jobs go by: the scheduler reads its slots and its leader lease from
    /// it, so the job bodies run for the slots it gives, and a manual run is asked for at its
    /// time. The wall clock by default; the end-to-end tests give replicas a shared fast one.
    pub clock: Clock,
    /// How many of `clock`'s milliseconds pass in a real one (1 for the wall clock).
    /// `CRON_LEASE_SECS` counts `clock`'s seconds, and the scheduler wakes every third of the
    /// lease in real time.
    pub clock_speed: u32,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            clock: crate::cron::wall_clock(),
            clock_speed: 1,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("clock_speed", &self.clock_speed)
            .finish_non_exhaustive()
    }
}

/// Serves the HTTP API and the agents' endpoint until `shutdown` resolves, then drains
/// in-flight requests and closes agent sessions.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, listeners, shutdown, RunOptions::default()).await
}

/// [`run`] with `options`.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: RunOptions,
) -> anyhow::Result<()> {
    let RunOptions { clock, clock_speed } = options;
    let Listeners {
        http,
        grpc,
        metrics,
    } = listeners;
    let metrics = match (metrics, config.metrics_listen) {
        (Some(listener), _) => Some(listener),
        (None, Some(addr)) => Some(bind_metrics(addr).await?),
        (None, None) => None,
    };
    let prometheus = crate::telemetry::metrics::install();
    let keys = config.require_encryption_keys()?.clone();
    let store = open_store(&config).await?;
    let token = CancellationToken::new();
    let cipher = Arc::new(Cipher::new(&keys));
    let mail_sender =
        crate::mail::OutboxSender::from_config(store.clone(), cipher.clone(), &config)
            .context("email settings")?;
    let node = Arc::new(crate::jobs::Node::for_config(&config));
    let fleet = Fleet::start(store.clone(), &cipher, &config, token.clone())
        .await
        .context("agent fleet: cannot start")?;
    let dispatcher = match &config.redis_url {
        Some(url) => {
            crate::jobs::Dispatcher::with_redis(url.expose(), &config.redis_prefix, &token)?
        }
        None => crate::jobs::Dispatcher::new(),
    };
    let config = Arc::new(config);
    let stripe = crate::billing::StripeClient::from_config(&config.stripe)
        .context("STRIPE_API_BASE")?
        .map(Arc::new);
    let billing =
        crate::billing::Billing::new(store.clone(), dispatcher.clone(), stripe, config.clone());
    let ssl = crate::ssl::SslRenewals::new(
        store.clone(),
        fleet.clone(),
        cipher.clone(),
        config.clone(),
        dispatcher.clone(),
    );
    let backups = crate::backups::Backups::new(
        store.clone(),
        fleet.clone(),
        config.backup_retention_days,
        std::time::Duration::from_secs(u64::from(config.provisioning_command_timeout_secs)),
    );
    let usage = crate::usage::UsageSync::new(
        store.clone(),
        fleet.clone(),
        cipher.clone(),
        config.clone(),
        dispatcher.clone(),
    );
    let registry = Arc::new(crate::cron::Registry::standard(
        &config.cron,
        &billing,
        &ssl,
        &backups,
        &usage,
    ));
    crate::telemetry::metrics::register_cron_jobs(registry.jobs().iter().map(|j| j.name.as_str()));
    let cron = crate::cron::Cron::new(store.clone(), registry.clone(), dispatcher.clone())
        .with_clock(clock.clone());
    let state = AppState {
        store: store.clone(),
        config,
        cipher,
        shutdown: token.clone(),
        fleet: fleet.clone(),
        dispatcher,
        billing,
        cron,
        checkout_limiter: Arc::default(),
        backups,
    };
    let provisioner = crate::provisioning::Provisioner::new(
        store.clone(),
        state.fleet.clone(),
        state.cipher.clone(),
        state.config.clone(),
        state.dispatcher.clone(),
    );
    let deps = crate::jobs::JobDeps {
        store: store.clone(),
        dispatcher: state.dispatcher.clone(),
        node: node.clone(),
    };
    let billing_worker = crate::jobs::billing::BillingWorker {
        billing: state.billing.clone(),
        notices: crate::billing::notices::Notices {
            store: store.clone(),
            cipher: state.cipher.clone(),
            config: state.config.clone(),
            dispatcher: state.dispatcher.clone(),
        },
    };
    let cron_worker = crate::jobs::cron::CronWorker {
        store: store.clone(),
        registry: registry.clone(),
    };
    let mut workers = crate::jobs::spawn_all(
        &deps,
        provisioner,
        mail_sender,
        billing_worker,
        cron_worker,
        &token,
    )
    .await;
    // ENABLE_CRON=false: this replica never leads, but its workers above still run the runs
    // the leader queues.
    if state.config.enable_cron {
        let scheduler = crate::cron::Scheduler::new(
            store.clone(),
            registry,
            state.dispatcher.clone(),
            node.lease_holder("scheduler"),
            clock,
            crate::cron::SchedulerSettings::for_clock(state.config.cron.lease_secs, clock_speed),
        );
        workers.push(tokio::spawn(scheduler.run(token.clone())));
    }
    let grpc_names = state.config.grpc_server_names.clone();
    let stop_on_failure = token.clone();
    let grpc_server = tokio::spawn(async move {
        let result = fleet.serve(grpc, &grpc_names).await;
        if result.is_err() {
            stop_on_failure.cancel();
        }
        result
    });

    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });

    let sampler = crate::telemetry::metrics::Sampler::new(store.clone());
    workers.push(tokio::spawn(sampler.clone().run(token.clone())));
    let metrics_endpoint = crate::api::MetricsEndpoint {
        handle: prometheus,
        sampler,
    };
    // The dashboard's pages beside the API: outside its OpenAPI document and its bearer auth.
    let mut router = crate::api::router(state.clone()).merge(crate::web::router(state));
    match metrics {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "metrics listening");
            let app = crate::api::metrics_router(metrics_endpoint);
            let drained = token.clone();
            workers.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { drained.cancelled().await })
                    .await
                {
                    tracing::error!(error = %e, "metrics endpoint failed");
                }
            }));
        }
        None => router = router.merge(crate::api::metrics_router(metrics_endpoint)),
    }

    let addr = http.local_addr()?;
    tracing::info!(%addr, database = store.backend().as_str(), "controller listening");
    let drained = token.clone();
    // The client's address feeds the checkout rate limit.
    axum::serve(
        http,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { drained.cancelled().await })
    .await
    .context("HTTP server failed")?;
    // Workers finish the step in hand; one stuck on a slow panel is abandoned to its lease,
    // which another worker (or the next start) picks up.
    for worker in workers {
        if tokio::time::timeout(std::time::Duration::from_secs(10), worker)
            .await
            .is_err()
        {
            tracing::warn!("a worker did not stop in time; its row runs again after the lease");
        }
    }
    match grpc_server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e).context("agent endpoint failed"),
        Err(e) => return Err(e).context("agent endpoint panicked"),
    }
    store.close().await;
    tracing::info!("controller stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM: the one shutdown path of the binaries.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
