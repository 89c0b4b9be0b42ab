//! Plesk driver: REST API v2 (`/api/v2`, header `X-API-Key`) for customers, subscriptions
//! (domains), DNS, databases and database users; the CLI gateway (`/api/v2/cli/<util>/call`) for
//! mail, plan changes and Let's Encrypt, which REST lacks; the XML API
//! (`/enterprise/control/agent.php`, header `KEY`) for certificate install.
//!
//! A Plesk "account" is a customer plus one subscription (a domain with hosting). The customer
//! carries our ownership marker in `external_id`; the subscription is added by
//! `complete_account`, so a run that died between the two calls is finished by the retry.
//!
//! Quirks handled here (panel-apis.md §2): clients and domains answer `201`, databases and
//! database users `200`; errors are `{code,message}` with a 4xx status; the CLI gateway answers
//! `200` even when the utility failed (`{code,stdout,stderr}`, non-zero `code`); XML errors come
//! as `status=error` + `errcode` inside an HTTP 200.

use std::path::PathBuf;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::info;

use super::account::{self, AccountCreation};
use super::http::{self, PanelEndpoint, Reply};
use super::types::*;
use super::{ControlPanel, check_acme_token, check_backup_name};

#[derive(Debug)]
pub struct PleskDriver {
    ep: PanelEndpoint,
    fs_root: PathBuf,
    /// How each customer's last restore through this driver ended (see `start_restore`).
    restores: std::sync::Mutex<std::collections::HashMap<String, RestoreState>>,
}

