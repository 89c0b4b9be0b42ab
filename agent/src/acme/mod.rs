//! Certificates from an ACME CA (Let's Encrypt, or pebble in tests) with instant-acme 0.8.
//!
//! [`AcmeIssuer::issue`] checks that the names point at this server, then orders, answers
//! HTTP-01 by writing the key authorisation into the account's web root through the panel
//! driver, finalises with a fresh key and returns key, leaf, chain and the facts the controller
//! records. The ACME account is created once and its credentials kept (0600) in the agent's
//! state directory.
//!
//! What can go wrong is typed ([`AcmeError`]) so the command layer can tell the controller
//! whether to wait (DNS not pointing here yet), back off (rate limit, with the CA's retry time),
//! retry, or give up. `badNonce` is retried here on top of instant-acme's own three tries, since
//! CAs may reject any nonce (pebble rejects 5 % by default).
//!
//! This module does not decide *when* to issue or renew (the controller schedules that from
//! `renew_after`) and does not install anything itself (the `ssl` command does, through the
//! panel). Not done yet: DNS-01 (needed for wildcards, so wildcard names are refused) and ARI.

mod certificate;
mod client;
mod dns;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use tracing::{debug, info};

pub use certificate::{CertificateFacts, certificate_facts, renew_after_ms, split_chain};

use crate::panel::{ControlPanel, PanelError, Secret};
use crate::state::StateDir;
use client::AcmeHttp;

/// What an agent that can issue advertises among its capabilities; the controller asks only
/// such agents for an ACME certificate.
pub const CAPABILITY: &str = mpanel_common::command::ACME_CAPABILITY;

/// Let's Encrypt's production directory: the default when `[acme] directory` is not set.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Extra tries of one ACME request refused with `badNonce` (each is three tries inside
/// instant-acme).
const BAD_NONCE_RETRIES: u32 = 8;

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
/// Problems that asking again with the same names cannot fix.
const REFUSALS: &[&str] = &[
    "urn:ietf:params:acme:error:rejectedIdentifier",
    "urn:ietf:params:acme:error:unsupportedIdentifier",
    "urn:ietf:params:acme:error:caa",
    "urn:ietf:params:acme:error:malformed",
];

/// The `[acme]` settings, resolved.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    pub contact_email: Option<String>,
    /// PEM roots to trust for the ACME server besides the system's (a test or private CA).
    pub ca_bundle: Option<PathBuf>,
    /// Ask this DNS server instead of the system resolver in the pointing check.
    pub dns_resolver: Option<SocketAddr>,
    /// Where the account credentials are kept.
    pub state_dir: PathBuf,
    /// How long to wait for validation and for the certificate.
    pub poll_timeout: Duration,
}

impl AcmeSettings {
    pub fn new(directory: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            directory: directory.into(),
            contact_email: None,
            ca_bundle: None,
            dns_resolver: None,
            state_dir: state_dir.into(),
            poll_timeout: Duration::from_secs(90),
        }
    }
}

/// One certificate to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The panel account whose web root answers the challenges.
    pub username: String,
    /// The site; it must point here, or nothing is ordered.
    pub domain: String,
    /// This server's address, as the controller knows it.
    pub ip: IpAddr,
    /// Every name wanted, the domain included. Extra names that do not point here yet are left
    /// out of this certificate rather than holding up the site.
    pub names: Vec<String>,
}

