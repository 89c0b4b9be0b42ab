//! What a provisioning or lifecycle task does once the job runner (`crate::jobs`) has claimed
//! it: place a new service, run the six steps through the server's agent, or send one lifecycle
//! command; the runner records the outcome.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mpanel_common::command::{
    ACME_CAPABILITY, AcmeOrder, Certificate, CertificateDone, CertificateProvider, ChangePackage,
    ChangePassword, CreateAccount, CreateDatabase, CreateMailbox, EnsureDns, Reply, Request,
    RestoreBackup, SuspendAccount, TerminateAccount, UnsuspendAccount, Waiting,
};
use mpanel_common::ids::{ServerId, ServiceId};
use mpanel_common::status::{
    DnsProvider, ProvisioningStep, ServiceStatus, SslProvider, StepStatus, SuspensionReason,
    TaskKind, TaskStep,
};
use mpanel_common::username::{PanelKind, username_for};
use mpanel_common::{DomainName, Secret};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::credentials::generate_password;
use super::placement;
use super::step_data;
use crate::backups::BackupError;
use crate::config::Config;
use crate::crypto::Cipher;
use crate::fleet::{CommandError, Fleet};
use crate::jobs::Dispatcher;
use crate::store::billing::NewBillingJob;
use crate::store::lease_queue::{BILLING, EMAIL};
use crate::store::queue::ServiceChange;
use crate::store::{
    BackupPurpose, BackupRow, DynStore, NewCredentials, PlacementRefusal, Product, SealedSecrets,
    Server, Service, ServiceSecret, StepRecord, StoreError, Task, now_ms,
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
    /// The same failure with its message rewritten.
    fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Failure::Retryable(m) => Failure::Retryable(f(m)),
            Failure::Permanent(m) => Failure::Permanent(f(m)),
            Failure::Waiting(m) => Failure::Waiting(f(m)),
            Failure::LeaseLost => Failure::LeaseLost,
        }
    }

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