#[derive(Debug, Deserialize)]
struct Client {
    id: i64,
    login: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    status: Option<i64>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Domain {
    name: String,
    #[serde(default)]
    www_root: Option<String>,
    #[serde(default)]
    base_domain_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct DnsRow {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    opt: Option<String>,
    #[serde(default)]
    ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct Database {
    id: i64,
    name: String,
}

#[derive(Debug, Deserialize)]
struct DbUser {
    id: i64,
    login: String,
}

#[derive(Debug, Deserialize)]
struct DbServer {
    id: i64,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CliResult {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
}

impl PleskDriver {
    pub fn new(ep: PanelEndpoint, fs_root: PathBuf) -> Self {
        Self {
            ep,
            fs_root,
            restores: std::sync::Mutex::default(),
        }
    }

    /// One REST call. `body` is JSON for POST/PUT. Any 2xx is success: Plesk answers 201 for
    /// clients and domains but 200 for databases and database users.
    async fn rest(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        secrets: &[&Secret],
    ) -> Result<Value, PanelError> {
        let mut request = self
            .ep
            .request(method, &format!("/api/v2{path}"))
            .header("X-API-Key", http::secret_header(self.ep.token.expose())?)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = self.ep.send(operation, request).await?;
        self.check(operation, &reply, secrets)
    }

    fn check(
        &self,
        operation: &'static str,
        reply: &Reply,
        secrets: &[&Secret],
    ) -> Result<Value, PanelError> {
        let parsed: Option<Value> = serde_json::from_str(&reply.body).ok();
        if let Some(status_class) = http::status_class(reply.status) {
            let message = parsed
                .as_ref()
                .and_then(|v| v.get("message"))
                .and_then(Value::as_str)
                .map_or_else(
                    || format!("HTTP {}", reply.status),
                    |m| format!("HTTP {}: {m}", reply.status.as_u16()),
                );
            // A duplicate create is a plain 400 whose exact text is UNCONFIRMED; the text
            // decides only between Permanent and Conflict, never whether to look again.
            let class = match status_class {
                ErrorClass::Permanent => match http::text_class(&message) {
                    ErrorClass::Conflict => ErrorClass::Conflict,
                    ErrorClass::Retryable => ErrorClass::Retryable,
                    _ => ErrorClass::Permanent,
                },
                other => other,
            };
            return Err(PanelError::new(
                class,
                operation,
                self.ep.scrub(&message, secrets),
            ));
        }
        match parsed {
            Some(v) => Ok(v),
            None if reply.body.trim().is_empty() => Ok(Value::Null),
            None if reply.is_html() => Err(PanelError::new(
                ErrorClass::Auth,
                operation,
                "Plesk answered with an HTML page instead of JSON (login page?)",
            )),
            None => Err(PanelError::retryable(
                operation,
                "Plesk answered with a body that is not JSON",
            )),
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
    ) -> Result<T, PanelError> {
        let v = self.rest(operation, Method::GET, path, None, &[]).await?;
        serde_json::from_value(v).map_err(|e| {
            PanelError::retryable(operation, format!("unexpected Plesk response shape: {e}"))
        })
    }

    /// Runs a Plesk CLI utility through REST. The gateway answers 200 whatever the utility did,
    /// so a non-zero `code` is the failure signal.
    async fn cli(
        &self,
        operation: &'static str,
        utility: &str,
        params: &[String],
        secrets: &[&Secret],
    ) -> Result<CliResult, PanelError> {
        let body = json!({ "params": params });
        let v = self
            .rest(
                operation,
                Method::POST,
                &format!("/cli/{utility}/call"),
                Some(&body),
                secrets,
            )
            .await?;
        let result: CliResult = serde_json::from_value(v).map_err(|e| {
            PanelError::retryable(operation, format!("unexpected CLI gateway response: {e}"))
        })?;
        if result.code == 0 {
            return Ok(result);
        }
        let text = format!("{} {}", result.stderr.trim(), result.stdout.trim());
        Err(PanelError::new(
            http::text_class(&text),
            operation,
            self.ep.scrub(
                &format!("exit code {}: {}", result.code, text.trim()),
                secrets,
            ),
        ))
    }

    /// One XML API packet; returns the response body after checking the packet-level
    /// (`<system>`) and operation-level (`<result>`) status.
    async fn xml(
        &self,
        operation: &'static str,
        packet: &str,
        secrets: &[&Secret],
    ) -> Result<String, PanelError> {
        let request = self
            .ep
            .request(Method::POST, "/enterprise/control/agent.php")
            .header("KEY", http::secret_header(self.ep.token.expose())?)
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .body(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>{packet}"
            ));
        let reply = self.ep.send(operation, request).await?;
        if let Some(class) = http::status_class(reply.status) {
            return Err(PanelError::new(
                class,
                operation,
                format!("HTTP {}", reply.status.as_u16()),
            ));
        }
        let body = reply.body;
        let scope = xml_element(&body, "system").or_else(|| xml_element(&body, "result"));
        let Some(scope) = scope else {
            return Err(PanelError::retryable(
                operation,
                "XML API answered without a result",
            ));
        };
        if xml_text(scope, "status").as_deref() == Some("ok") {
            return Ok(body);
        }
        let code: i64 = xml_text(scope, "errcode")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let text = xml_text(scope, "errtext").unwrap_or_default();
        // Official reduced list of error codes (panel-apis.md §2.5).
        let class = match code {
            1001 | 1006 | 11003 => ErrorClass::Auth,
            1002 | 1007 => ErrorClass::Conflict,
            1013 | 1015 => ErrorClass::NotFound,
            _ => http::text_class(&text),
        };
        Err(PanelError::new(
            class,
            operation,
            self.ep.scrub(&format!("error {code}: {text}"), secrets),
        ))
    }

    async fn find_client(&self, username: &str) -> Result<Option<Client>, PanelError> {
        // GET /clients has no filter parameter in the spec: list and pick by login.
        let clients: Vec<Client> = self.get("get_client", "/clients").await?;
        Ok(clients
            .into_iter()
            .find(|c| c.login.eq_ignore_ascii_case(username)))
    }

    async fn require_client(
        &self,
        operation: &'static str,
        username: &str,
    ) -> Result<Client, PanelError> {
        self.find_client(username).await?.ok_or_else(|| {
            PanelError::not_found(operation, format!("customer {username:?} does not exist"))
        })
    }

    async fn client_domains(&self, client_id: i64) -> Result<Vec<Domain>, PanelError> {
        self.get(
            "get_client_domains",
            &format!("/clients/{client_id}/domains"),
        )
        .await
    }

    /// The customer's archives in the server repository, by login (official "Retrieving a
    /// List of Local Backups" takes `<customer-login>`). The response layout is UNCONFIRMED:
    /// read as `<file><name/><size/><creation-date/></file>` entries; Plesk lists finished
    /// backups only. The repository keeps a removed customer's archives, so this works after
    /// the customer is gone.
    async fn customer_backups(&self, login: &str) -> Result<Vec<BackupInfo>, PanelError> {
        let packet = format!(
            "<packet><backup-manager><get-local-backup-list><customer-login>{}</customer-login>\
             </get-local-backup-list></backup-manager></packet>",
            quick_xml::escape::escape(login)
        );
        let body = self.xml("get_local_backup_list", &packet, &[]).await?;
        Ok(xml_elements(&body, "file")
            .into_iter()
            .filter_map(|file| {
                Some(BackupInfo {
                    name: xml_text(file, "name").filter(|n| !n.is_empty())?,
                    size_bytes: xml_text(file, "size").and_then(|s| s.parse().ok()),
                    created_at: xml_text(file, "creation-date").and_then(|s| s.parse().ok()),
                    ready: true,
                })
            })
            .collect())
    }

    async fn find_domain(&self, name: &str) -> Result<Option<Domain>, PanelError> {
        let domains: Vec<Domain> = self
            .get(
                "get_domain",
                &format!("/domains?name={}", query_value(name)),
            )
            .await?;
        Ok(domains
            .into_iter()
            .find(|d| d.name.eq_ignore_ascii_case(name)))
    }

    async fn info_for(&self, client: Client) -> Result<AccountInfo, PanelError> {
        let domains = self.client_domains(client.id).await?;
        // The subscription is the domain without a parent; addon domains and subdomains have one.
        let main = domains
            .iter()
            .find(|d| d.base_domain_id.unwrap_or(0) == 0)
            .or(domains.first());
        Ok(AccountInfo {
            username: client.login,
            domain: main.map(|d| d.name.clone()),
            contact_email: client.email,
            package: None,
            // Customer status: 0 = active, 16 = disabled by admin (XML API docs); anything not 0
            // is treated as suspended.
            suspended: client.status.unwrap_or(0) != 0,
            owner_marker: Some(client.external_id.unwrap_or_default()),
            panel_id: Some(client.id.to_string()),
        })
    }

    /// The domain's document root as Plesk reports it (`www_root`), without `fs_root`.
    async fn www_root(&self, domain: &str) -> Result<String, PanelError> {
        let found = self.find_domain(domain).await?.ok_or_else(|| {
            PanelError::not_found(
                "get_domain",
                format!("domain {domain} is not on this server"),
            )
        })?;
        found.www_root.filter(|r| !r.is_empty()).ok_or_else(|| {
            PanelError::permanent("get_domain", format!("domain {domain} has no hosting"))
        })
    }

    async fn dns_rows(&self, domain: &str) -> Result<Vec<DnsRow>, PanelError> {
        self.get(
            "get_dns_records",
            &format!("/dns/records?domain={}", query_value(domain)),
        )
        .await
    }

    /// Deletes one record; one that is already gone is a success.
    async fn delete_dns_row(&self, id: i64) -> Result<(), PanelError> {
        match self
            .rest(
                "delete_dns_record",
                Method::DELETE,
                &format!("/dns/records/{id}"),
                None,
                &[],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.class() == ErrorClass::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn row_record(domain: &str, row: &DnsRow) -> Option<DnsRecord> {
        let record_type: RecordType = row.kind.parse().ok()?;
        let opt = row.opt.clone().unwrap_or_default();
        Some(DnsRecord {
            name: relative_name(&row.host, domain),
            record_type,
            value: row.value.clone(),
            ttl: row.ttl.unwrap_or(0),
            // Plesk keeps the MX preference in `opt`.
            priority: if record_type == RecordType::Mx {
                opt.trim().parse().ok()
            } else {
                None
            },
        })
    }

    fn record_body(record: &DnsRecord) -> Value {
        let host = if record.name == "@" {
            ""
        } else {
            record.name.as_str()
        };
        let opt = match (record.record_type, record.priority) {
            (RecordType::Mx, Some(p)) => p.to_string(),
            (RecordType::Mx, None) => "10".to_owned(),
            _ => String::new(),
        };
        json!({
            "type": record.record_type.as_str(),
            "host": host,
            "value": record.value,
            "opt": opt,
            "ttl": record.ttl,
        })
    }

    async fn create_subscription(&self, spec: &AccountSpec) -> Result<(), PanelError> {
        let mut body = json!({
            "name": spec.domain,
            "hosting_type": "virtual",
            "hosting_settings": {
                "ftp_login": spec.username,
                "ftp_password": spec.password.expose(),
            },
            "owner_client": { "login": spec.username },
            "plan": { "name": spec.package },
        });
        if let Some(ip) = &spec.ip {
            body["ipv4"] = json!([ip]);
        }
        self.rest(
            "create_domain",
            Method::POST,
            "/domains",
            Some(&body),
            &[&spec.password],
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl AccountCreation for PleskDriver {
    async fn lookup_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError> {
        match self.find_client(username).await? {
            Some(client) => Ok(Some(self.info_for(client).await?)),
            None => Ok(None),
        }
    }

    async fn create_account_once(&self, spec: &AccountSpec) -> Result<(), PanelError> {
        // The customer and its subscription are two calls. Our customer does not exist yet, so
        // a subscription domain already on the panel is someone else's: refuse before
        // creating a customer that could never get its site.
        if self.find_domain(&spec.domain).await?.is_some() {
            return Err(PanelError::conflict(
                "create_client",
                format!("domain {} belongs to another customer", spec.domain),
            ));
        }
        let body = json!({
            "name": spec.username,
            "login": spec.username,
            "password": spec.password.expose(),
            "email": spec.contact_email,
            "type": "customer",
            // The ownership marker `ensure_account` checks.
            "external_id": spec.owner_marker(),
            "description": format!("mpanel service {}", spec.service_id),
        });
        self.rest(
            "create_client",
            Method::POST,
            "/clients",
            Some(&body),
            &[&spec.password],
        )
        .await
        .map(drop)
    }

    /// Adds the subscription if an earlier attempt created only the customer. A domain that
    /// exists under another customer is a conflict.
    async fn complete_account(
        &self,
        spec: &AccountSpec,
        info: AccountInfo,
    ) -> Result<AccountInfo, PanelError> {
        const OP: &str = "create_domain";
        let client_id: i64 = info
            .panel_id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_default();
        let has_domain = |domains: &[Domain]| {
            domains
                .iter()
                .any(|d| d.name.eq_ignore_ascii_case(&spec.domain))
        };
        let done = || AccountInfo {
            domain: Some(spec.domain.clone()),
            ..info.clone()
        };
        if has_domain(&self.client_domains(client_id).await?) {
            return Ok(done());
        }
        if self.find_domain(&spec.domain).await?.is_some()
            // A concurrent attempt for this same service may have just made it.
            && !has_domain(&self.client_domains(client_id).await?)
        {
            return Err(PanelError::conflict(
                OP,
                format!("domain {} belongs to another customer", spec.domain),
            ));
        }
        if let Err(e) = self.create_subscription(spec).await {
            // Same trap as the customer create: look before believing the error.
            if e.class() == ErrorClass::Auth || !has_domain(&self.client_domains(client_id).await?)
            {
                return Err(e);
            }
        }
        info!(service_id = spec.service_id, "subscription created");
        Ok(done())
    }
}

#[async_trait]
impl ControlPanel for PleskDriver {
    fn kind(&self) -> PanelKind {
        PanelKind::Plesk
    }

    async fn get_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError> {
        self.lookup_account(username).await
    }

    async fn ensure_account(&self, spec: &AccountSpec) -> Result<AccountInfo, PanelError> {
        account::ensure_account(self, spec).await
    }

    async fn suspend_account(&self, username: &str, _reason: &str) -> Result<(), PanelError> {
        let client = self.require_client("suspend_client", username).await?;
        self.rest(
            "suspend_client",
            Method::PUT,
            &format!("/clients/{}/suspend", client.id),
            None,
            &[],
        )
        .await
        .map(drop)
    }

    async fn unsuspend_account(&self, username: &str) -> Result<(), PanelError> {
        let client = self.require_client("activate_client", username).await?;
        self.rest(
            "activate_client",
            Method::PUT,
            &format!("/clients/{}/activate", client.id),
            None,
            &[],
        )
        .await
        .map(drop)
    }

    async fn terminate_account(&self, username: &str) -> Result<(), PanelError> {
        let Some(client) = self.find_client(username).await? else {
            return Ok(());
        };
        // Deleting a customer deletes its subscriptions with it.
        match self
            .rest(
                "delete_client",
                Method::DELETE,
                &format!("/clients/{}", client.id),
                None,
                &[],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.class() == ErrorClass::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn change_package(&self, username: &str, package: &str) -> Result<(), PanelError> {
        let info = self.get_account(username).await?.ok_or_else(|| {
            PanelError::not_found(
                "change_plan",
                format!("customer {username:?} does not exist"),
            )
        })?;
        let subscription = info.domain.ok_or_else(|| {
            PanelError::not_found(
                "change_plan",
                format!("customer {username:?} has no subscription"),
            )
        })?;
        self.cli(
            "change_plan",
            "subscription",
            &[
                "--switch-subscription".to_owned(),
                subscription.clone(),
                "-service-plan".to_owned(),
                package.to_owned(),
            ],
            &[],
        )
        .await?;
        // Re-applies the plan's limits and permissions, as Plesk's own scripts do after a switch.
        self.cli(
            "sync_subscription",
            "subscription",
            &["--sync-subscription".to_owned(), subscription],
            &[],
        )
        .await
        .map(drop)
    }

    async fn change_password(&self, username: &str, password: &Secret) -> Result<(), PanelError> {
        let client = self.require_client("update_client", username).await?;
        let body = json!({ "password": password.expose() });
        self.rest(
            "update_client",
            Method::PUT,
            &format!("/clients/{}", client.id),
            Some(&body),
            &[password],
        )
        .await
        .map(drop)
    }

    async fn list_accounts(&self) -> Result<Vec<AccountInfo>, PanelError> {
        let clients: Vec<Client> = self.get("list_clients", "/clients").await?;
        let mut out = Vec::new();
        for client in clients {
            // Resellers and the admin are not hosting accounts.
            if client.kind.as_deref().is_some_and(|k| k != "customer") {
                continue;
            }
            out.push(self.info_for(client).await?);
        }
        Ok(out)
    }

    async fn list_packages(&self) -> Result<Vec<PackageInfo>, PanelError> {
        // REST has no service-plan call. The XML API `service-plan/get` with an empty filter is
        // the documented way (api-php-lib ServicePlan); limits are left out rather than guessed.
        let body = self
            .xml(
                "list_plans",
                "<packet><service-plan><get><filter/></get></service-plan></packet>",
                &[],
            )
            .await?;
        let mut plans = Vec::new();
        let mut rest = body.as_str();
        while let Some(result) = xml_element(rest, "result") {
            if let Some(name) = xml_text(result, "name") {
                plans.push(PackageInfo {
                    name,
                    disk_quota: None,
                    bandwidth: None,
                });
            }
            let end = rest.find(result).map_or(rest.len(), |i| i + result.len());
            rest = &rest[end..];
        }
        Ok(plans)
    }

    async fn usage(&self, username: &str) -> Result<Usage, PanelError> {
        let client = self.require_client("client_statistics", username).await?;
        let stats: Value = self
            .get(
                "client_statistics",
                &format!("/clients/{}/statistics", client.id),
            )
            .await?;
        // `disk_space` and `traffic` are bytes in the spec's example; Plesk reports no inodes and
        // no limits here.
        Ok(Usage {
            disk_used: stats.get("disk_space").and_then(Value::as_u64),
            bandwidth_used: stats.get("traffic").and_then(Value::as_u64),
            ..Usage::default()
        })
    }

    async fn ensure_dns_zone(
        &self,
        _username: &str,
        domain: &str,
        _ip: Option<&str>,
    ) -> Result<(), PanelError> {
        // Plesk creates the zone with the domain; there is no separate zone to make.
        match self.find_domain(domain).await? {
            Some(_) => Ok(()),
            None => Err(PanelError::not_found(
                "ensure_dns_zone",
                format!("domain {domain} is not on this server"),
            )),
        }
    }

    async fn upsert_dns_record(
        &self,
        _username: &str,
        domain: &str,
        record: &DnsRecord,
    ) -> Result<(), PanelError> {
        let rows = self.dns_rows(domain).await?;
        let existing: Vec<(i64, DnsRecord)> = rows
            .iter()
            .filter_map(|r| Self::row_record(domain, r).map(|rec| (r.id, rec)))
            .collect();
        if existing.iter().any(|(_, r)| record.same_content(r)) {
            return Ok(());
        }
        let body = Self::record_body(record);
        // A record of the same type is updated in place; every other record of the slot (the
        // CNAME an A replaces, or the records a CNAME replaces) goes first, so the zone never
        // holds a CNAME beside other data, not even between two calls.
        let slot: Vec<&(i64, DnsRecord)> = existing
            .iter()
            .filter(|(_, r)| record.same_slot(r))
            .collect();
        let kept = slot
            .iter()
            .find(|(_, r)| r.record_type == record.record_type)
            .map(|(id, _)| *id);
        for (id, _) in slot.iter().filter(|(id, _)| Some(*id) != kept) {
            self.delete_dns_row(*id).await?;
        }
        match kept {
            Some(id) => self
                .rest(
                    "update_dns_record",
                    Method::PUT,
                    &format!("/dns/records/{id}"),
                    Some(&body),
                    &[],
                )
                .await
                .map(drop),
            None => self
                .rest(
                    "add_dns_record",
                    Method::POST,
                    &format!("/dns/records?domain={}", query_value(domain)),
                    Some(&body),
                    &[],
                )
                .await
                .map(drop),
        }
    }

    async fn delete_dns_record(
        &self,
        _username: &str,
        domain: &str,
        key: &DnsRecordKey,
    ) -> Result<(), PanelError> {
        for row in self.dns_rows(domain).await? {
            let Some(record) = Self::row_record(domain, &row) else {
                continue;
            };
            if key.matches(&record) {
                self.delete_dns_row(row.id).await?;
            }
        }
        Ok(())
    }

    async fn install_certificate(
        &self,
        _username: &str,
        domain: &str,
        bundle: &CertificateBundle,
    ) -> Result<(), PanelError> {
        // Named after the certificate's content, so a retried install of the same certificate
        // finds its own earlier copy (error 1007, "already exists") and counts it as done.
        let name = format!(
            "mpanel-{domain}-{:016x}",
            fnv1a(bundle.certificate.as_bytes())
        );
        let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
        let packet = format!(
            "<packet><certificate><install><name>{}</name><webspace>{}</webspace><content>\
             <csr></csr><pvt>{}</pvt><cert>{}</cert><ca>{}</ca></content></install>\
             </certificate></packet>",
            esc(&name),
            esc(domain),
            esc(bundle.private_key.expose()),
            esc(&bundle.certificate),
            esc(&bundle.chain),
        );
        match self
            .xml("install_certificate", &packet, &[&bundle.private_key])
            .await
        {
            Ok(_) => {}
            Err(e) if e.class() == ErrorClass::Conflict => {}
            Err(e) => return Err(e),
        }
        // The reference documents install only ("success when status is ok"). Binding the
        // certificate to the site's hosting (the `certificate_name` hosting property) is
        // UNCONFIRMED and not attempted here.
        info!(domain, "certificate installed");
        Ok(())
    }

    async fn start_auto_ssl(&self, username: &str, domain: &str) -> Result<(), PanelError> {
        let client = self.require_client("letsencrypt", username).await?;
        let mut params = vec![
            "--exec".to_owned(),
            "letsencrypt".to_owned(),
            "cli.php".to_owned(),
            "-d".to_owned(),
            domain.to_owned(),
            "-d".to_owned(),
            format!("www.{domain}"),
        ];
        if let Some(email) = client.email.filter(|e| e.contains('@')) {
            params.extend(["-m".to_owned(), email]);
        }
        // The CLI id `extension` is UNCONFIRMED (panel-apis.md §2.4); a 404 surfaces as NotFound.
        self.cli("letsencrypt", "extension", &params, &[])
            .await
            .map(drop)
    }

    async fn create_mailbox(&self, _username: &str, spec: &MailboxSpec) -> Result<(), PanelError> {
        let address = format!("{}@{}", spec.local_part, spec.domain);
        let quota = match spec.quota_mb {
            Some(mb) if mb > 0 => format!("{mb}M"),
            _ => "-1".to_owned(),
        };
        let create = vec![
            "--create".to_owned(),
            address.clone(),
            "-passwd".to_owned(),
            spec.password.expose().to_owned(),
            "-mailbox".to_owned(),
            "true".to_owned(),
            "-mbox_quota".to_owned(),
            quota.clone(),
        ];
        match self
            .cli("create_mailbox", "mail", &create, &[&spec.password])
            .await
        {
            Ok(_) => Ok(()),
            // The duplicate text is UNCONFIRMED. Whatever the failure said, an `--update` that
            // succeeds proves the mailbox exists, and leaves it with the password and quota we
            // hand out.
            Err(e) if e.class() != ErrorClass::Auth => {
                let update = vec![
                    "--update".to_owned(),
                    address,
                    "-passwd".to_owned(),
                    spec.password.expose().to_owned(),
                    "-mbox_quota".to_owned(),
                    quota,
                ];
                self.cli("update_mailbox", "mail", &update, &[&spec.password])
                    .await
                    .map(drop)
                    .map_err(|_| e)
            }
            Err(e) => Err(e),
        }
    }

    async fn create_database(
        &self,
        _username: &str,
        spec: &DatabaseSpec,
    ) -> Result<DatabaseInfo, PanelError> {
        let list_path = format!("/databases?domain={}", query_value(&spec.domain));
        let find_db = |dbs: Vec<Database>| dbs.into_iter().find(|d| d.name == spec.name);

        let database = match find_db(self.get("list_databases", &list_path).await?) {
            Some(db) => db,
            None => {
                let servers: Vec<DbServer> = self.get("list_db_servers", "/dbservers").await?;
                let server_id = servers
                    .iter()
                    .find(|s| {
                        s.kind
                            .as_deref()
                            .is_none_or(|k| k.eq_ignore_ascii_case("mysql"))
                    })
                    .map(|s| s.id);
                let mut body = json!({
                    "name": spec.name,
                    "type": "mysql",
                    "parent_domain": { "name": spec.domain },
                });
                if let Some(id) = server_id {
                    body["server_id"] = json!(id);
                }
                let created = self
                    .rest(
                        "create_database",
                        Method::POST,
                        "/databases",
                        Some(&body),
                        &[],
                    )
                    .await;
                match created {
                    // 200 with the Database object (not 201 like clients and domains).
                    Ok(v) => serde_json::from_value(v).map_err(|e| {
                        PanelError::retryable(
                            "create_database",
                            format!("unexpected response: {e}"),
                        )
                    })?,
                    Err(e) if e.class() == ErrorClass::Auth => return Err(e),
                    Err(e) => find_db(self.get("list_databases", &list_path).await?).ok_or(e)?,
                }
            }
        };

        let users_path = format!("/dbusers?dbId={}", database.id);
        let users: Vec<DbUser> = self.get("list_db_users", &users_path).await?;
        let user_body = json!({
            "login": spec.user,
            "password": spec.password.expose(),
            "database_id": database.id,
        });
        match users.iter().find(|u| u.login == spec.user) {
            // From an earlier attempt: converge its password to the one we hand out.
            Some(user) => {
                let body = json!({ "login": spec.user, "password": spec.password.expose() });
                self.rest(
                    "update_db_user",
                    Method::PUT,
                    &format!("/dbusers/{}", user.id),
                    Some(&body),
                    &[&spec.password],
                )
                .await?;
            }
            // A Plesk database user is created on one database with full rights on it, so no
            // separate grant exists or is needed.
            None => {
                self.rest(
                    "create_db_user",
                    Method::POST,
                    "/dbusers",
                    Some(&user_body),
                    &[&spec.password],
                )
                .await?;
            }
        }
        Ok(DatabaseInfo {
            database: database.name,
            user: spec.user.clone(),
        })
    }

    /// XML API `<backup-manager><backup-customer>` with `<customer-login>` and `<local/>`
    /// (official "Creating Customer-level Backup Task"): queues a backup of the customer and
    /// all its subscriptions into the server repository, where it outlives the customer; the
    /// archive is listed once written.
    async fn start_backup(&self, username: &str) -> Result<(), PanelError> {
        self.require_client("backup_customer", username).await?;
        let packet = format!(
            "<packet><backup-manager><backup-customer><customer-login>{}</customer-login>\
             <local/><description>mpanel</description></backup-customer></backup-manager>\
             </packet>",
            quick_xml::escape::escape(username)
        );
        self.xml("backup_customer", &packet, &[]).await?;
        Ok(())
    }

    async fn list_backups(&self, username: &str) -> Result<Vec<BackupInfo>, PanelError> {
        self.customer_backups(username).await
    }

    /// XML API `<remove-file><customer-login/><filename/>` (official "Removing Backup"; the
    /// customer selector is UNCONFIRMED for this operation). The list is read first, so a
    /// name the repository does not hold for the login is `false`.
    async fn delete_backup(&self, username: &str, name: &str) -> Result<bool, PanelError> {
        check_backup_name("delete_backup", name)?;
        if !self
            .customer_backups(username)
            .await?
            .iter()
            .any(|b| b.name == name)
        {
            return Ok(false);
        }
        let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
        let packet = format!(
            "<packet><backup-manager><remove-file><customer-login>{}</customer-login>\
             <filename>{}</filename></remove-file></backup-manager></packet>",
            esc(username),
            esc(name)
        );
        self.xml("remove_file", &packet, &[]).await?;
        Ok(true)
    }

    /// `pleskrestore --restore <file> -level clients -filter list:<login>` through the REST
    /// CLI gateway (official "pleskrestore: Restoration from Backup"). The utility runs in the
    /// foreground, so the call answers once the customer is restored; an existing customer
    /// is Plesk's "already exists" conflict.
    async fn start_restore(&self, username: &str, name: &str) -> Result<(), PanelError> {
        check_backup_name("restore_backup", name)?;
        let params = vec![
            "--restore".to_owned(),
            name.to_owned(),
            "-level".to_owned(),
            "clients".to_owned(),
            "-filter".to_owned(),
            format!("list:{username}"),
        ];
        // A failure is the answer itself; only a finished restore is remembered, so a re-sent
        // command recognises the account it brought back.
        self.cli("pleskrestore", "pleskrestore", &params, &[])
            .await?;
        self.restores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                username.to_owned(),
                RestoreState::Finished {
                    archive: name.to_owned(),
                },
            );
        Ok(())
    }

    /// What this agent's last `pleskrestore` of the customer ended with; the utility answers
    /// only when done, so a restore is never seen running.
    async fn restore_state(&self, username: &str) -> Result<RestoreState, PanelError> {
        Ok(self
            .restores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(username)
            .cloned()
            .unwrap_or(RestoreState::None))
    }

    async fn web_root(&self, _username: &str, domain: &str) -> Result<PathBuf, PanelError> {
        let root = self.www_root(domain).await?;
        Ok(self.fs_root.join(root.trim_start_matches('/')))
    }

    async fn write_acme_challenge(
        &self,
        username: &str,
        domain: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), PanelError> {
        check_acme_token(token)?;
        let root = self.www_root(domain).await?;
        let path = format!("{root}/.well-known/acme-challenge/{token}");
        // REST has no file call. `filemng <sysuser> write <path> <content>` through the gateway
        // is UNCONFIRMED (filemng is a local Plesk helper; the simulator exposes it); when the
        // gateway does not know it, the agent — root on this host — writes the file itself.
        let params = [
            username.to_owned(),
            "write".to_owned(),
            path.clone(),
            key_authorization.to_owned(),
        ];
        match self
            .cli("write_acme_challenge", "filemng", &params, &[])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.class() == ErrorClass::NotFound => {
                let local = self.fs_root.join(path.trim_start_matches('/'));
                write_local_file(&local, key_authorization).await
            }
            Err(e) => Err(e),
        }
    }
}

async fn write_local_file(path: &std::path::Path, content: &str) -> Result<(), PanelError> {
    const OP: &str = "write_acme_challenge";
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            PanelError::retryable(OP, format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    tokio::fs::write(path, content)
        .await
        .map_err(|e| PanelError::retryable(OP, format!("cannot write {}: {e}", path.display())))
}

fn query_value(v: &str) -> String {
    serde_urlencoded::to_string([("", v)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// The first `<tag>…</tag>` element's inner text, from `<tag` to its closing tag.
fn xml_element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

/// The inner text of every `<tag>…</tag>` element, in order.
fn xml_elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let inner = &rest[start + open.len()..];
        let Some(end) = inner.find(&close) else { break };
        found.push(&inner[..end]);
        rest = &inner[end + close.len()..];
    }
    found
}

fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let raw = xml_element(xml, tag)?;
    Some(
        quick_xml::escape::unescape(raw.trim())
            .map_or_else(|_| raw.trim().to_owned(), |s| s.into_owned()),
    )
}

/// A stable, non-cryptographic name hash (the name only has to differ between certificates).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_errors_are_found_in_system_or_result() {
        let body = "<packet><system><status>error</status><errcode>1001</errcode>\
                    <errtext>Authentication failed</errtext></system></packet>";
        let scope = xml_element(body, "system").unwrap();
        assert_eq!(xml_text(scope, "errcode").as_deref(), Some("1001"));
    }
}