/// An issued certificate, ready for the panel.
#[derive(Debug)]
pub struct Issued {
    pub private_key: Secret,
    pub certificate_pem: String,
    /// Intermediates, leaf excluded.
    pub chain_pem: String,
    pub facts: CertificateFacts,
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The name does not resolve to this server yet; no order was made.
    #[error("waiting for DNS: {name} resolves to {found}, not to this server ({expected})")]
    WaitingForDns {
        name: String,
        found: String,
        expected: IpAddr,
    },
    #[error("rate limited by the ACME server; {}: {detail}", retry_text(*.retry_after))]
    RateLimited {
        detail: String,
        retry_after: Option<SystemTime>,
    },
    /// The CA refuses these names (CAA, policy, malformed): asking again will not help.
    #[error("the ACME server refuses: {0}")]
    Refused(String),
    /// Validation failed, the CA or network misbehaved: worth another attempt later.
    #[error("ACME: {0}")]
    Transient(String),
    /// This agent's ACME setup is wrong (CA bundle, state directory, unsupported request).
    #[error("ACME setup: {0}")]
    Setup(String),
    #[error(transparent)]
    Panel(#[from] PanelError),
}

fn retry_text(at: Option<SystemTime>) -> String {
    match at.map(|t| t.duration_since(SystemTime::now()).unwrap_or_default()) {
        Some(wait) => format!("retry after {}s", wait.as_secs().max(1)),
        None => "retry later".to_owned(),
    }
}

impl AcmeError {
    /// What the command waits for, when the CA was not asked because DNS is not ready: the
    /// controller waits without counting a failed attempt.
    pub fn waiting(&self) -> Option<mpanel_common::command::Waiting> {
        match self {
            AcmeError::WaitingForDns {
                name,
                found,
                expected,
            } => Some(mpanel_common::command::Waiting::Dns {
                reason: format!("{name} resolves to {found}, not to this server ({expected})"),
            }),
            _ => None,
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            AcmeError::WaitingForDns { .. }
            | AcmeError::RateLimited { .. }
            | AcmeError::Transient(_) => true,
            AcmeError::Refused(_) | AcmeError::Setup(_) => false,
            AcmeError::Panel(e) => e.class() == crate::panel::ErrorClass::Retryable,
        }
    }
}

fn is_bad_nonce(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(p) if p.r#type.as_deref() == Some(BAD_NONCE))
}

/// Runs one ACME request again while the CA refuses its nonce.
macro_rules! nonce_retry {
    ($call:expr) => {{
        let mut tries = 0;
        loop {
            match $call {
                Err(e) if is_bad_nonce(&e) && tries < BAD_NONCE_RETRIES => {
                    tries += 1;
                    debug!(tries, "badNonce; retrying the ACME request");
                }
                other => break other,
            }
        }
    }};
}

/// Issues certificates for this host's sites; one per agent, shared by all commands.
pub struct AcmeIssuer {
    settings: AcmeSettings,
    http: AcmeHttp,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl std::fmt::Debug for AcmeIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeIssuer")
            .field("directory", &self.settings.directory)
            .finish_non_exhaustive()
    }
}

