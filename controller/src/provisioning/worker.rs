//! What a provisioning or lifecycle task does once the job runner (`crate::jobs`) has claimed
//! it: place a new service, run the six steps through the server's agent, or send one lifecycle
//! command; the runner records the outcome.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mpanel_common::command::{
    ACME_CAPABILITY, AcmeOrder, Certificate, CertificateDone, CertificateProvider, ChangePackage,
    ChangePassword, CreateAccount, CreateDatabase, CreateMailbox, EnsureDns, Reply, Request,
    SuspendAccount, TerminateAccount, UnsuspendAccount, Waiting,
};
use mpanel_common::ids::{ServerId, ServiceId, TaskId};
use mpanel_common::status::{ProvisioningStep, ServiceStatus, TaskKind};
use mpanel_common::username::{PanelKind, username_for};
use mpanel_common::{DomainName, Secret};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::credentials::generate_password;
use super::placement;
use super::step_data;
use crate::config::Config;
use crate::crypto::Cipher;
use crate::fleet::{CommandError, Fleet};
use crate::jobs::Dispatcher;
use crate::store::lease_queue::EMAIL;
use crate::store::queue::ServiceChange;
use crate::store::{
    DynStore, Product, Server, Service, ServiceSecret, StepRecord, StoreError, Task, now_ms,
};

#[derive(Clone)]
pub struct Provisioner {
    store: DynStore,
    fleet: Fleet,
    cipher: Arc<Cipher>,
    config: Arc<Config>,
    /// Wakes the email sender after the welcome email is queued.
    dispatcher: Dispatcher,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Provisioner")
    }
}

/// Why a task did not finish this time.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another attempt after a backoff (agent offline, panel 5xx, timeout).
    Retryable(String),
    /// Retrying cannot help (bad package, someone else's account).
    Permanent(String),
    /// Nothing is wrong with the task; it waits for a resource (a server with room).
    Waiting(String),
    /// Another worker holds the task now; write nothing.
    LeaseLost,
}

impl Failure {
    fn message(&self) -> String {
        match self {
            Failure::Retryable(m) | Failure::Permanent(m) | Failure::Waiting(m) => m.clone(),
            Failure::LeaseLost => "lease lost".to_owned(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost(_) => Failure::LeaseLost,
            other => Failure::Retryable(format!("storage: {other}")),
        }
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        // Not connected: the command was never sent, so nothing happened that a retry budget
        // should pay for. The task waits for the agent (back from a restart, or connected to
        // another replica) instead of failing after a few quick retries.
        if let CommandError::Offline(server) = e {
            return Failure::Waiting(format!(
                "waiting for the agent of server {server} to connect to this controller"
            ));
        }
        if let CommandError::Waiting(waiting) = e {
            return Failure::Waiting(waiting.to_string());
        }
        if e.is_retryable() {
            Failure::Retryable(e.to_string())
        } else {
            Failure::Permanent(e.to_string())
        }
    }
}

impl Provisioner {
    pub fn new(
        store: DynStore,
        fleet: Fleet,
        cipher: Arc<Cipher>,
        config: Arc<Config>,
        dispatcher: Dispatcher,
    ) -> Self {
        Self {
            store,
            fleet,
            cipher,
            config,
            dispatcher,
        }
    }

    pub(crate) fn store(&self) -> &DynStore {
        &self.store
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) async fn run_task(
        &self,
        task: &Task,
        holder: &str,
        lost: &CancellationToken,
    ) -> Result<ServiceChange, Failure> {
        let service = self.store.get_service(task.service_id).await?;
        match task.task_type {
            TaskKind::Provision => self.provision(task, holder, service, lost).await,
            kind => self.lifecycle(task, holder, kind, &service).await,
        }
    }

    async fn command<R: Request>(
        &self,
        server: ServerId,
        request: R,
        key: &str,
    ) -> Result<R::Reply, CommandError> {
        let deadline =
            Duration::from_secs(u64::from(self.config.provisioning_command_timeout_secs));
        self.fleet.request(server, request, key, deadline).await
    }