/// A task's work done: the change to its service, and the last step's record, which the
/// completion stores in its own write.
#[derive(Debug, Clone)]
pub struct Finished {
    pub change: ServiceChange,
    pub last_step: Option<StepRecord>,
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
    ) -> Result<Finished, Failure> {
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

    /// What is recorded of a step's outcome.
    fn step_record(step: ProvisioningStep, outcome: &Result<Value, Failure>) -> StepRecord {
        match outcome {
            Ok(data) => StepRecord {
                step: step.into(),
                status: StepStatus::Success,
                data: data.clone(),
                error: None,
                finished_at: Some(now_ms()),
            },
            Err(failure) => StepRecord {
                step: step.into(),
                status: if matches!(failure, Failure::Waiting(_)) {
                    StepStatus::Waiting
                } else {
                    StepStatus::Failed
                },
                data: Value::Null,
                error: Some(failure.message()),
                finished_at: Some(now_ms()),
            },
        }
    }

    /// Places the service (once), chooses its credentials (once), then runs the steps not yet
    /// successful, recording each (the last one's record is the completion's to write). A lost
    /// lease stops it before the next step.
    async fn provision(
        &self,
        task: &Task,
        holder: &str,
        service: Service,
        lost: &CancellationToken,
    ) -> Result<Finished, Failure> {
        let (product, customer_email) = self
            .store
            .product_and_contact(service.product_id, service.customer_id)
            .await?;
        let domain = DomainName::parse(&service.domain)
            .map_err(|e| Failure::Permanent(format!("domain: {e}")))?;
        let (server, credentials, secrets) =
            if service.server_id.is_none() && service.username.is_none() {
                self.place_with_credentials(&service, &product, &domain)
                    .await?
            } else {
                self.placed_with_credentials(&service, &product, &domain)
                    .await?
            };
        let mut run = ProvisionRun {
            task,
            finished: task
                .result
                .0
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Success)
                .map(|s| (s.step, s.data.clone()))
                .collect(),
            mailbox_sealed: secrets.mailbox,
            database_sealed: secrets.database,
            server,
            product,
            customer_email,
            domain,
            credentials,
            service,
        };
        let mut last_step = None;
        for step in ProvisioningStep::ALL {
            if run.finished.contains_key(&step.into()) {
                continue;
            }
            if lost.is_cancelled() {
                return Err(Failure::LeaseLost);
            }
            let started = std::time::Instant::now();
            let outcome = match step {
                ProvisioningStep::Account => self.account_step(&run).await,
                ProvisioningStep::Dns => self.dns_step(&run).await,
                ProvisioningStep::Ssl => self.ssl_step(&run).await,
                ProvisioningStep::Email => self.mailbox_step(&mut run).await,
                ProvisioningStep::Database => self.database_step(&mut run).await,
                ProvisioningStep::WelcomeEmail => self.welcome_email(&run).await,
            };
            crate::telemetry::metrics::step(
                step.as_str(),
                match &outcome {
                    Ok(_) => "success",
                    Err(Failure::Waiting(_)) => "waiting",
                    Err(Failure::LeaseLost) => "lease_lost",
                    Err(_) => "failed",
                },
                started.elapsed(),
            );
            let record = Self::step_record(step, &outcome);
            if outcome.is_ok() && Some(&step) == ProvisioningStep::ALL.last() {
                last_step = Some(record);
            } else {
                self.store.record_step(task.id, holder, &record).await?;
            }
            run.finished.insert(step.into(), outcome?);
        }
        Ok(Finished {
            change: ServiceChange::Activate,
            last_step,
        })
    }

    async fn account_step(&self, run: &ProvisionRun<'_>) -> Result<Value, Failure> {
        let request = CreateAccount {
            service_id: run.service.id,
            username: run.credentials.username.clone(),
            domain: run.domain.clone(),
            password: Secret::new(run.credentials.password.expose().clone()),
            package: run.product.package_for(run.server.control_panel).to_owned(),
            contact_email: run.customer_email.clone(),
            quota_mb: u64::try_from(run.product.disk_mb).ok(),
            ip: Some(server_ip(&run.server)?),
        };
        let reply = self
            .agent_step(run, ProvisioningStep::Account, request)
            .await?;
        Ok(step_data::account(&reply, &run.server))
    }

    /// PowerDNS zones are the controller's own to write; otherwise the panel's DNS, through
    /// the agent.
    async fn dns_step(&self, run: &ProvisionRun<'_>) -> Result<Value, Failure> {
        let server = &run.server;
        if server.dns_provider == DnsProvider::Powerdns {
            return crate::dns::ensure_powerdns_zone(&self.config, server, run.domain.as_str())
                .await
                .map_err(|e| {
                    if e.is_retryable() {
                        Failure::Retryable(e.to_string())
                    } else {
                        Failure::Permanent(e.to_string())
                    }
                });
        }
        let mut nameservers = Vec::new();
        for ns in [&server.nameserver1, &server.nameserver2] {
            if !ns.trim().is_empty() {
                nameservers.push(
                    DomainName::parse(ns).map_err(|e| {
                        Failure::Permanent(format!("server nameserver '{ns}': {e}"))
                    })?,
                );
            }
        }
        let request = EnsureDns {
            username: run.credentials.username.clone(),
            domain: run.domain.clone(),
            ip: server_ip(server)?,
            nameservers,
            ttl: None,
        };
        let reply = self.agent_step(run, ProvisioningStep::Dns, request).await?;
        Ok(step_data::panel_dns(&reply))
    }

    /// `ssl_provider` 'acme': the agent issues from its ACME CA and installs, and the
    /// certificate is recorded with its renewal time (two thirds of its life); one recorded
    /// already and not yet due for renewal is reused; a domain not pointing at the server yet
    /// waits (no failed attempt is counted). Otherwise, or when the agent has no `[acme]`
    /// section, the panel's own AutoSSL is asked to run.
    async fn ssl_step(&self, run: &ProvisionRun<'_>) -> Result<Value, Failure> {
        let server = &run.server;
        let autossl = Certificate {
            username: run.credentials.username.clone(),
            domain: run.domain.clone(),
            provider: CertificateProvider::AutoSsl,
        };
        if server.ssl_provider != SslProvider::Acme {
            let done = self.agent_step(run, ProvisioningStep::Ssl, autossl).await?;
            return Ok(step_data::ssl(&done, None));
        }
        let service = &run.service;
        // A retried step (or a task run again) finds the certificate an earlier attempt
        // installed: while it is valid and not yet due for renewal it is kept, and no new one
        // is ordered.
        if let Some(cert) = self
            .store
            .get_certificate(service.id, &service.domain)
            .await?
            .filter(|c| crate::ssl::is_reusable(c, now_ms()))
        {
            tracing::info!(service_id = %service.id, serial = cert.serial.as_deref().unwrap_or_default(), "reusing the certificate already issued");
            return Ok(step_data::reused_ssl(&cert));
        }
        // A disconnected agent advertises nothing; its request fails as Offline.
        if self.fleet.is_connected(server.id)
            && !self.fleet.has_capability(server.id, ACME_CAPABILITY)
        {
            // 'acme' is the default provider; an agent not set up for it keeps the site on the
            // panel's AutoSSL rather than failing the order, and the step data says so.
            tracing::warn!(server = %server.hostname, "the agent has no [acme] section; using the panel's AutoSSL");
            let done = self.agent_step(run, ProvisioningStep::Ssl, autossl).await?;
            return Ok(step_data::ssl(
                &done,
                Some("the agent has no [acme] section"),
            ));
        }
        let request = Certificate {
            provider: CertificateProvider::Acme(AcmeOrder {
                ip: server_ip(server)?,
                names: Vec::new(),
            }),
            ..autossl
        };
        match self.agent_step(run, ProvisioningStep::Ssl, request).await {
            Ok(done @ CertificateDone::AcmeIssued(_)) => {
                let CertificateDone::AcmeIssued(c) = &done else {
                    unreachable!("matched above")
                };
                let cert = crate::ssl::issued_record(service.id, &service.domain, c);
                self.store.record_certificate_issued(&cert).await?;
                Ok(step_data::ssl(&done, None))
            }
            Ok(CertificateDone::AutoSslRequested) => Err(Failure::Permanent(
                "the agent answered an ACME request with AutoSSL".to_owned(),
            )),
            Err(CommandError::Waiting(waiting @ Waiting::Dns { .. })) => {
                let message = waiting.to_string();
                self.store
                    .record_certificate_waiting_for_dns(
                        service.id,
                        &service.domain,
                        "acme",
                        &message,
                    )
                    .await?;
                Err(Failure::Waiting(message))
            }
            Err(other) => Err(other.into()),
        }
    }

    async fn mailbox_step(&self, run: &mut ProvisionRun<'_>) -> Result<Value, Failure> {
        let (password, sealed) = self
            .service_secret(run.service.id, ServiceSecret::Mailbox, &run.mailbox_sealed)
            .await?;
        run.mailbox_sealed = Some(sealed);
        let request = CreateMailbox {
            username: run.credentials.username.clone(),
            domain: run.domain.clone(),
            local_part: "admin".to_owned(),
            password,
            quota_mb: u64::try_from(run.product.email_quota_mb).ok(),
        };
        let reply = self
            .agent_step(run, ProvisioningStep::Email, request)
            .await?;
        Ok(step_data::email(&reply))
    }

    async fn database_step(&self, run: &mut ProvisionRun<'_>) -> Result<Value, Failure> {
        if run.product.databases == 0 {
            return Ok(step_data::no_database());
        }
        let (password, sealed) = self
            .service_secret(
                run.service.id,
                ServiceSecret::Database,
                &run.database_sealed,
            )
            .await?;
        run.database_sealed = Some(sealed);
        let request = CreateDatabase {
            username: run.credentials.username.clone(),
            kind: run.server.control_panel,
            domain: run.domain.clone(),
            name_suffix: Some("main".to_owned()),
            password,
        };
        let reply = self
            .agent_step(run, ProvisioningStep::Database, request)
            .await?;
        Ok(step_data::database(&reply))
    }

    async fn agent_step<R: Request>(
        &self,
        run: &ProvisionRun<'_>,
        step: ProvisioningStep,
        request: R,
    ) -> Result<R::Reply, CommandError> {
        // The same key on every attempt of this step, so the agent can recognise a repeat.
        let key = format!("task:{}:step:{}", run.task.id, step.as_str());
        self.command(run.server.id, request, &key).await
    }

    /// The eligible servers of the product's group, least loaded first, and how many were
    /// considered.
    async fn ranked_servers(&self, product: &Product) -> Result<(Vec<Server>, usize), Failure> {
        let candidates = self
            .store
            .placement_candidates(&product.server_group)
            .await?;
        let ranked = placement::rank(&candidates, |c| {
            self.fleet
                .latest_load(c.server.id)
                .filter(|_| self.fleet.is_connected(c.server.id))
        })
        .into_iter()
        .map(|c| c.server.clone())
        .collect();
        Ok((ranked, candidates.len()))
    }

    /// A new service's server and credentials, chosen together: the least-loaded eligible
    /// server is reserved with a free username on it, the password and the other secrets in
    /// the same write. `Waiting` when no server is eligible.
    async fn place_with_credentials(
        &self,
        service: &Service,
        product: &Product,
        domain: &DomainName,
    ) -> Result<(Server, PanelCredentials, SealedSecrets), Failure> {
        let (ranked, considered) = self.ranked_servers(product).await?;
        let (password, sealed) = self.new_secret()?;
        let offered = self.offered_secrets(product.databases > 0)?;
        for server in ranked {
            let mut attempt = 0;
            let kept = loop {
                if attempt == 100 {
                    return Err(no_free_username(service));
                }
                let username = username_for(domain, server.control_panel, attempt);
                let credentials = NewCredentials {
                    username: username.as_str(),
                    password_sealed: &sealed,
                    secrets: &offered,
                };
                match self
                    .store
                    .place_with_credentials(service.id, server.id, &credentials)
                    .await?
                {
                    Ok(kept) => break Some((username, kept)),
                    Err(PlacementRefusal::UsernameTaken) => attempt += 1,
                    // Full since we looked (a concurrent placement took the slot): the next.
                    Err(PlacementRefusal::ServerFull) => break None,
                    // Another worker placed it meanwhile: go on from what it chose.
                    Err(PlacementRefusal::AlreadyPlaced) => {
                        let now = self.store.get_service(service.id).await?;
                        return self.placed_with_credentials(&now, product, domain).await;
                    }
                }
            };
            if let Some((username, kept)) = kept {
                tracing::info!(service_id = %service.id, server = %server.hostname, "service placed");
                let credentials = PanelCredentials {
                    username: username.as_str().to_owned(),
                    password: Secret::new(password),
                    sealed,
                };
                return Ok((server, credentials, kept));
            }
        }
        Err(Failure::Waiting(placement::no_server_reason(
            &product.server_group,
            considered,
        )))
    }

    /// The server and credentials of a service placed already (or given credentials already):
    /// whatever is missing is chosen now, one at a time.
    async fn placed_with_credentials(
        &self,
        service: &Service,
        product: &Product,
        domain: &DomainName,
    ) -> Result<(Server, PanelCredentials, SealedSecrets), Failure> {
        let server = match service.server_id {
            Some(id) => self.store.get_server(id.into()).await?,
            None => self.place(service, product).await?,
        };
        let (credentials, secrets) = self
            .panel_credentials(service, domain, server.control_panel, product.databases > 0)
            .await?;
        Ok((server, credentials, secrets))
    }

    /// Picks and reserves a server; `Waiting` when none is eligible.
    async fn place(&self, service: &Service, product: &Product) -> Result<Server, Failure> {
        let (ranked, considered) = self.ranked_servers(product).await?;
        for server in ranked {
            match self.store.assign_server(service.id, server.id).await {
                Ok(()) => {
                    tracing::info!(service_id = %service.id, server = %server.hostname, "service placed");
                    return Ok(server);
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
            considered,
        )))
    }

    /// The service's panel username and password, and its mailbox and database passwords:
    /// chosen once, stored sealed in one write before any step runs (a database password only
    /// when the product has databases), and reused by every retry. `service` is the row read
    /// when the task was claimed.
    async fn panel_credentials(
        &self,
        service: &Service,
        domain: &DomainName,
        kind: PanelKind,
        wants_database: bool,
    ) -> Result<(PanelCredentials, SealedSecrets), Failure> {
        if let (Some(username), Some(sealed)) = (&service.username, &service.password_encrypted) {
            let password = self
                .cipher
                .open_string(sealed)
                .map_err(|e| Failure::Permanent(format!("stored password: {e}")))?;
            let kept = SealedSecrets {
                mailbox: service.mailbox_password_encrypted.clone(),
                database: service.database_password_encrypted.clone(),
            };
            return Ok((
                PanelCredentials {
                    username: username.clone(),
                    password: Secret::new(password),
                    sealed: sealed.clone(),
                },
                kept,
            ));
        }
        let (password, sealed) = self.new_secret()?;
        let offered = self.offered_secrets(wants_database)?;
        for attempt in 0..100 {
            let username = username_for(domain, kind, attempt);
            match self
                .store
                .set_service_credentials_and_secrets(
                    service.id,
                    username.as_str(),
                    &sealed,
                    &offered,
                )
                .await
            {
                Ok(kept) => {
                    return Ok((
                        PanelCredentials {
                            username: username.as_str().to_owned(),
                            password: Secret::new(password),
                            sealed,
                        },
                        kept,
                    ));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(no_free_username(service))
    }

    /// New mailbox and database passwords, sealed, to offer with a service's credentials (a
    /// database one only when the product has databases).
    fn offered_secrets(&self, wants_database: bool) -> Result<SealedSecrets, Failure> {
        Ok(SealedSecrets {
            mailbox: Some(self.new_secret()?.1),
            database: if wants_database {
                Some(self.new_secret()?.1)
            } else {
                None
            },
        })
    }

    /// A new password, plain and sealed.
    fn new_secret(&self) -> Result<(String, String), Failure> {
        let password = generate_password().map_err(|e| Failure::Retryable(e.to_string()))?;
        let sealed = self
            .cipher
            .seal_str(&password)
            .map_err(|e| Failure::Retryable(e.to_string()))?;
        Ok((password, sealed))
    }

    /// The mailbox or database password of the service, plain and sealed: the one already kept
    /// (`kept`, from the credentials' write), or else the first one ever offered, so every
    /// retry of the step hands the panel the same one.
    async fn service_secret(
        &self,
        service: ServiceId,
        which: ServiceSecret,
        kept: &Option<String>,
    ) -> Result<(Secret<String>, String), Failure> {
        let kept = match kept {
            Some(sealed) => sealed.clone(),
            None => {
                let (_, candidate) = self.new_secret()?;
                self.store
                    .keep_service_secret(service, which, &candidate)
                    .await?
            }
        };
        let plain = self
            .cipher
            .open_string(&kept)
            .map_err(|e| Failure::Permanent(format!("stored secret: {e}")))?;
        Ok((Secret::new(plain), kept))
    }

    /// Queues the welcome email in the outbox (committed before any sending, deduplicated per
    /// service) and wakes the sender, which delivers it (to SMTP, or with `EMAIL_PROVIDER=log`
    /// to the log without its body). The context is sealed as a whole, and each secret in it is
    /// the service's own sealed value, opened only by the sender to render.
    async fn welcome_email(&self, run: &ProvisionRun<'_>) -> Result<Value, Failure> {
        let step_data = |step: ProvisioningStep| run.finished.get(&step.into());
        let mailbox = match (step_data(ProvisioningStep::Email), &run.mailbox_sealed) {
            (Some(data), Some(sealed)) => {
                json!({ "address": data["default_email"], "password_sealed": sealed })
            }
            _ => Value::Null,
        };
        let database = match (step_data(ProvisioningStep::Database), &run.database_sealed) {
            (Some(data), Some(sealed)) => {
                match data["database_names"].get(0).and_then(Value::as_str) {
                    Some(name) => {
                        let user = data["database_user"].as_str().unwrap_or(name);
                        let host = data["host"].as_str().unwrap_or("localhost");
                        json!({ "name": name, "user": user, "host": host, "password_sealed": sealed })
                    }
                    None => Value::Null,
                }
            }
            _ => Value::Null,
        };
        let server = &run.server;
        let nameservers: Vec<&str> = [server.nameserver1.as_str(), server.nameserver2.as_str()]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect();
        let body = json!({
            "domain": run.service.domain,
            "panel_url": server.control_panel_url,
            "username": run.credentials.username,
            "password_sealed": run.credentials.sealed,
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
        let key = format!("welcome:service:{}", run.service.id);
        let subject = format!("Your hosting for {} is ready", run.service.domain);
        let to = &run.customer_email;
        self.store
            .queue_email(&key, to, "welcome", &subject, &sealed)
            .await?;
        self.dispatcher.wake_queue(&EMAIL);
        // Committed to the outbox is as far as this step goes; the sender delivers it on its own
        // schedule. `sent` is read from the outbox when the task is shown.
        Ok(json!({ "sent": false, "queued": true, "to": to, "outbox_key": key }))
    }

    async fn lifecycle(
        &self,
        task: &Task,
        holder: &str,
        kind: TaskKind,
        service: &Service,
    ) -> Result<Finished, Failure> {
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
        let mut final_backup: Option<BackupRow> = None;
        if kind == TaskKind::Unsuspend && service.status != ServiceStatus::Suspended {
            tracing::info!(service_id = %service.id, "unsuspend of a service that is not suspended: converging the panel only");
        }
        let (reply, change) = match kind {
            TaskKind::Suspend => {
                // The reason code is the service's (`overdue`, `admin`, …); the panel is told
                // the admin's note, or the code.
                let reason = params
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or(SuspensionReason::Admin.as_str())
                    .to_owned();
                let shown = params
                    .get("note")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("suspended: {reason}"), str::to_owned);
                let request = SuspendAccount {
                    username,
                    reason: Some(shown),
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
            TaskKind::Terminate => {
                if params.get("finalBackup").and_then(Value::as_bool) == Some(true) {
                    match self.final_backup(task, service).await {
                        Ok(row) => final_backup = Some(row),
                        Err(failure) => {
                            let failure = failure.map_message(|m| {
                                format!("final backup failed, so the account is kept: {m}")
                            });
                            self.store
                                .record_step(
                                    task.id,
                                    holder,
                                    &StepRecord {
                                        step: TaskStep::Lifecycle(kind),
                                        status: StepStatus::Failed,
                                        data: Value::Null,
                                        error: Some(failure.message()),
                                        finished_at: Some(now_ms()),
                                    },
                                )
                                .await?;
                            return Err(failure);
                        }
                    }
                }
                (
                    self.command(server, TerminateAccount { username }, &key)
                        .await
                        .map(Reply::Terminated),
                    ServiceChange::Terminate,
                )
            }
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
            TaskKind::Restore => {
                let backup_id =
                    params
                        .get("backupId")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| {
                            Failure::Permanent("restore: params.backupId is missing".to_owned())
                        })?;
                let backup = self.store.get_backup(backup_id).await?;
                if backup.status != "completed" {
                    return Err(Failure::Permanent(format!(
                        "backup {backup_id} is {}; only a completed backup can be restored",
                        backup.status
                    )));
                }
                // The archive is on the server that took it.
                let on = backup.server_id.map_or(server, ServerId::from);
                let request = RestoreBackup {
                    username,
                    location: backup.location,
                };
                (
                    self.command(on, request, &key)
                        .await
                        .map(Reply::BackupRestored),
                    ServiceChange::Restore,
                )
            }
            TaskKind::Provision => unreachable!("provision tasks run in provision()"),
        };
        let data = reply
            .map(|reply| {
                let mut data = step_data::lifecycle(&reply);
                if let (Some(row), Some(object)) = (&final_backup, data.as_object_mut()) {
                    object.insert(
                        "finalBackup".to_owned(),
                        json!({ "id": row.id, "location": row.location, "sizeBytes": row.size_bytes }),
                    );
                }
                data
            })
            .map_err(Failure::from);
        let record = StepRecord {
            step: TaskStep::Lifecycle(kind),
            status: if data.is_ok() {
                StepStatus::Success
            } else {
                StepStatus::Failed
            },
            data: data.as_ref().cloned().unwrap_or(Value::Null),
            error: data.as_ref().err().map(Failure::message),
            finished_at: Some(now_ms()),
        };
        if let Err(failure) = data {
            self.store.record_step(task.id, holder, &record).await?;
            return Err(failure);
        }
        if kind == TaskKind::Terminate
            && let Some(invoice) = params.get("noticeInvoiceId").and_then(Value::as_i64)
        {
            self.queue_termination_notice(service, invoice).await?;
        }
        Ok(Finished {
            change,
            last_step: Some(record),
        })
    }

    /// The backup a termination takes before removing the account: the one an earlier attempt
    /// of this task completed, or a new one. Its agent key is the task's, so an archive an
    /// interrupted attempt started is waited for, not taken twice.
    async fn final_backup(&self, task: &Task, service: &Service) -> Result<BackupRow, Failure> {
        if let Some(row) = self
            .store
            .final_backup_since(service.id, task.created_at)
            .await?
        {
            return Ok(row);
        }
        let timeout = Duration::from_secs(u64::from(self.config.provisioning_command_timeout_secs));
        crate::backups::take_backup(
            &self.store,
            &self.fleet,
            service.id,
            BackupPurpose::Final,
            Some(format!("task:{}:final-backup", task.id)),
            timeout,
            now_ms(),
        )
        .await
        .map_err(|e| match e {
            BackupError::Agent(e) => Failure::from(e),
            BackupError::Store(e) => Failure::from(e),
            BackupError::NotPlaced => Failure::Permanent(e.to_string()),
        })
    }

    /// Tells the customer their service was terminated for the unpaid `invoice`; once.
    async fn queue_termination_notice(
        &self,
        service: &Service,
        invoice: i64,
    ) -> Result<(), Failure> {
        self.store
            .enqueue_billing_job(&NewBillingJob {
                kind: "invoice_email",
                dedupe_key: format!("invoice-{invoice}-termination-notice"),
                invoice_id: Some(invoice),
                customer_id: Some(service.customer_id.get()),
                service_id: Some(service.id.get()),
                params: json!({ "template": "service_terminated" }),
            })
            .await?;
        self.dispatcher.wake_queue(&BILLING);
        Ok(())
    }
}

/// What the steps of one provisioning run share: the rows read once when it started, the
/// credentials, and the data of every step finished so far (earlier attempts' and this one's).
struct ProvisionRun<'a> {
    task: &'a Task,
    service: Service,
    product: Product,
    server: Server,
    customer_email: String,
    domain: DomainName,
    credentials: PanelCredentials,
    /// The sealed mailbox and database passwords, once kept.
    mailbox_sealed: Option<String>,
    database_sealed: Option<String>,
    finished: HashMap<TaskStep, Value>,
}

/// The service's panel login: the password plain for the panel, sealed for the welcome email.
struct PanelCredentials {
    username: String,
    password: Secret<String>,
    sealed: String,
}

fn no_free_username(service: &Service) -> Failure {
    Failure::Permanent(format!(
        "no free username for {} after 100 attempts",
        service.domain
    ))
}

fn server_ip(server: &Server) -> Result<IpAddr, Failure> {
    server.ip_address.trim().parse::<IpAddr>().map_err(|_| {
        Failure::Permanent(format!(
            "server {}: ip_address '{}' is not an IP address",
            server.hostname, server.ip_address
        ))
    })
}
