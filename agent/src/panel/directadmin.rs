//! DirectAdmin driver: the legacy `CMD_API_*` commands (accounts still have no call in the new
//! `/api` JSON API), HTTP Basic auth with the admin login key, `json=yes` on every call, and
//! impersonation (`admin|user`) for the calls DirectAdmin only runs as the account owner
//! (DNS, mail, databases, SSL).
//!
//! Quirks handled here (panel-apis.md §3): answers are JSON when `json=yes` is honoured and
//! url-encoded (`error=1&text=…&details=…`, `list[]=…`) when it is not, so both are parsed; a bad
//! login is an HTML login page with status 200 (or `{"error":"Not logged in"}` with 401) and is an
//! auth error; values are strings (`"unlimited"`, `"yes"`/`"no"`); databases and their users get
//! the automatic `<user>_` prefix.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;
use tracing::info;

use super::account::{self, AccountCreation};
use super::http::{self, CHANGE, PanelEndpoint, Reply};
use super::types::*;
use super::{ControlPanel, check_acme_token, check_backup_name};

type Params<'a> = Vec<(&'a str, String)>;
const NO_PARAMS: [(&str, String); 0] = [];

/// Where admin backups are written (`local_path`), and the same directory as the admin's
/// file manager sees it (the admin's home is `/home/admin`).
const ADMIN_BACKUP_DIR: &str = "/home/admin/admin_backups";
const ADMIN_BACKUP_PATH: &str = "/admin_backups";

#[derive(Debug)]
pub struct DirectAdminDriver {
    ep: PanelEndpoint,
    fs_root: PathBuf,
    ask_for_json: bool,
    /// The archive this driver last asked DirectAdmin to restore, per account: the restore
    /// runs from the task queue, which the API does not show.
    restores: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// A parsed DirectAdmin answer: key/value pairs, plus the `list[]` entries or JSON list rows.
#[derive(Debug, Default)]
struct DaReply {
    fields: HashMap<String, String>,
    list: Vec<String>,
    json: Value,
}

impl DaReply {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

impl DirectAdminDriver {
    pub fn new(ep: PanelEndpoint, fs_root: PathBuf) -> Self {
        Self {
            ep,
            fs_root,
            ask_for_json: true,
            restores: std::sync::Mutex::default(),
        }
    }

    /// Stops sending `json=yes`. Older DirectAdmin builds ignore it for some commands and answer
    /// url-encoded; the driver reads both forms, and this switch lets tests drive the
    /// url-encoded path end to end.
    pub fn without_json(mut self) -> Self {
        self.ask_for_json = false;
        self
    }

    /// Calls `CMD_API_<command>`, as the admin or, with `as_user`, impersonating that account.
    async fn call<K: AsRef<str> + Sync>(
        &self,
        command: &'static str,
        method: Method,
        as_user: Option<&str>,
        params: &[(K, String)],
        secrets: &[&Secret],
    ) -> Result<DaReply, PanelError> {
        let login = match as_user {
            Some(user) => format!("{}|{user}", self.ep.user),
            None => self.ep.user.clone(),
        };
        let mut all: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str()))
            .collect();
        if self.ask_for_json {
            all.push(("json", "yes"));
        }
        let request = self
            .ep
            .request(method.clone(), &format!("/{command}"))
            .basic_auth(login, Some(self.ep.token.expose()));
        let request = if method == Method::GET {
            request.query(&all)
        } else {
            request.form(&all)
        };
        let reply = self.ep.send(command, request).await?;
        self.interpret(command, &reply, secrets)
    }

    fn interpret(
        &self,
        operation: &'static str,
        reply: &Reply,
        secrets: &[&Secret],
    ) -> Result<DaReply, PanelError> {
        let parsed = parse_reply(&reply.body);
        let error_text = failure_text(&parsed);
        if let Some(class) = http::status_class(reply.status) {
            let message = error_text.unwrap_or_else(|| format!("HTTP {}", reply.status.as_u16()));
            // `401 {"error":"Not logged in"}`, and 5xx pages from the web server in front.
            return Err(PanelError::new(
                class,
                operation,
                self.ep.scrub(&message, secrets),
            ));
        }
        // The legacy API answers bad credentials (or a blocked IP) with its HTML login page and
        // status 200: an auth failure, never a parse error to retry.
        if reply.is_html() {
            return Err(PanelError::new(
                ErrorClass::Auth,
                operation,
                "DirectAdmin answered with its HTML login page (credentials rejected or IP blocked)",
            ));
        }
        match error_text {
            Some(text) => Err(PanelError::new(
                http::text_class(&text),
                operation,
                self.ep.scrub(&text, secrets),
            )),
            None => Ok(parsed),
        }
    }