    async fn record(
        &self,
        task: TaskId,
        holder: &str,
        step: ProvisioningStep,
        outcome: &Result<Value, Failure>,
    ) -> Result<(), Failure> {
        let record = match outcome {
            Ok(data) => StepRecord {
                step: step.as_str().to_owned(),
                status: "success".to_owned(),
                data: data.clone(),
                error: None,
                finished_at: Some(now_ms()),
            },
            Err(failure) => StepRecord {
                step: step.as_str().to_owned(),
                status: if matches!(failure, Failure::Waiting(_)) {
                    "waiting"
                } else {
                    "failed"
                }
                .to_owned(),
                data: Value::Null,
                error: Some(failure.message()),
                finished_at: Some(now_ms()),
            },
        };
        Ok(self.store.record_step(task, holder, &record).await?)
    }

    async fn provision(
        &self,
        task: &Task,
        holder: &str,
        service: Service,
        lost: &CancellationToken,
    ) -> Result<ServiceChange, Failure> {
        let product = self.store.get_product(service.product_id).await?;
        let server = match service.server_id {
            Some(id) => self.store.get_server(id.into()).await?,
            None => self.place(&service, &product).await?,
        };
        let (username, password) = self
            .panel_credentials(&service, server.control_panel)
            .await?;
        let customer = self.store.get_customer(service.customer_id).await?;
        let done: Vec<&str> = task
            .result
            .0
            .steps
            .iter()
            .filter(|s| s.status == "success")
            .map(|s| s.step.as_str())
            .collect();
        let job = ProvisionJob {
            task,
            server: &server,
            service: &service,
            username: &username,
        };
        let domain = || {
            DomainName::parse(&service.domain)
                .map_err(|e| Failure::Permanent(format!("domain: {e}")))
        };
        let server_ip = || {
            server.ip_address.trim().parse::<IpAddr>().map_err(|_| {
                Failure::Permanent(format!(
                    "server {}: ip_address '{}' is not an IP address",
                    server.hostname, server.ip_address
                ))
            })
        };

        for step in ProvisioningStep::ALL {
            if done.contains(&step.as_str()) {
                continue;
            }
            if lost.is_cancelled() {
                return Err(Failure::LeaseLost);
            }
            let outcome = match step {
                ProvisioningStep::Account => {
                    let request = CreateAccount {
                        service_id: service.id,
                        username: username.clone(),
                        domain: domain()?,
                        password: Secret::new(password.clone()),
                        package: product.package_for(server.control_panel).to_owned(),
                        contact_email: customer.email.clone(),
                        quota_mb: u64::try_from(product.disk_mb).ok(),
                        ip: None,
                    };
                    self.agent_step(&job, step, request)
                        .await
                        .map(|reply| step_data::account(&reply, &server))
                        .map_err(Failure::from)
                }
                // The controller writes PowerDNS zones itself; the panel's DNS goes through the
                // agent's driver.
                ProvisioningStep::Dns
                    if server.dns_provider == mpanel_common::status::DnsProvider::Powerdns =>
                {
                    crate::dns::ensure_powerdns_zone(&self.config, &server, &service.domain)
                        .await
                        .map_err(|e| {
                            if e.is_retryable() {
                                Failure::Retryable(e.to_string())
                            } else {
                                Failure::Permanent(e.to_string())
                            }
                        })
                }
                ProvisioningStep::Dns => {
                    let mut nameservers = Vec::new();
                    for ns in [&server.nameserver1, &server.nameserver2] {
                        if !ns.trim().is_empty() {
                            nameservers.push(DomainName::parse(ns).map_err(|e| {
                                Failure::Permanent(format!("server nameserver '{ns}': {e}"))
                            })?);
                        }
                    }
                    let request = EnsureDns {
                        username: username.clone(),
                        domain: domain()?,
                        ip: server_ip()?,
                        nameservers,
                        ttl: None,
                    };
                    self.agent_step(&job, step, request)
                        .await
                        .map(|reply| step_data::panel_dns(&reply))
                        .map_err(Failure::from)
                }
                // `ssl_provider` 'acme': the agent issues from its ACME CA and installs; the
                // certificate is recorded with its renewal time (two thirds of its life). A
                // domain not pointing at the server yet waits (no failed attempt is counted).
                // Otherwise the panel's own AutoSSL is asked to run.
                ProvisioningStep::Ssl
                    if server.ssl_provider == mpanel_common::status::SslProvider::Acme =>
                {
                    use crate::store::IssuedSslCertificate;
                    let autossl = Certificate {
                        username: username.clone(),
                        domain: domain()?,
                        provider: CertificateProvider::AutoSsl,
                    };
                    // A disconnected agent advertises nothing; its request fails as Offline.
                    if self.fleet.is_connected(server.id)
                        && !self.fleet.has_capability(server.id, ACME_CAPABILITY)
                    {
                        // 'acme' is the default provider; an agent not set up for it keeps the
                        // site on the panel's AutoSSL rather than failing the order, and the
                        // step data says so.
                        tracing::warn!(server = %server.hostname, "the agent has no [acme] section; using the panel's AutoSSL");
                        self.agent_step(&job, step, autossl)
                            .await
                            .map(|done| {
                                step_data::ssl(&done, Some("the agent has no [acme] section"))
                            })
                            .map_err(Failure::from)
                    } else {
                        let request = Certificate {
                            provider: CertificateProvider::Acme(AcmeOrder {
                                ip: server_ip()?,
                                names: Vec::new(),
                            }),
                            ..autossl
                        };
                        match self.agent_step(&job, step, request).await {
                            Ok(done) => {
                                let (issuer, serial, not_before, not_after) = match &done {
                                    CertificateDone::AcmeIssued(c) => (
                                        c.issuer.clone(),
                                        c.serial.clone(),
                                        c.not_before_ms,
                                        c.not_after_ms,
                                    ),
                                    CertificateDone::AutoSslRequested => {
                                        return Err(Failure::Permanent(
                                            "the agent answered an ACME request with AutoSSL"
                                                .to_owned(),
                                        ));
                                    }
                                };
                                let cert = IssuedSslCertificate {
                                    service_id: service.id,
                                    domain: service.domain.clone(),
                                    provider: "acme".to_owned(),
                                    issuer,
                                    serial,
                                    not_before,
                                    not_after,
                                    renew_after: not_before
                                        + (not_after - not_before).max(0) / 3 * 2,
                                };
                                match self.store.record_certificate_issued(&cert).await {
                                    Ok(_) => Ok(step_data::ssl(&done, None)),
                                    Err(e) => Err(e.into()),
                                }
                            }
                            Err(CommandError::Waiting(waiting @ Waiting::Dns { .. })) => {
                                let message = waiting.to_string();
                                match self
                                    .store
                                    .record_certificate_waiting_for_dns(
                                        service.id,
                                        &service.domain,
                                        "acme",
                                        &message,
                                    )
                                    .await
                                {
                                    Ok(_) => Err(Failure::Waiting(message)),
                                    Err(e) => Err(e.into()),
                                }
                            }
                            Err(other) => Err(other.into()),
                        }
                    }
                }
                ProvisioningStep::Ssl => {
                    let request = Certificate {
                        username: username.clone(),
                        domain: domain()?,
                        provider: CertificateProvider::AutoSsl,
                    };
                    self.agent_step(&job, step, request)
                        .await
                        .map(|done| step_data::ssl(&done, None))
                        .map_err(Failure::from)
                }
                ProvisioningStep::Email => {
                    let mailbox_password = self
                        .service_secret(service.id, ServiceSecret::Mailbox)
                        .await?;
                    let request = CreateMailbox {
                        username: username.clone(),
                        domain: domain()?,
                        local_part: "admin".to_owned(),
                        password: Secret::new(mailbox_password),
                        quota_mb: u64::try_from(product.email_quota_mb).ok(),
                    };
                    self.agent_step(&job, step, request)
                        .await
                        .map(|reply| step_data::email(&reply))
                        .map_err(Failure::from)
                }
                ProvisioningStep::Database if product.databases == 0 => {
                    Ok(step_data::no_database())
                }
                ProvisioningStep::Database => {
                    let db_password = self
                        .service_secret(service.id, ServiceSecret::Database)
                        .await?;
                    let request = CreateDatabase {
                        username: username.clone(),
                        kind: server.control_panel,
                        domain: domain()?,
                        name_suffix: Some("main".to_owned()),
                        password: Secret::new(db_password),
                    };
                    self.agent_step(&job, step, request)
                        .await
                        .map(|reply| step_data::database(&reply))
                        .map_err(Failure::from)
                }
                ProvisioningStep::WelcomeEmail => self.welcome_email(&job, &customer.email).await,
            };
            self.record(task.id, holder, step, &outcome).await?;
            outcome?;
        }
        Ok(ServiceChange::Activate)
    }