impl AcmeIssuer {
    /// Reads the CA bundle; makes no request.
    pub fn new(settings: AcmeSettings) -> Result<Self, AcmeError> {
        let bundle = match &settings.ca_bundle {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| AcmeError::Setup(format!("ca_bundle {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let http = AcmeHttp::new(bundle.as_deref()).map_err(AcmeError::Setup)?;
        Ok(Self {
            settings,
            http,
            account: tokio::sync::Mutex::new(None),
        })
    }

    fn classify(&self, e: instant_acme::Error) -> AcmeError {
        match e {
            instant_acme::Error::Api(problem) => {
                let kind = problem.r#type.as_deref().unwrap_or_default();
                if kind == RATE_LIMITED {
                    AcmeError::RateLimited {
                        detail: problem.detail.clone().unwrap_or_default(),
                        retry_after: self.http.take_retry_after(),
                    }
                } else if REFUSALS.contains(&kind) {
                    AcmeError::Refused(problem.to_string())
                } else {
                    AcmeError::Transient(problem.to_string())
                }
            }
            other => AcmeError::Transient(other.to_string()),
        }
    }

    /// The credentials file for this directory: one account per CA.
    fn credentials_path(&self) -> PathBuf {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            self.settings.directory.as_bytes(),
        );
        let tag = hex::encode(&digest.as_ref()[..8]);
        self.settings
            .state_dir
            .join(format!("acme-account-{tag}.json"))
    }

    /// The ACME account: restored from the state directory, or created once and saved there.
    async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let path = self.credentials_path();
        let account = match std::fs::read(&path) {
            Ok(bytes) => {
                let credentials: AccountCredentials = serde_json::from_slice(&bytes)
                    .map_err(|e| AcmeError::Setup(format!("{}: {e}", path.display())))?;
                Account::builder_with_http(Box::new(self.http.clone()))
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| self.classify(e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let contact = self
                    .settings
                    .contact_email
                    .as_ref()
                    .map(|email| format!("mailto:{email}"));
                let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) = nonce_retry!(
                    Account::builder_with_http(Box::new(self.http.clone()))
                        .create(&new, self.settings.directory.clone(), None)
                        .await
                )
                .map_err(|e| self.classify(e))?;
                let json = serde_json::to_vec(&credentials)
                    .map_err(|e| AcmeError::Setup(format!("account credentials: {e}")))?;
                let state = StateDir::new(&self.settings.state_dir);
                state
                    .ensure()
                    .and_then(|()| state.write_private(&path, &json))
                    .map_err(|e| AcmeError::Setup(e.to_string()))?;
                info!(directory = %self.settings.directory, "ACME account created");
                account
            }
            Err(e) => return Err(AcmeError::Setup(format!("{}: {e}", path.display()))),
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// The requested names that point at `ip`, the domain first. `WaitingForDns` when the domain
    /// itself does not: then nothing is ordered.
    pub async fn names_pointing_here(
        &self,
        request: &IssueRequest,
    ) -> Result<Vec<String>, AcmeError> {
        let mut names = vec![request.domain.clone()];
        for name in &request.names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let mut pointing = Vec::with_capacity(names.len());
        for name in names {
            let found = dns::addresses(self.settings.dns_resolver, &name, request.ip)
                .await
                .map_err(AcmeError::Transient)?;
            if found.contains(&request.ip) {
                pointing.push(name);
            } else if name == request.domain {
                let found = if found.is_empty() {
                    "nothing".to_owned()
                } else {
                    found
                        .iter()
                        .map(IpAddr::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(AcmeError::WaitingForDns {
                    name,
                    found,
                    expected: request.ip,
                });
            } else {
                debug!(%name, "left out of the certificate: not pointing here yet");
            }
        }
        Ok(pointing)
    }

    /// Checks DNS, orders, answers HTTP-01 through `panel`, finalises and fetches the chain.
    pub async fn issue(
        &self,
        panel: &dyn ControlPanel,
        request: &IssueRequest,
    ) -> Result<Issued, AcmeError> {
        if let Some(wild) = request.names.iter().find(|n| n.starts_with("*.")) {
            return Err(AcmeError::Setup(format!(
                "{wild}: wildcard names need DNS-01, which this agent does not do yet"
            )));
        }
        let names = self.names_pointing_here(request).await?;
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
        let mut order = nonce_retry!(account.new_order(&NewOrder::new(&identifiers)).await)
            .map_err(|e| self.classify(e))?;
        debug!(names = ?names, url = order.url(), "ACME order created");

        self.answer_challenges(panel, request, &mut order).await?;

        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(self.settings.poll_timeout);
        let status = nonce_retry!(order.poll_ready(&policy).await).map_err(|e| self.classify(e))?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Transient(format!(
                "the CA could not validate {}: the order is {status:?}",
                names.join(", ")
            )));
        }

        let key = rcgen::KeyPair::generate()
            .map_err(|e| AcmeError::Setup(format!("generating the key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(names.clone())
            .map_err(|e| AcmeError::Setup(format!("certificate request: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeError::Setup(format!("certificate request: {e}")))?;
        nonce_retry!(order.finalize_csr(csr.der()).await).map_err(|e| self.classify(e))?;
        let chain =
            nonce_retry!(order.poll_certificate(&policy).await).map_err(|e| self.classify(e))?;

        let mut blocks = split_chain(&chain).into_iter();
        let leaf = blocks
            .next()
            .ok_or_else(|| AcmeError::Transient("the CA sent no certificate".to_owned()))?;
        let facts = certificate_facts(&leaf).map_err(AcmeError::Transient)?;
        info!(serial = %facts.serial, not_after_ms = facts.not_after_ms, "certificate issued");
        Ok(Issued {
            private_key: Secret::new(key.serialize_pem()),
            certificate_pem: leaf,
            chain_pem: blocks.collect(),
            facts,
        })
    }

    /// Answers every pending authorisation with HTTP-01; ones the CA already holds valid (a
    /// recent validation of the same name) are skipped.
    async fn answer_challenges(
        &self,
        panel: &dyn ControlPanel,
        request: &IssueRequest,
        order: &mut instant_acme::Order,
    ) -> Result<(), AcmeError> {
        // A badNonce while walking the authorisations restarts the walk; those done stay done.
        let mut done: HashSet<String> = HashSet::new();
        let mut restarts = 0;
        'walk: loop {
            let mut authorizations = order.authorizations();
            while let Some(next) = authorizations.next().await {
                let mut authz = match next {
                    Ok(a) => a,
                    Err(e) if is_bad_nonce(&e) && restarts < BAD_NONCE_RETRIES => {
                        restarts += 1;
                        continue 'walk;
                    }
                    Err(e) => return Err(self.classify(e)),
                };
                let url = authz.url().to_owned();
                if done.contains(&url) {
                    continue;
                }
                match authz.status {
                    AuthorizationStatus::Valid => {
                        debug!(url, "authorization already valid");
                        done.insert(url);
                        continue;
                    }
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(AcmeError::Transient(format!(
                            "authorization {url} is {other:?}"
                        )));
                    }
                }
                let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
                    AcmeError::Refused("the CA offers no HTTP-01 challenge".to_owned())
                })?;
                let key_authorization = challenge.key_authorization();
                panel
                    .write_acme_challenge(
                        &request.username,
                        &request.domain,
                        &challenge.token,
                        key_authorization.as_str(),
                    )
                    .await?;
                nonce_retry!(challenge.set_ready().await).map_err(|e| self.classify(e))?;
                done.insert(url);
            }
            return Ok(());
        }
    }
}