    async fn user_list(&self) -> Result<Vec<String>, PanelError> {
        let reply = self
            .call("CMD_API_SHOW_ALL_USERS", Method::GET, None, &NO_PARAMS, &[])
            .await?;
        Ok(reply.list)
    }

    async fn user_config(&self, username: &str) -> Result<DaReply, PanelError> {
        self.call(
            "CMD_API_SHOW_USER_CONFIG",
            Method::GET,
            None,
            &[("user", username.to_owned())],
            &[],
        )
        .await
    }

    async fn require_account(
        &self,
        operation: &'static str,
        username: &str,
    ) -> Result<AccountInfo, PanelError> {
        self.get_account(username).await?.ok_or_else(|| {
            PanelError::not_found(operation, format!("user {username:?} does not exist"))
        })
    }

    /// DirectAdmin prefixes database and database-user names with `<user>_` itself, so the
    /// request carries the bare name and the result reports the full one.
    pub fn prefixed(username: &str, name: &str) -> (String, String) {
        let prefix = format!("{username}_");
        let bare = name.strip_prefix(&prefix).unwrap_or(name).to_owned();
        (bare.clone(), format!("{prefix}{bare}"))
    }

    async fn select_users(
        &self,
        operation: &'static str,
        username: &str,
        action: &[(&'static str, &str)],
    ) -> Result<(), PanelError> {
        let mut params: Params<'_> = vec![
            ("location", "CMD_SELECT_USERS".to_owned()),
            ("select0", username.to_owned()),
        ];
        params.extend(action.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self.call(operation, CHANGE, None, &params, &[])
            .await
            .map(drop)
    }

    async fn set_suspended(&self, username: &str, suspend: bool) -> Result<(), PanelError> {
        let operation = if suspend { "suspend" } else { "unsuspend" };
        let current = self.require_account(operation, username).await?;
        if current.suspended == suspend {
            return Ok(());
        }
        // Newer panels want the `dosuspend`/`dounsuspend` button, older ones `suspend=Suspend` or
        // `suspend=Unsuspend`; which one a given version accepts is UNCONFIRMED, so both are sent
        // (an older panel ignores the unknown button, a newer one the legacy field).
        let action: [(&'static str, &str); 2] = if suspend {
            [("dosuspend", "yes"), ("suspend", "Suspend")]
        } else {
            [("dounsuspend", "yes"), ("suspend", "Unsuspend")]
        };
        self.select_users("CMD_API_SELECT_USERS", username, &action)
            .await?;
        // The legacy field is a toggle on some versions: verify instead of trusting "success".
        let after = self.require_account(operation, username).await?;
        if after.suspended == suspend {
            Ok(())
        } else {
            Err(PanelError::permanent(
                "CMD_API_SELECT_USERS",
                format!("the panel accepted the {operation} but the account state did not change"),
            ))
        }
    }

    /// The zone as its owner sees it: `CMD_API_DNS_CONTROL` is a user-level command, which an
    /// admin reaches through login-as (§3.4).
    async fn dns_records(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Vec<DnsRecord>, PanelError> {
        let reply = self
            .call(
                "CMD_API_DNS_CONTROL",
                Method::GET,
                Some(username),
                &[("domain", domain.to_owned())],
                &[],
            )
            .await?;
        // With json=yes: {"records":[{"name","type","value","ttl"}]} (directadmin-go dns.go).
        let rows = reply
            .json
            .get("records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(rows
            .iter()
            .filter_map(|row| {
                let record_type: RecordType = str_field(row, "type")?.parse().ok()?;
                let raw_value = str_field(row, "value").unwrap_or_default();
                // DirectAdmin shows an MX record's value as "<preference> <exchange>".
                let (priority, value) = match record_type {
                    RecordType::Mx => match raw_value.split_once(' ') {
                        Some((p, v)) if p.parse::<u16>().is_ok() => {
                            (p.parse().ok(), v.trim().to_owned())
                        }
                        _ => (None, raw_value),
                    },
                    _ => (None, raw_value),
                };
                Some(DnsRecord {
                    name: relative_name(&str_field(row, "name").unwrap_or_default(), domain),
                    record_type,
                    value,
                    ttl: str_field(row, "ttl")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0),
                    priority,
                })
            })
            .collect())
    }

    /// The name DirectAdmin's zone editor uses: `www` for a label, `<domain>.` for the apex.
    fn da_name(domain: &str, name: &str) -> String {
        match relative_name(name, domain).as_str() {
            "@" => format!("{domain}."),
            label => label.to_owned(),
        }
    }

    async fn delete_records(
        &self,
        username: &str,
        domain: &str,
        records: &[DnsRecord],
    ) -> Result<(), PanelError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut params: Vec<(String, String)> = vec![
            ("domain".to_owned(), domain.to_owned()),
            ("action".to_owned(), "select".to_owned()),
            ("delete".to_owned(), "yes".to_owned()),
        ];
        // `<type>recs<N>=name=<name>&value=<value>` (the zone editor's select boxes: `arecs0`,
        // `mxrecs1`, …), one per record, numbered per type.
        let mut counters: HashMap<RecordType, usize> = HashMap::new();
        for r in records {
            let n = counters.entry(r.record_type).or_default();
            let key = format!("{}recs{n}", r.record_type.as_str().to_ascii_lowercase());
            *n += 1;
            let value = match (r.record_type, r.priority) {
                (RecordType::Mx, Some(p)) => format!("{p} {}", r.value),
                _ => r.value.clone(),
            };
            let item = serde_urlencoded::to_string([
                ("name", Self::da_name(domain, &r.name)),
                ("value", value),
            ])
            .unwrap_or_default();
            params.push((key, item));
        }
        self.call("CMD_API_DNS_CONTROL", CHANGE, Some(username), &params, &[])
            .await
            .map(drop)
    }
}

#[async_trait]
impl AccountCreation for DirectAdminDriver {
    async fn lookup_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError> {
        // The user list is the existence check: SHOW_USER_CONFIG's error text for a missing user
        // is not something to parse.
        if !self
            .user_list()
            .await?
            .iter()
            .any(|u| u.eq_ignore_ascii_case(username))
        {
            return Ok(None);
        }
        let config = self.user_config(username).await?;
        Ok(Some(AccountInfo {
            username: username.to_owned(),
            domain: config.get("domain").map(str::to_owned),
            contact_email: config.get("email").map(str::to_owned),
            package: config.get("package").map(str::to_owned),
            suspended: config
                .get("suspended")
                .is_some_and(|s| s.eq_ignore_ascii_case("yes")),
            owner_marker: None,
            panel_id: None,
        }))
    }

    async fn create_account_once(&self, spec: &AccountSpec) -> Result<(), PanelError> {
        let mut params: Params<'_> = vec![
            ("action", "create".to_owned()),
            ("add", "Submit".to_owned()),
            ("username", spec.username.clone()),
            // With the domain, the ownership evidence `ensure_account` checks.
            ("email", spec.contact_email.clone()),
            ("passwd", spec.password.expose().to_owned()),
            ("passwd2", spec.password.expose().to_owned()),
            ("domain", spec.domain.clone()),
            ("package", spec.package.clone()),
            // The controller sends the welcome email, not the panel.
            ("notify", "no".to_owned()),
        ];
        // Every documented create form sends `ip`, and a panel with no default refuses a create
        // without one ("You have no available IPs"). Since 1.44 `shared` picks the server's
        // shared address, which is what an account without an address of its own gets (§3.3).
        params.push(("ip", spec.ip.clone().unwrap_or_else(|| "shared".to_owned())));
        self.call(
            "CMD_API_ACCOUNT_USER",
            CHANGE,
            None,
            &params,
            &[&spec.password],
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl ControlPanel for DirectAdminDriver {
    fn kind(&self) -> PanelKind {
        PanelKind::Directadmin
    }

    async fn get_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError> {
        self.lookup_account(username).await
    }

    async fn ensure_account(&self, spec: &AccountSpec) -> Result<AccountInfo, PanelError> {
        account::ensure_account(self, spec).await
    }

    async fn suspend_account(&self, username: &str, _reason: &str) -> Result<(), PanelError> {
        self.set_suspended(username, true).await
    }

    async fn unsuspend_account(&self, username: &str) -> Result<(), PanelError> {
        self.set_suspended(username, false).await
    }

    async fn terminate_account(&self, username: &str) -> Result<(), PanelError> {
        if self.get_account(username).await?.is_none() {
            return Ok(());
        }
        let action = [("confirmed", "Confirm"), ("delete", "yes")];
        match self
            .select_users("CMD_API_SELECT_USERS", username, &action)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.class() != ErrorClass::Auth => match self.get_account(username).await {
                Ok(None) => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn change_package(&self, username: &str, package: &str) -> Result<(), PanelError> {
        // `action` is mandatory: without it DirectAdmin silently does nothing.
        let params = vec![
            ("action", "package".to_owned()),
            ("user", username.to_owned()),
            ("package", package.to_owned()),
        ];
        self.call("CMD_API_MODIFY_USER", CHANGE, None, &params, &[])
            .await
            .map(drop)
    }

    async fn change_password(&self, username: &str, password: &Secret) -> Result<(), PanelError> {
        let params = vec![
            ("username", username.to_owned()),
            ("passwd", password.expose().to_owned()),
            ("passwd2", password.expose().to_owned()),
        ];
        self.call("CMD_API_USER_PASSWD", CHANGE, None, &params, &[password])
            .await
            .map(drop)
    }

    async fn list_accounts(&self) -> Result<Vec<AccountInfo>, PanelError> {
        let mut out = Vec::new();
        for user in self.user_list().await? {
            if let Some(info) = self.lookup_account(&user).await? {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn list_packages(&self) -> Result<Vec<PackageInfo>, PanelError> {
        let names = self
            .call("CMD_API_PACKAGES_USER", Method::GET, None, &NO_PARAMS, &[])
            .await?
            .list;
        let mut out = Vec::new();
        for name in names {
            let details = self
                .call(
                    "CMD_API_PACKAGES_USER",
                    Method::GET,
                    None,
                    &[("package", name.clone())],
                    &[],
                )
                .await?;
            out.push(PackageInfo {
                disk_quota: details.get("quota").and_then(|q| parse_size(q, MB)),
                bandwidth: details.get("bandwidth").and_then(|b| parse_size(b, MB)),
                name,
            });
        }
        Ok(out)
    }

    async fn usage(&self, username: &str) -> Result<Usage, PanelError> {
        let params = vec![("user", username.to_owned())];
        let used = self
            .call("CMD_API_SHOW_USER_USAGE", Method::GET, None, &params, &[])
            .await?;
        let limits = self.user_config(username).await?;
        // DirectAdmin reports disk and bandwidth in MB, inodes as a count, limits possibly
        // "unlimited".
        let used_mb = |key: &str| {
            used.get(key)
                .and_then(|v| parse_size(v, MB))
                .and_then(|a| match a {
                    Amount::Value(v) => Some(v),
                    Amount::Unlimited => None,
                })
        };
        Ok(Usage {
            disk_used: used_mb("quota"),
            disk_limit: limits.get("quota").and_then(|v| parse_size(v, MB)),
            bandwidth_used: used_mb("bandwidth"),
            bandwidth_limit: limits.get("bandwidth").and_then(|v| parse_size(v, MB)),
            inodes_used: used.get("inode").and_then(|v| v.trim().parse().ok()),
            inodes_limit: limits.get("inode").and_then(|v| parse_size(v, 1)),
        })
    }

    async fn ensure_dns_zone(
        &self,
        username: &str,
        domain: &str,
        _ip: Option<&str>,
    ) -> Result<(), PanelError> {
        // DirectAdmin creates the zone with the domain and has no separate zone-create call, so
        // reading it as its owner is the check. The panel's answer keeps its own class: a
        // refused login-as or a domain of another user is not a missing zone.
        self.dns_records(username, domain)
            .await
            .map(drop)
            .map_err(|e| {
                PanelError::new(
                    e.class(),
                    "CMD_API_DNS_CONTROL",
                    format!(
                        "reading the zone of {domain} as {username}: {}",
                        e.message()
                    ),
                )
            })
    }

    async fn upsert_dns_record(
        &self,
        username: &str,
        domain: &str,
        record: &DnsRecord,
    ) -> Result<(), PanelError> {
        let existing = self.dns_records(username, domain).await?;
        if existing.iter().any(|r| record.same_content(r)) {
            return Ok(());
        }
        // The legacy editor's `edit` form is version-dependent; delete-then-add is what every
        // version understands. A failure between the two leaves the name without the record,
        // which the caller's retry of this upsert repairs.
        let replaced: Vec<DnsRecord> = existing
            .into_iter()
            .filter(|r| record.same_slot(r))
            .collect();
        self.delete_records(username, domain, &replaced).await?;
        let mut params: Params<'_> = vec![
            ("domain", domain.to_owned()),
            ("action", "add".to_owned()),
            ("type", record.record_type.as_str().to_owned()),
            ("name", Self::da_name(domain, &record.name)),
            ("ttl", record.ttl.to_string()),
        ];
        match record.record_type {
            // DirectAdmin's MX form: `value` is the preference, `mx_value` the exchange.
            RecordType::Mx => {
                params.push(("value", record.priority.unwrap_or(10).to_string()));
                params.push(("mx_value", record.value.clone()));
            }
            _ => params.push(("value", record.value.clone())),
        }
        self.call("CMD_API_DNS_CONTROL", CHANGE, Some(username), &params, &[])
            .await
            .map(drop)
    }

    async fn delete_dns_record(
        &self,
        username: &str,
        domain: &str,
        key: &DnsRecordKey,
    ) -> Result<(), PanelError> {
        let matching: Vec<DnsRecord> = self
            .dns_records(username, domain)
            .await?
            .into_iter()
            .filter(|r| key.matches(r))
            .collect();
        self.delete_records(username, domain, &matching).await
    }

    async fn install_certificate(
        &self,
        username: &str,
        domain: &str,
        bundle: &CertificateBundle,
    ) -> Result<(), PanelError> {
        // DirectAdmin's paste form takes the key and the certificate in one field.
        let combined = format!(
            "{}\n{}",
            bundle.private_key.expose().trim_end(),
            bundle.certificate.trim_end()
        );
        let secret_combined = Secret::new(combined.clone());
        let params = vec![
            ("domain", domain.to_owned()),
            ("action", "save".to_owned()),
            ("type", "paste".to_owned()),
            ("certificate", combined),
            ("submit", "Save".to_owned()),
        ];
        self.call(
            "CMD_API_SSL",
            CHANGE,
            Some(username),
            &params,
            &[&bundle.private_key, &secret_combined],
        )
        .await?;
        if !bundle.chain.trim().is_empty() {
            // The CA-bundle call is UNCONFIRMED (believed `type=cacert&active=yes&cacert=…`);
            // its failure is reported, since a site without its chain breaks some clients.
            let params = vec![
                ("domain", domain.to_owned()),
                ("action", "save".to_owned()),
                ("type", "cacert".to_owned()),
                ("active", "yes".to_owned()),
                ("cacert", bundle.chain.clone()),
            ];
            self.call("CMD_API_SSL", CHANGE, Some(username), &params, &[])
                .await?;
        }
        info!(domain, "certificate installed");
        Ok(())
    }

    async fn start_auto_ssl(&self, username: &str, domain: &str) -> Result<(), PanelError> {
        let params = vec![
            ("domain", domain.to_owned()),
            ("action", "save".to_owned()),
            ("type", "create".to_owned()),
            ("request", "letsencrypt".to_owned()),
            ("name", domain.to_owned()),
            ("le_select0", domain.to_owned()),
            ("le_select1", format!("www.{domain}")),
            ("keysize", "secp384r1".to_owned()),
            ("encryption", "sha256".to_owned()),
            ("wildcard", "no".to_owned()),
            ("background", "auto".to_owned()),
            ("acme_provider", "letsencrypt".to_owned()),
        ];
        self.call("CMD_API_SSL", CHANGE, Some(username), &params, &[])
            .await
            .map(drop)
    }

    async fn create_mailbox(&self, username: &str, spec: &MailboxSpec) -> Result<(), PanelError> {
        let params = vec![
            ("action", "create".to_owned()),
            ("domain", spec.domain.clone()),
            ("user", spec.local_part.clone()),
            ("passwd", spec.password.expose().to_owned()),
            ("passwd2", spec.password.expose().to_owned()),
            // MB, 0 = unlimited.
            ("quota", spec.quota_mb.unwrap_or(0).to_string()),
        ];
        match self
            .call(
                "CMD_API_POP",
                CHANGE,
                Some(username),
                &params,
                &[&spec.password],
            )
            .await
        {
            Ok(_) => Ok(()),
            // Whatever the duplicate text is, a mailbox that is there now is the one an
            // earlier attempt made.
            Err(e) if e.class() != ErrorClass::Auth => {
                let list = vec![
                    ("action", "list".to_owned()),
                    ("domain", spec.domain.clone()),
                ];
                let reply = self
                    .call("CMD_API_POP", Method::GET, Some(username), &list, &[])
                    .await
                    .map_err(|_| e.clone())?;
                let exists = reply
                    .list
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&spec.local_part));
                if exists { Ok(()) } else { Err(e) }
            }
            Err(e) => Err(e),
        }
    }

    async fn create_database(
        &self,
        username: &str,
        spec: &DatabaseSpec,
    ) -> Result<DatabaseInfo, PanelError> {
        let (bare_db, full_db) = Self::prefixed(username, &spec.name);
        let (bare_user, full_user) = Self::prefixed(username, &spec.user);
        let info = DatabaseInfo {
            database: full_db.clone(),
            user: full_user,
        };
        // One call creates the database, the user and the grant.
        let params = vec![
            ("action", "create".to_owned()),
            ("name", bare_db),
            ("user", bare_user),
            ("passwd", spec.password.expose().to_owned()),
            ("passwd2", spec.password.expose().to_owned()),
        ];
        match self
            .call(
                "CMD_API_DATABASES",
                CHANGE,
                Some(username),
                &params,
                &[&spec.password],
            )
            .await
        {
            Ok(_) => Ok(info),
            Err(e) if e.class() != ErrorClass::Auth => {
                let reply = self
                    .call(
                        "CMD_API_DATABASES",
                        Method::GET,
                        Some(username),
                        &NO_PARAMS,
                        &[],
                    )
                    .await
                    .map_err(|_| e.clone())?;
                if reply.list.contains(&full_db) {
                    Ok(info)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// An admin backup of the one account (`CMD_API_ADMIN_BACKUP` `action=create`, with the
    /// fields DirectAdmin's backup hooks document: `when=now`, `where=local`, `local_path`,
    /// `who=selected`, `select0`, `what=all`) into `/home/admin/admin_backups`, outside the
    /// account's home, so the archive `user.<creator>.<user>.tar.gz` outlives the account.
    /// DirectAdmin queues it; the archive appears once written.
    async fn start_backup(&self, username: &str) -> Result<(), PanelError> {
        if self.get_account(username).await?.is_none() {
            return Err(PanelError::not_found(
                "CMD_API_ADMIN_BACKUP",
                format!("no account {username}"),
            ));
        }
        let params = vec![
            ("action", "create".to_owned()),
            ("when", "now".to_owned()),
            ("where", "local".to_owned()),
            ("local_path", ADMIN_BACKUP_DIR.to_owned()),
            ("who", "selected".to_owned()),
            ("select0", username.to_owned()),
            ("what", "all".to_owned()),
        ];
        self.call("CMD_API_ADMIN_BACKUP", CHANGE, None, &params, &[])
            .await?;
        Ok(())
    }

    /// The account's archives among the admin's `/admin_backups` files, listed by the file
    /// manager with size and date (layout UNCONFIRMED). DirectAdmin lists an archive once
    /// written, so every entry is finished.
    async fn list_backups(&self, username: &str) -> Result<Vec<BackupInfo>, PanelError> {
        let params = vec![("path", ADMIN_BACKUP_PATH.to_owned())];
        let reply = self
            .call("CMD_API_FILE_MANAGER", Method::GET, None, &params, &[])
            .await?;
        Ok(admin_archives(&reply)
            .into_iter()
            .filter(|b| admin_archive_owner(&b.name) == Some(username))
            .collect())
    }

    /// The admin's file manager delete (`action=multiple&button=delete`, UNCONFIRMED fields)
    /// on `/admin_backups/<name>`. The list is read first, so a name the account does not
    /// have is `false`.
    async fn delete_backup(&self, username: &str, name: &str) -> Result<bool, PanelError> {
        check_backup_name("delete_backup", name)?;
        let listed = self.list_backups(username).await?;
        if !listed.iter().any(|b| b.name == name) {
            return Ok(false);
        }
        let params = vec![
            ("action", "multiple".to_owned()),
            ("button", "delete".to_owned()),
            ("path", ADMIN_BACKUP_PATH.to_owned()),
            ("select0", format!("{ADMIN_BACKUP_PATH}/{name}")),
        ];
        self.call("CMD_API_FILE_MANAGER", CHANGE, None, &params, &[])
            .await?;
        Ok(true)
    }

    /// `CMD_API_ADMIN_BACKUP` `action=restore` with the restore fields DirectAdmin's hooks
    /// document (`where=local`, `local_path`, `ip_choice=file`, `select0=<file>`). DirectAdmin
    /// queues it; the account exists again once restored.
    async fn start_restore(&self, username: &str, name: &str) -> Result<(), PanelError> {
        check_backup_name("restore_backup", name)?;
        if !self
            .list_backups(username)
            .await?
            .iter()
            .any(|b| b.name == name)
        {
            return Err(PanelError::not_found(
                "CMD_API_ADMIN_BACKUP",
                format!("no archive {name} of {username}"),
            ));
        }
        let params = vec![
            ("action", "restore".to_owned()),
            ("type", "admin".to_owned()),
            ("where", "local".to_owned()),
            ("local_path", ADMIN_BACKUP_DIR.to_owned()),
            ("ip_choice", "file".to_owned()),
            ("select0", name.to_owned()),
        ];
        self.call("CMD_API_ADMIN_BACKUP", CHANGE, None, &params, &[])
            .await?;
        self.restores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(username.to_owned(), name.to_owned());
        Ok(())
    }

    /// The task queue is not visible through the API: a restore this driver queued is
    /// finished once the account exists, running until then.
    async fn restore_state(&self, username: &str) -> Result<RestoreState, PanelError> {
        let queued = self
            .restores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(username)
            .cloned();
        let Some(archive) = queued else {
            return Ok(RestoreState::None);
        };
        Ok(if self.get_account(username).await?.is_some() {
            RestoreState::Finished { archive }
        } else {
            RestoreState::Running { archive }
        })
    }

    async fn web_root(&self, username: &str, domain: &str) -> Result<PathBuf, PanelError> {
        // DirectAdmin's fixed layout; the API has no document-root call. The account must exist
        // so a typo does not produce a path nobody serves.
        self.require_account("web_root", username).await?;
        Ok(self
            .fs_root
            .join(format!("home/{username}/domains/{domain}/public_html")))
    }

    async fn write_acme_challenge(
        &self,
        username: &str,
        domain: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), PanelError> {
        const OP: &str = "filemanager_upload";
        check_acme_token(token)?;
        // The new API's upload (DirectAdmin swagger `filemanager-actions/upload`), as the user so
        // the file is theirs; `dir` is relative to the user's home.
        let dir = format!("/domains/{domain}/public_html/.well-known/acme-challenge");
        // '=' cannot occur in a key authorization (base64url and '.'), so it cannot occur in
        // the part either.
        const BOUNDARY: &str = "mpanel=acme=boundary";
        let body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{token}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{key_authorization}\r\n--{BOUNDARY}--\r\n"
        );
        let request = self
            .ep
            .request(CHANGE, "/api/filemanager-actions/upload")
            .basic_auth(
                format!("{}|{username}", self.ep.user),
                Some(self.ep.token.expose()),
            )
            .query(&[
                ("dir", dir.as_str()),
                ("name", token),
                ("overwrite", "true"),
            ])
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary=\"{BOUNDARY}\""),
            )
            .body(body);
        let reply = self.ep.send(OP, request).await?;
        // New-API errors are `{"type","message"}` with a non-2xx status.
        if let Some(class) = http::status_class(reply.status) {
            let message = serde_json::from_str::<Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {}", reply.status.as_u16()));
            return Err(PanelError::new(class, OP, self.ep.scrub(&message, &[])));
        }
        if reply.is_html() {
            return Err(PanelError::new(
                ErrorClass::Auth,
                OP,
                "DirectAdmin answered with its HTML login page",
            ));
        }
        Ok(())
    }
}

/// `user.<creator>.<user>.tar.gz` (admin backups) → `<user>`.
fn admin_archive_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("user.")?;
    let rest = rest
        .strip_suffix(".tar.gz")
        .or_else(|| rest.strip_suffix(".tar.zst"))?;
    let (_, user) = rest.split_once('.')?;
    (!user.is_empty() && !user.contains('.')).then_some(user)
}

/// The files of the admin's `/admin_backups` listing: JSON `{path: {name, size, date}}`, or
/// url-encoded `path=<url-encoded attributes>`.
fn admin_archives(reply: &DaReply) -> Vec<BackupInfo> {
    let entry = |path: &str, name: Option<String>, size: Option<&str>, date: Option<&str>| {
        let name = name.or_else(|| {
            path.strip_prefix(ADMIN_BACKUP_PATH)?
                .strip_prefix('/')
                .map(str::to_owned)
        })?;
        Some(BackupInfo {
            name,
            size_bytes: size.and_then(|s| s.trim().parse().ok()),
            created_at: date.and_then(|d| d.trim().parse().ok()),
            ready: true,
        })
    };
    let mut files = Vec::new();
    if let Value::Object(map) = &reply.json {
        for (path, attrs) in map {
            let text = |k: &str| attrs.get(k).and_then(scalar);
            if !path.starts_with(ADMIN_BACKUP_PATH) || !attrs.is_object() {
                continue;
            }
            if text("type").is_some_and(|t| t != "file") {
                continue;
            }
            files.extend(entry(
                path,
                text("name"),
                text("size").as_deref(),
                text("date").as_deref(),
            ));
        }
        return files;
    }
    for (path, value) in &reply.fields {
        if !path.starts_with(ADMIN_BACKUP_PATH) {
            continue;
        }
        let attrs: HashMap<String, String> = serde_urlencoded::from_str(value).unwrap_or_default();
        if attrs.get("type").is_some_and(|t| t != "file") {
            continue;
        }
        files.extend(entry(
            path,
            attrs.get("name").cloned(),
            attrs.get("size").map(String::as_str),
            attrs.get("date").map(String::as_str),
        ));
    }
    files
}

/// Parses either answer form: JSON (`json=yes` honoured) or url-encoded.
fn parse_reply(body: &str) -> DaReply {
    let trimmed = body.trim();
    if let Ok(json) = serde_json::from_str::<Value>(trimmed) {
        let mut reply = DaReply::default();
        match &json {
            Value::Object(map) => {
                for (k, v) in map {
                    if let Some(s) = scalar(v) {
                        reply.fields.insert(k.clone(), s);
                    }
                }
                // Lists: {"list":[…]}, or an object keyed "0","1",… (seen with json=yes).
                if let Some(items) = map.get("list").and_then(Value::as_array) {
                    reply.list = items.iter().filter_map(scalar).collect();
                } else if !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok()) {
                    let mut items: Vec<(usize, String)> = map
                        .iter()
                        .filter_map(|(k, v)| Some((k.parse().ok()?, scalar(v)?)))
                        .collect();
                    items.sort();
                    reply.list = items.into_iter().map(|(_, v)| v).collect();
                }
            }
            Value::Array(items) => reply.list = items.iter().filter_map(scalar).collect(),
            _ => {}
        }
        reply.json = json;
        return reply;
    }
    let mut reply = DaReply::default();
    for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(trimmed).unwrap_or_default() {
        if k == "list[]" {
            reply.list.push(v);
        } else {
            reply.fields.insert(k, v);
        }
    }
    reply
}

/// The failure message of an answer, if it is a failure: url-encoded `error=1&text=…&details=…`,
/// or JSON `{"error":"…","result":"<details>"}`.
fn failure_text(reply: &DaReply) -> Option<String> {
    let error = reply.get("error")?.trim();
    if error.is_empty() || error == "0" {
        return None;
    }
    let text = reply.get("text").unwrap_or("").trim();
    let details = reply
        .get("details")
        .or_else(|| reply.get("result"))
        .unwrap_or("")
        .trim();
    // In the JSON form the message is the `error` value itself.
    let summary = if error == "1" { text } else { error };
    Some(match (summary.is_empty(), details.is_empty()) {
        (false, false) => format!("{summary}: {details}"),
        (false, true) => summary.to_owned(),
        (true, false) => details.to_owned(),
        (true, true) => "DirectAdmin reported an error".to_owned(),
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(scalar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_failure_is_read() {
        let r = parse_reply("error=1&text=Cannot%20create&details=Domain%20already%20exists");
        assert_eq!(
            failure_text(&r).as_deref(),
            Some("Cannot create: Domain already exists")
        );
    }

    #[test]
    fn json_failure_and_lists_are_read() {
        let r = parse_reply(r#"{"error":"User does not exist","result":"x"}"#);
        assert_eq!(failure_text(&r).as_deref(), Some("User does not exist: x"));
        let l = parse_reply("list[]=bronze&list[]=gold");
        assert_eq!(l.list, ["bronze", "gold"]);
        let ok = parse_reply(r#"{"success":"User bob created","result":""}"#);
        assert_eq!(failure_text(&ok), None);
        let zero = parse_reply("error=0&text=ok");
        assert_eq!(failure_text(&zero), None);
    }

    #[test]
    fn database_names_get_the_user_prefix_once() {
        assert_eq!(
            DirectAdminDriver::prefixed("bob", "wp"),
            ("wp".to_owned(), "bob_wp".to_owned())
        );
        assert_eq!(
            DirectAdminDriver::prefixed("bob", "bob_wp"),
            ("wp".to_owned(), "bob_wp".to_owned())
        );
    }
}