    async fn agent_step<R: Request>(
        &self,
        job: &ProvisionJob<'_>,
        step: ProvisioningStep,
        request: R,
    ) -> Result<R::Reply, CommandError> {
        // The same key on every attempt of this step, so the agent can recognise a repeat.
        let key = format!("task:{}:step:{}", job.task.id, step.as_str());
        self.command(job.server.id, request, &key).await
    }

    /// Picks and reserves a server; `Waiting` when none is eligible.
    async fn place(&self, service: &Service, product: &Product) -> Result<Server, Failure> {
        let mut candidates = Vec::new();
        for kind in PanelKind::ALL {
            candidates.extend(
                self.store
                    .placement_candidates(&product.server_group, kind)
                    .await?,
            );
        }
        let ranked = placement::rank(&candidates, |c| {
            self.fleet
                .latest_load(c.server.id)
                .filter(|_| self.fleet.is_connected(c.server.id))
        });
        for candidate in ranked {
            match self
                .store
                .assign_server(service.id, candidate.server.id)
                .await
            {
                Ok(()) => {
                    tracing::info!(service_id = %service.id, server = %candidate.server.hostname, "service placed");
                    return Ok(candidate.server.clone());
                }
                // Full since we looked (a concurrent placement took the slot): try the next.
                Err(StoreError::Conflict(_)) => {
                    let now = self.store.get_service(service.id).await?;
                    if let Some(id) = now.server_id {
                        return Ok(self.store.get_server(id.into()).await?);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Failure::Waiting(placement::no_server_reason(
            &product.server_group,
            candidates.len(),
        )))
    }

    /// The service's panel username and password: chosen once, stored (password sealed), and
    /// reused by every retry.
    async fn panel_credentials(
        &self,
        service: &Service,
        kind: PanelKind,
    ) -> Result<(String, String), Failure> {
        let fresh = self.store.get_service(service.id).await?;
        if let (Some(username), Some(sealed)) = (&fresh.username, &fresh.password_encrypted) {
            let password = self
                .cipher
                .open_string(sealed)
                .map_err(|e| Failure::Permanent(format!("stored password: {e}")))?;
            return Ok((username.clone(), password));
        }
        let domain = DomainName::parse(&service.domain)
            .map_err(|e| Failure::Permanent(format!("domain: {e}")))?;
        let password = generate_password().map_err(|e| Failure::Retryable(e.to_string()))?;
        let sealed = self
            .cipher
            .seal_str(&password)
            .map_err(|e| Failure::Retryable(e.to_string()))?;
        for attempt in 0..100 {
            let username = username_for(&domain, kind, attempt);
            match self
                .store
                .set_service_credentials(service.id, username.as_str(), &sealed)
                .await
            {
                Ok(()) => return Ok((username.as_str().to_owned(), password)),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Failure::Permanent(format!(
            "no free username for {} after 100 attempts",
            service.domain
        )))
    }

    async fn service_secret(
        &self,
        service: ServiceId,
        which: ServiceSecret,
    ) -> Result<String, Failure> {
        let candidate = generate_password().map_err(|e| Failure::Retryable(e.to_string()))?;
        let sealed = self
            .cipher
            .seal_str(&candidate)
            .map_err(|e| Failure::Retryable(e.to_string()))?;
        let kept = self
            .store
            .keep_service_secret(service, which, &sealed)
            .await?;
        self.cipher
            .open_string(&kept)
            .map_err(|e| Failure::Permanent(format!("stored secret: {e}")))
    }

    /// Queues the welcome email in the outbox (committed before any sending, deduplicated per
    /// service) and wakes the sender, which delivers it (to SMTP, or with `EMAIL_PROVIDER=log`
    /// to the log without its body). The context is sealed as a whole, and each secret in it is
    /// the service's own sealed value, opened only by the sender to render.
    async fn welcome_email(&self, job: &ProvisionJob<'_>, to: &str) -> Result<Value, Failure> {
        let service = self.store.get_service(job.service.id).await?;
        let panel_password = service
            .password_encrypted
            .clone()
            .ok_or_else(|| Failure::Retryable("the service has no password yet".to_owned()))?;
        // Steps finished in this run are not in the claimed task: read them back.
        let steps = self.store.get_task(job.task.id).await?.result.0.steps;
        let step_data = |name: &str| {
            steps
                .iter()
                .find(|s| s.step == name && s.status == "success")
                .map(|s| s.data.clone())
        };
        let mailbox = match step_data(ProvisioningStep::Email.as_str()) {
            Some(data) => {
                let sealed = self
                    .sealed_service_secret(service.id, ServiceSecret::Mailbox)
                    .await?;
                json!({ "address": data["default_email"], "password_sealed": sealed })
            }
            None => Value::Null,
        };
        let database = match step_data(ProvisioningStep::Database.as_str())
            .and_then(|d| Some((d["database_names"].get(0)?.as_str()?.to_owned(), d)))
        {
            Some((name, data)) => {
                let sealed = self
                    .sealed_service_secret(service.id, ServiceSecret::Database)
                    .await?;
                let user = data["database_user"].as_str().unwrap_or(&name).to_owned();
                let host = data["host"].as_str().unwrap_or("localhost").to_owned();
                json!({ "name": name, "user": user, "host": host, "password_sealed": sealed })
            }
            None => Value::Null,
        };
        let nameservers: Vec<&str> = [
            job.server.nameserver1.as_str(),
            job.server.nameserver2.as_str(),
        ]
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
        let body = json!({
            "domain": job.service.domain,
            "panel_url": job.server.control_panel_url,
            "username": job.username,
            "password_sealed": panel_password,
            "nameservers": nameservers,
            "mailbox": mailbox,
            "database": database,
            "company_name": self.config.company_name.clone().or_else(|| self.config.company_domain.clone()),
            "support_email": self.config.support_email,
        });
        let sealed = self
            .cipher
            .seal_str(&body.to_string())
            .map_err(|e| Failure::Retryable(e.to_string()))?;
        let key = format!("welcome:service:{}", job.service.id);
        let subject = format!("Your hosting for {} is ready", job.service.domain);
        self.store
            .queue_email(&key, to, "welcome", &subject, &sealed)
            .await?;
        self.dispatcher.wake_queue(&EMAIL);
        // Committed to the outbox is as far as this step goes; the sender delivers it on its own
        // schedule. `sent` is read from the outbox when the task is shown.
        Ok(json!({ "sent": false, "queued": true, "to": to, "outbox_key": key }))
    }

    /// The service's sealed secret as stored (kept by `keep_service_secret`, which the step
    /// that created the mailbox or database already called, so this returns that value).
    async fn sealed_service_secret(
        &self,
        service: ServiceId,
        which: ServiceSecret,
    ) -> Result<String, Failure> {
        let candidate = generate_password().map_err(|e| Failure::Retryable(e.to_string()))?;
        let sealed = self
            .cipher
            .seal_str(&candidate)
            .map_err(|e| Failure::Retryable(e.to_string()))?;
        Ok(self
            .store
            .keep_service_secret(service, which, &sealed)
            .await?)
    }

    async fn lifecycle(
        &self,
        task: &Task,
        holder: &str,
        kind: TaskKind,
        service: &Service,
    ) -> Result<ServiceChange, Failure> {
        let (Some(server_id), Some(username)) = (service.server_id, service.username.clone())
        else {
            return Err(Failure::Permanent(format!(
                "service {} has no account to {}",
                service.id,
                kind.as_str()
            )));
        };
        let server = ServerId::from(server_id);
        let key = format!("task:{}:{}", task.id, kind.as_str());
        let params = &task.params.0;
        if kind == TaskKind::Unsuspend && service.status != ServiceStatus::Suspended {
            tracing::info!(service_id = %service.id, "unsuspend of a service that is not suspended: converging the panel only");
        }
        let (reply, change) = match kind {
            TaskKind::Suspend => {
                let reason = params
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("Suspended by mpanel")
                    .to_owned();
                let request = SuspendAccount {
                    username,
                    reason: Some(reason.clone()),
                };
                (
                    self.command(server, request, &key)
                        .await
                        .map(Reply::Suspended),
                    ServiceChange::Suspend { reason },
                )
            }
            TaskKind::Unsuspend => (
                self.command(server, UnsuspendAccount { username }, &key)
                    .await
                    .map(Reply::Unsuspended),
                ServiceChange::Unsuspend,
            ),
            TaskKind::Terminate => (
                self.command(server, TerminateAccount { username }, &key)
                    .await
                    .map(Reply::Terminated),
                ServiceChange::Terminate,
            ),
            TaskKind::ChangePackage => {
                let product_id =
                    params
                        .get("productId")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| {
                            Failure::Permanent(
                                "change_package: params.productId is missing".to_owned(),
                            )
                        })?;
                let product = self.store.get_product(product_id.into()).await?;
                let server_row = self.store.get_server(server).await?;
                let request = ChangePackage {
                    username,
                    package: product.package_for(server_row.control_panel).to_owned(),
                };
                (
                    self.command(server, request, &key)
                        .await
                        .map(Reply::PackageChanged),
                    ServiceChange::ChangeProduct {
                        product_id: product.id,
                    },
                )
            }
            TaskKind::ChangePassword => {
                let sealed = match params.get("passwordSealed").and_then(Value::as_str) {
                    Some(s) => s.to_owned(),
                    None => {
                        let p =
                            generate_password().map_err(|e| Failure::Retryable(e.to_string()))?;
                        self.cipher
                            .seal_str(&p)
                            .map_err(|e| Failure::Retryable(e.to_string()))?
                    }
                };
                let password = self
                    .cipher
                    .open_string(&sealed)
                    .map_err(|e| Failure::Permanent(format!("new password: {e}")))?;
                let request = ChangePassword {
                    username,
                    password: Secret::new(password),
                };
                (
                    self.command(server, request, &key)
                        .await
                        .map(Reply::PasswordChanged),
                    ServiceChange::NewPassword { sealed },
                )
            }
            TaskKind::Provision => unreachable!("provision tasks run in provision()"),
        };
        let data = reply
            .map(|reply| step_data::lifecycle(&reply))
            .map_err(Failure::from);
        let record = StepRecord {
            step: kind.as_str().to_owned(),
            status: if data.is_ok() { "success" } else { "failed" }.to_owned(),
            data: data.as_ref().cloned().unwrap_or(Value::Null),
            error: data.as_ref().err().map(Failure::message),
            finished_at: Some(now_ms()),
        };
        self.store.record_step(task.id, holder, &record).await?;
        data?;
        Ok(change)
    }
}

/// What every step of one provisioning run refers to.
struct ProvisionJob<'a> {
    task: &'a Task,
    server: &'a Server,
    service: &'a Service,
    username: &'a str,
}
