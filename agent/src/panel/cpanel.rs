//! cPanel & WHM driver: WHM API 1 (`/json-api/<function>?api.version=1`, header
//! `Authorization: whm user:token`) for accounts, packages, DNS and SSL, and UAPI through WHM's
//! `cpanel` proxy (`cpanel_jsonapi_user=<account>`, `cpanel_jsonapi_apiversion=3`) for Email and
//! Mysql, since the agent holds a root token and no per-account token.
//!
//! Envelope quirks handled here (panel-apis.md §1.2): `metadata.result` is a number or a string;
//! failures come as HTTP 200 with `result: 0` and the text in `metadata.reason`; bad credentials
//! are HTTP 403 with a `cpanelresult` body; sizes are strings with units (`"10M"`, `"unlimited"`).

use std::path::PathBuf;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use tracing::{debug, info};

use super::account::{self, AccountCreation};
use super::http::{self, CHANGE, PanelEndpoint, Reply};
use super::types::*;
use super::{ControlPanel, check_acme_token, check_backup_name};

/// A WHM call: function name and parameters.
type Params<'a> = Vec<(&'a str, String)>;

#[derive(Debug)]
pub struct CpanelDriver {
    ep: PanelEndpoint,
    fs_root: PathBuf,
    /// The restore transfer session this driver started per account, with the archive it
    /// restores: WHM reports a restore's progress only by session id.
    restores: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
}

/// One account archive WHM lists: the file (or pkgacct's work directory) and its directory.
#[derive(Debug)]
struct CpArchive {
    file: String,
    path: String,
}

impl CpArchive {
    /// pkgacct writes in a work directory `cpmove-<user>` and only then the archive
    /// `cpmove-<user>.tar.gz`, so a bare name is a backup still being written.
    fn ready(&self) -> bool {
        self.file.ends_with(".tar.gz") || self.file.ends_with(".tar")
    }
}

impl CpanelDriver {
    pub fn new(ep: PanelEndpoint, fs_root: PathBuf) -> Self {
        Self {
            ep,
            fs_root,
            restores: std::sync::Mutex::default(),
        }
    }

    fn authorization(&self) -> Result<reqwest::header::HeaderValue, PanelError> {
        http::secret_header(&format!("whm {}:{}", self.ep.user, self.ep.token.expose()))
    }

    /// Calls a WHM API 1 function. Reads go as GET; anything that changes state goes as a POST
    /// form so passwords and keys stay out of the query string (and the panel's access log).
    /// Returns the whole envelope on `metadata.result == 1`.
    async fn whm(
        &self,
        function: &'static str,
        method: Method,
        params: &Params<'_>,
        secrets: &[&Secret],
    ) -> Result<Value, PanelError> {
        let path = format!("/json-api/{function}?api.version=1");
        let mut request = self
            .ep
            .request(method.clone(), &path)
            .header(reqwest::header::AUTHORIZATION, self.authorization()?);
        request = if method == Method::GET {
            request.query(params)
        } else {
            request.form(params)
        };
        let reply = self.ep.send(function, request).await?;
        let envelope = self.parse(function, &reply, secrets)?;
        let metadata = envelope.get("metadata").unwrap_or(&Value::Null);
        match metadata.get("result").and_then(flag) {
            Some(true) => Ok(envelope),
            Some(false) => {
                let reason = metadata
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("WHM reported failure without a reason");
                Err(PanelError::new(
                    http::text_class(reason),
                    function,
                    self.ep.scrub(reason, secrets),
                ))
            }
            None => Err(PanelError::retryable(
                function,
                "WHM answered without metadata.result",
            )),
        }
    }

    /// HTTP status, HTML and JSON checks shared by WHM and UAPI calls.
    fn parse(
        &self,
        operation: &'static str,
        reply: &Reply,
        secrets: &[&Secret],
    ) -> Result<Value, PanelError> {
        let parsed: Option<Value> = serde_json::from_str(&reply.body).ok();
        // cPanel's auth failure: `403 {"cpanelresult":{"error":"Access denied",...}}`.
        let cpanelresult_error = parsed
            .as_ref()
            .and_then(|v| v.pointer("/cpanelresult/error"))
            .and_then(Value::as_str)
            .map(|e| self.ep.scrub(e, secrets));
        if let Some(class) = http::status_class(reply.status) {
            let message = cpanelresult_error.unwrap_or_else(|| {
                format!(
                    "HTTP {}: {}",
                    reply.status,
                    self.ep.scrub(&reply.body, secrets)
                )
            });
            return Err(PanelError::new(class, operation, message));
        }
        match parsed {
            Some(v) => {
                if let Some(e) = cpanelresult_error {
                    return Err(PanelError::new(http::text_class(&e), operation, e));
                }
                Ok(v)
            }
            // A login page instead of JSON: the token was not accepted.
            None if reply.is_html() => Err(PanelError::new(
                ErrorClass::Auth,
                operation,
                "WHM answered with an HTML page instead of JSON (login page: token rejected?)",
            )),
            None => Err(PanelError::retryable(
                operation,
                "WHM answered with a body that is not JSON",
            )),
        }
    }

    /// Calls a UAPI function as `user` through WHM's `cpanel` proxy. Returns `result.data`.
    async fn uapi(
        &self,
        user: &str,
        module: &str,
        function: &'static str,
        params: &Params<'_>,
        secrets: &[&Secret],
    ) -> Result<Value, PanelError> {
        let mut form: Params<'_> = vec![
            ("cpanel_jsonapi_user", user.to_owned()),
            ("cpanel_jsonapi_apiversion", "3".to_owned()),
            ("cpanel_jsonapi_module", module.to_owned()),
            ("cpanel_jsonapi_func", function.to_owned()),
        ];
        form.extend(params.iter().cloned());
        let request = self
            .ep
            .request(CHANGE, "/json-api/cpanel")
            .header(reqwest::header::AUTHORIZATION, self.authorization()?)
            .form(&form);
        let reply = self.ep.send(function, request).await?;
        let envelope = self.parse(function, &reply, secrets)?;
        // The proxy puts the UAPI object under "result" (cpanelgo `UAPIResult`); `uapi_cpanel`
        // would put it under data.uapi and `/execute/` returns it flat. Which one a given server
        // uses is UNCONFIRMED, so accept all three.
        let result = envelope
            .get("result")
            .filter(|r| r.is_object())
            .or_else(|| envelope.pointer("/data/uapi"))
            .unwrap_or(&envelope);
        // A WHM-level failure of the proxy itself (unknown user) comes as metadata.result 0.
        if let Some(false) = envelope.pointer("/metadata/result").and_then(flag) {
            let reason = envelope
                .pointer("/metadata/reason")
                .and_then(Value::as_str)
                .unwrap_or("WHM reported failure");
            return Err(PanelError::new(
                http::text_class(reason),
                function,
                self.ep.scrub(reason, secrets),
            ));
        }
        match result.get("status").and_then(flag) {
            Some(true) => Ok(result.get("data").cloned().unwrap_or(Value::Null)),
            Some(false) => {
                let errors = result
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "UAPI reported failure without errors".to_owned());
                Err(PanelError::new(
                    http::text_class(&errors),
                    function,
                    self.ep.scrub(&errors, secrets),
                ))
            }
            None => Err(PanelError::retryable(
                function,
                "UAPI answered without a status",
            )),
        }
    }

    async fn list_accts(&self, user: Option<&str>) -> Result<Vec<Value>, PanelError> {
        let mut params: Params<'_> = Vec::new();
        if let Some(user) = user {
            params.push(("search", user.to_owned()));
            params.push(("searchtype", "user".to_owned()));
            params.push(("searchmethod", "exact".to_owned()));
        }
        let envelope = self.whm("listaccts", Method::GET, &params, &[]).await?;
        let accounts = envelope
            .pointer("/data/acct")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Filtered again here: an older WHM may treat `search` as a regex whatever
        // `searchmethod` says, and `bob` must not match `bobby`.
        Ok(match user {
            Some(user) => accounts
                .into_iter()
                .filter(|a| text(a, "user").is_some_and(|u| u.eq_ignore_ascii_case(user)))
                .collect(),
            None => accounts,
        })
    }

    async fn require_account(
        &self,
        operation: &'static str,
        username: &str,
    ) -> Result<AccountInfo, PanelError> {
        self.get_account(username).await?.ok_or_else(|| {
            PanelError::not_found(operation, format!("account {username:?} does not exist"))
        })
    }

    /// The name with the cPanel database prefix: the first 8 characters of the cPanel username
    /// and `_` (panel-apis.md §1.7). Whether UAPI adds the prefix itself is UNCONFIRMED, so the
    /// full name is always sent, which is correct either way.
    pub fn prefixed(cpanel_user: &str, name: &str) -> String {
        let prefix: String = cpanel_user.chars().take(8).collect();
        let prefix = format!("{prefix}_");
        if name.starts_with(&prefix) {
            name.to_owned()
        } else {
            format!("{prefix}{name}")
        }
    }

    /// The zone through `parse_dns_zone`, the reader WHM pairs with `mass_edit_dns_zone`: its
    /// `line_index` values are the ones `edit`/`remove` take, and its SOA carries the serial the
    /// edit must quote. (`dumpzone`'s `Line` is off by one from them.)
    async fn zone_records(&self, domain: &str) -> Result<Zone, PanelError> {
        let envelope = self
            .whm(
                "parse_dns_zone",
                Method::GET,
                &vec![("zone", domain.to_owned())],
                &[],
            )
            .await?;
        Ok(Zone::from_parse_dns_zone(domain, &envelope))
    }
}

#[async_trait]
impl AccountCreation for CpanelDriver {
    async fn lookup_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError> {
        Ok(self
            .list_accts(Some(username))
            .await?
            .first()
            .map(account_info))
    }

    async fn create_account_once(&self, spec: &AccountSpec) -> Result<(), PanelError> {
        let mut params: Params<'_> = vec![
            ("username", spec.username.clone()),
            ("domain", spec.domain.clone()),
            ("plan", spec.package.clone()),
            ("password", spec.password.expose().to_owned()),
            // The ownership evidence `ensure_account` checks: WHM has no free marker field.
            ("contactemail", spec.contact_email.clone()),
        ];
        if let Some(quota) = spec.quota_mb {
            params.push(("quota", quota.to_string()));
        }
        self.whm("createacct", CHANGE, &params, &[&spec.password])
            .await
            .map(drop)
    }
}

#[async_trait]
impl ControlPanel for CpanelDriver {
    fn kind(&self) -> PanelKind {
        PanelKind::Cpanel
    }

    async fn get_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError> {
        self.lookup_account(username).await
    }

    async fn ensure_account(&self, spec: &AccountSpec) -> Result<AccountInfo, PanelError> {
        account::ensure_account(self, spec).await
    }

    async fn suspend_account(&self, username: &str, reason: &str) -> Result<(), PanelError> {
        let params = vec![("user", username.to_owned()), ("reason", reason.to_owned())];
        match self.whm("suspendacct", CHANGE, &params, &[]).await {
            Ok(_) => Ok(()),
            // Suspending a suspended account may fail; the state we wanted is what counts.
            Err(e) if e.class() != ErrorClass::Auth => {
                let info = self.require_account("suspendacct", username).await?;
                if info.suspended { Ok(()) } else { Err(e) }
            }
            Err(e) => Err(e),
        }
    }

    async fn unsuspend_account(&self, username: &str) -> Result<(), PanelError> {
        // unsuspendacct's response body is UNCONFIRMED; only metadata.result is relied on.
        let params = vec![("user", username.to_owned())];
        match self.whm("unsuspendacct", CHANGE, &params, &[]).await {
            Ok(_) => Ok(()),
            Err(e) if e.class() != ErrorClass::Auth => {
                let info = self.require_account("unsuspendacct", username).await?;
                if info.suspended { Err(e) } else { Ok(()) }
            }
            Err(e) => Err(e),
        }
    }

    async fn terminate_account(&self, username: &str) -> Result<(), PanelError> {
        if self.get_account(username).await?.is_none() {
            return Ok(());
        }
        let params = vec![("username", username.to_owned())];
        match self.whm("removeacct", CHANGE, &params, &[]).await {
            Ok(_) => Ok(()),
            // A timed-out removeacct often finishes anyway; gone is gone.
            Err(e) if e.class() != ErrorClass::Auth => match self.get_account(username).await {
                Ok(None) => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn change_package(&self, username: &str, package: &str) -> Result<(), PanelError> {
        let params = vec![("user", username.to_owned()), ("pkg", package.to_owned())];
        match self.whm("changepackage", CHANGE, &params, &[]).await {
            Ok(_) => Ok(()),
            Err(e) if e.class() != ErrorClass::Auth => {
                let info = self.require_account("changepackage", username).await?;
                if info.package.as_deref() == Some(package) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn change_password(&self, username: &str, password: &Secret) -> Result<(), PanelError> {
        let params = vec![
            ("user", username.to_owned()),
            ("password", password.expose().to_owned()),
        ];
        self.whm("passwd", CHANGE, &params, &[password])
            .await
            .map(drop)
    }

    async fn list_accounts(&self) -> Result<Vec<AccountInfo>, PanelError> {
        Ok(self
            .list_accts(None)
            .await?
            .iter()
            .map(account_info)
            .collect())
    }

    async fn list_packages(&self) -> Result<Vec<PackageInfo>, PanelError> {
        // listpkgs' body is UNCONFIRMED (inferred from getpkginfo): data.pkg[] with `name` and
        // upper-case limits. Entries without a name are skipped rather than invented.
        let envelope = self.whm("listpkgs", Method::GET, &Vec::new(), &[]).await?;
        let packages = envelope
            .pointer("/data/pkg")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(packages
            .iter()
            .filter_map(|p| {
                Some(PackageInfo {
                    name: text(p, "name")?,
                    disk_quota: text(p, "QUOTA").and_then(|q| parse_size(&q, MB)),
                    bandwidth: text(p, "BWLIMIT").and_then(|b| parse_size(&b, MB)),
                })
            })
            .collect())
    }

    async fn usage(&self, username: &str) -> Result<Usage, PanelError> {
        let acct = self
            .list_accts(Some(username))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                PanelError::not_found("listaccts", format!("account {username:?} does not exist"))
            })?;
        let size = |key: &str| text(&acct, key).and_then(|s| parse_size(&s, MB));
        let count = |key: &str| text(&acct, key).and_then(|s| parse_size(&s, 1));
        let mut usage = Usage {
            disk_used: size("diskused").and_then(value_of),
            disk_limit: size("disklimit"),
            inodes_used: count("inodesused").and_then(value_of),
            inodes_limit: count("inodeslimit"),
            ..Usage::default()
        };
        // showbw's body is UNCONFIRMED: expected data.acct[] with `totalbytes` and `limit` per
        // user. If the shape differs, bandwidth stays unknown instead of failing disk usage.
        let params = vec![
            ("search", username.to_owned()),
            ("searchtype", "user".to_owned()),
        ];
        let bw = self.whm("showbw", Method::GET, &params, &[]).await?;
        if let Some(row) = bw
            .pointer("/data/acct")
            .and_then(Value::as_array)
            .and_then(|rows| {
                rows.iter()
                    .find(|r| text(r, "user").is_some_and(|u| u.eq_ignore_ascii_case(username)))
            })
        {
            usage.bandwidth_used = text(row, "totalbytes").and_then(|s| s.parse().ok());
            usage.bandwidth_limit = text(row, "limit").and_then(|s| parse_size(&s, 1));
        }
        Ok(usage)
    }

    async fn ensure_dns_zone(
        &self,
        username: &str,
        domain: &str,
        ip: Option<&str>,
    ) -> Result<(), PanelError> {
        // createacct makes the zone, so this normally finds it.
        match self.zone_records(domain).await {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.class(), ErrorClass::Auth | ErrorClass::Retryable) => {
                return Err(e);
            }
            Err(_) => {}
        }
        let Some(ip) = ip else {
            return Err(PanelError::permanent(
                "adddns",
                format!("zone {domain} does not exist and no IP was given to create it"),
            ));
        };
        // adddns parameters are UNCONFIRMED (domain, ip, trueowner from WHM's own forms).
        let params = vec![
            ("domain", domain.to_owned()),
            ("ip", ip.to_owned()),
            ("trueowner", username.to_owned()),
        ];
        match self.whm("adddns", CHANGE, &params, &[]).await {
            Ok(_) => Ok(()),
            Err(e) if e.class() != ErrorClass::Auth => {
                // "already exists" from a concurrent or earlier attempt is fine if it is there.
                match self.zone_records(domain).await {
                    Ok(_) => Ok(()),
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn upsert_dns_record(
        &self,
        username: &str,
        domain: &str,
        record: &DnsRecord,
    ) -> Result<(), PanelError> {
        self.upsert_dns_records(username, domain, std::slice::from_ref(record))
            .await
    }

    /// One `parse_dns_zone` and one `mass_edit_dns_zone` carrying every `add`, `edit` and
    /// `remove`: one serial check and one reload for the whole set, and no window in which
    /// another editor's change makes half of the set fail.
    async fn upsert_dns_records(
        &self,
        _username: &str,
        domain: &str,
        records: &[DnsRecord],
    ) -> Result<(), PanelError> {
        let zone = self.zone_records(domain).await?;
        let edits = zone.edits_for(domain, records);
        if edits.is_empty() {
            return Ok(());
        }
        let mut params = vec![
            ("zone", domain.to_owned()),
            ("serial", zone.serial(domain)?),
        ];
        params.extend(edits);
        self.whm("mass_edit_dns_zone", CHANGE, &params, &[])
            .await
            .map(drop)
    }

    async fn delete_dns_record(
        &self,
        _username: &str,
        domain: &str,
        key: &DnsRecordKey,
    ) -> Result<(), PanelError> {
        let zone = self.zone_records(domain).await?;
        let lines: Vec<usize> = zone
            .records
            .iter()
            .filter(|(_, r)| key.matches(r))
            .map(|(line, _)| *line)
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        // The `remove` item format is UNCONFIRMED; line indexes (0-based, like `edit`) are what
        // WHM's own zone editor sends.
        let mut params = vec![
            ("zone", domain.to_owned()),
            ("serial", zone.serial(domain)?),
        ];
        params.extend(lines.iter().map(|l| ("remove", l.to_string())));
        self.whm("mass_edit_dns_zone", CHANGE, &params, &[])
            .await
            .map(drop)
    }

    async fn install_certificate(
        &self,
        _username: &str,
        domain: &str,
        bundle: &CertificateBundle,
    ) -> Result<(), PanelError> {
        // `key` and `cab` come from third-party use of installssl; `crt`/`domain` are official.
        let params = vec![
            ("domain", domain.to_owned()),
            ("crt", bundle.certificate.clone()),
            ("key", bundle.private_key.expose().to_owned()),
            ("cab", bundle.chain.clone()),
        ];
        self.whm("installssl", CHANGE, &params, &[&bundle.private_key])
            .await?;
        info!(domain, "certificate installed");
        Ok(())
    }

    async fn start_auto_ssl(&self, username: &str, _domain: &str) -> Result<(), PanelError> {
        let params = vec![("username", username.to_owned())];
        let envelope = self
            .whm("start_autossl_check_for_one_user", CHANGE, &params, &[])
            .await?;
        debug!(pid = ?envelope.pointer("/data/pid"), "AutoSSL check started");
        Ok(())
    }

    async fn create_mailbox(&self, username: &str, spec: &MailboxSpec) -> Result<(), PanelError> {
        let mut params = vec![
            ("email", spec.local_part.clone()),
            ("domain", spec.domain.clone()),
            ("password", spec.password.expose().to_owned()),
        ];
        // add_pop: quota in MB, 0 = unlimited.
        params.push(("quota", spec.quota_mb.unwrap_or(0).to_string()));
        match self
            .uapi(username, "Email", "add_pop", &params, &[&spec.password])
            .await
        {
            Ok(_) => Ok(()),
            // The duplicate-address text is UNCONFIRMED, so whatever the error says, a mailbox
            // that exists after the failure is the one an earlier attempt created.
            Err(e) if e.class() != ErrorClass::Auth => {
                let address = format!("{}@{}", spec.local_part, spec.domain);
                let list = self
                    .uapi(username, "Email", "list_pops", &Vec::new(), &[])
                    .await
                    .map_err(|_| e.clone())?;
                let exists = list.as_array().is_some_and(|pops| {
                    pops.iter()
                        .any(|p| text(p, "email").is_some_and(|m| m.eq_ignore_ascii_case(&address)))
                });
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
        let database = Self::prefixed(username, &spec.name);
        let user = Self::prefixed(username, &spec.user);

        let create_db = vec![("name", database.clone())];
        // A database that exists after a failed create is the one an earlier attempt made: the
        // prefixed name lives inside this account, so nobody else can own it.
        if let Err(e) = self
            .uapi(username, "Mysql", "create_database", &create_db, &[])
            .await
            && (e.class() == ErrorClass::Auth || !self.has_database(username, &database).await?)
        {
            return Err(e);
        }

        let create_user = vec![
            ("name", user.clone()),
            ("password", spec.password.expose().to_owned()),
        ];
        if let Err(e) = self
            .uapi(
                username,
                "Mysql",
                "create_user",
                &create_user,
                &[&spec.password],
            )
            .await
        {
            if e.class() == ErrorClass::Auth || !self.has_db_user(username, &user).await? {
                return Err(e);
            }
            // The user exists from an earlier attempt: make its password the one we hand out.
            let set = vec![
                ("user", user.clone()),
                ("password", spec.password.expose().to_owned()),
            ];
            self.uapi(username, "Mysql", "set_password", &set, &[&spec.password])
                .await?;
        }

        let grant = vec![
            ("user", user.clone()),
            ("database", database.clone()),
            ("privileges", "ALL PRIVILEGES".to_owned()),
        ];
        self.uapi(username, "Mysql", "set_privileges_on_database", &grant, &[])
            .await?;
        Ok(DatabaseInfo { database, user })
    }

    /// WHM `start_background_pkgacct` (official "Back up an account using the pkgacct
    /// script"): packages the account in the background into `/home/cpmove-<user>.tar.gz`,
    /// outside the account's home, so the archive outlives the account. Answers at once with
    /// a session id.
    async fn start_backup(&self, username: &str) -> Result<(), PanelError> {
        self.require_account("start_background_pkgacct", username)
            .await?;
        let params = vec![
            ("user", username.to_owned()),
            ("compressionsetting", "compress".to_owned()),
        ];
        let envelope = self
            .whm("start_background_pkgacct", CHANGE, &params, &[])
            .await?;
        debug!(session = ?envelope.pointer("/data/session_id"), "pkgacct started");
        Ok(())
    }

    /// WHM `list_cparchive_files` (official "Return cparchive files list"), the account's
    /// entries: the list gives neither size nor date; pkgacct's work directory (a bare
    /// `cpmove-<user>`) is a backup still being written. While the account exists, the
    /// archives earlier versions wrote into its home (UAPI `BackupInfo::list`) are listed too,
    /// so they can still be pruned.
    async fn list_backups(&self, username: &str) -> Result<Vec<BackupInfo>, PanelError> {
        let mut backups: Vec<BackupInfo> = self
            .archives(username)
            .await?
            .into_iter()
            .map(|a| BackupInfo {
                ready: a.ready(),
                name: a.file,
                size_bytes: None,
                created_at: None,
            })
            .collect();
        if self.get_account(username).await?.is_some() {
            backups.extend(self.home_backups(username).await?);
        }
        Ok(backups)
    }

    /// An archive of WHM's list goes with WHM `delete_account_archives` (official "Remove
    /// cPanel account's archives") on its directory, which removes the account's archives
    /// there: with pkgacct's one archive per account, the named one. An archive in the home
    /// goes to the trash and from there for good. A name the account does not have is `false`
    /// without any change.
    async fn delete_backup(&self, username: &str, name: &str) -> Result<bool, PanelError> {
        check_backup_name("delete_backup", name)?;
        if let Some(archive) = self
            .archives(username)
            .await?
            .into_iter()
            .find(|a| a.ready() && a.file == name)
        {
            let params = vec![("user", username.to_owned()), ("mountpoint", archive.path)];
            self.whm("delete_account_archives", CHANGE, &params, &[])
                .await?;
            return Ok(true);
        }
        // The home's archives went with a removed account.
        if self.get_account(username).await?.is_none()
            || !self
                .home_backups(username)
                .await?
                .iter()
                .any(|b| b.name == name)
        {
            return Ok(false);
        }
        self.trash_home_file(username, name).await?;
        Ok(true)
    }

    /// WHM `start_local_cpmove_restore` (official "Restore one cPanel account from a
    /// backup") with the archive's full path: restores the account in the background and
    /// answers with the transfer session to follow (`data.transfer_session_id`, field name
    /// UNCONFIRMED).
    async fn start_restore(&self, username: &str, name: &str) -> Result<(), PanelError> {
        check_backup_name("restore_backup", name)?;
        let Some(archive) = self
            .archives(username)
            .await?
            .into_iter()
            .find(|a| a.ready() && a.file == name)
        else {
            return Err(PanelError::not_found(
                "start_local_cpmove_restore",
                format!("no archive {name} of {username}"),
            ));
        };
        let params = vec![(
            "cpmovepath",
            format!("{}/{}", archive.path.trim_end_matches('/'), archive.file),
        )];
        let envelope = self
            .whm("start_local_cpmove_restore", CHANGE, &params, &[])
            .await?;
        let Some(session) = envelope
            .pointer("/data/transfer_session_id")
            .and_then(Value::as_str)
        else {
            return Err(PanelError::retryable(
                "start_local_cpmove_restore",
                "WHM did not name the restore's transfer session",
            ));
        };
        self.restores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(username.to_owned(), (session.to_owned(), name.to_owned()));
        Ok(())
    }

    /// WHM `get_transfer_session_state` (official "Return transfer session's status") of the
    /// restore this driver started: `COMPLETED`, `FAILED`/`ABORTED`, or still running.
    async fn restore_state(&self, username: &str) -> Result<RestoreState, PanelError> {
        let started = self
            .restores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(username)
            .cloned();
        let Some((session, archive)) = started else {
            return Ok(RestoreState::None);
        };
        let params = vec![("transfer_session_id", session)];
        let envelope = self
            .whm("get_transfer_session_state", Method::GET, &params, &[])
            .await?;
        let state = envelope
            .pointer("/data/state_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(match state {
            "COMPLETED" => RestoreState::Finished { archive },
            "FAILED" | "ABORTED" => RestoreState::Failed {
                archive,
                message: format!("WHM's restore session ended {state}"),
            },
            _ => RestoreState::Running { archive },
        })
    }

    async fn web_root(&self, username: &str, domain: &str) -> Result<PathBuf, PanelError> {
        let root = self.document_root(username, domain).await?;
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
        let root = self.document_root(username, domain).await?;
        let params = vec![
            ("dir", format!("{root}/.well-known/acme-challenge")),
            ("file", token.to_owned()),
            ("content", key_authorization.to_owned()),
        ];
        self.uapi(username, "Fileman", "save_file_content", &params, &[])
            .await
            .map(drop)
    }
}

impl CpanelDriver {
    /// UAPI `BackupInfo::list` (official UAPI page): `{name, sizeBytes, mtime, status}` per
    /// archive in the account's home; `status` is `ready` once no run is writing it.
    async fn home_backups(&self, username: &str) -> Result<Vec<BackupInfo>, PanelError> {
        let data = self
            .uapi(username, "BackupInfo", "list", &Vec::new(), &[])
            .await?;
        Ok(data
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| {
                        Some(BackupInfo {
                            name: text(e, "name")?,
                            size_bytes: e.get("sizeBytes").and_then(number),
                            created_at: e.get("mtime").and_then(number).map(|t| t as i64),
                            ready: text(e, "status").as_deref() == Some("ready"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// UAPI `Fileman::trash_file` then `Trash::remove` (official UAPI pages): UAPI has no
    /// delete for home-directory files, so the file goes to `~/.trash` and is removed from
    /// there for good.
    async fn trash_home_file(&self, username: &str, name: &str) -> Result<(), PanelError> {
        let trash = vec![("path", name.to_owned())];
        let moved = self
            .uapi(username, "Fileman", "trash_file", &trash, &[])
            .await?;
        let leaf = text(&moved, "trash_leaf").unwrap_or_else(|| name.to_owned());
        let remove = vec![("path", format!("/.trash/{leaf}"))];
        self.uapi(username, "Trash", "remove", &remove, &[]).await?;
        Ok(())
    }

    /// The account's entries of WHM's `list_cparchive_files` (`data.quickrestore_files[]`,
    /// `{file, path, user}`).
    async fn archives(&self, username: &str) -> Result<Vec<CpArchive>, PanelError> {
        let envelope = self
            .whm("list_cparchive_files", Method::GET, &Vec::new(), &[])
            .await?;
        Ok(envelope
            .pointer("/data/quickrestore_files")
            .and_then(Value::as_array)
            .map(|files| {
                files
                    .iter()
                    .filter(|f| text(f, "user").as_deref() == Some(username))
                    .filter_map(|f| {
                        Some(CpArchive {
                            file: text(f, "file")?,
                            path: text(f, "path")?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The document root of `domain` as the panel sees it (no `fs_root`).
    async fn document_root(&self, username: &str, domain: &str) -> Result<String, PanelError> {
        let params = vec![("domain", domain.to_owned())];
        match self.whm("domainuserdata", Method::GET, &params, &[]).await {
            Ok(envelope) => {
                if let Some(root) = envelope
                    .pointer("/data/userdata/documentroot")
                    .and_then(Value::as_str)
                {
                    return Ok(root.to_owned());
                }
            }
            Err(e) if matches!(e.class(), ErrorClass::Auth | ErrorClass::Retryable) => {
                return Err(e);
            }
            // Not every WHM (nor the simulator) offers domainuserdata; fall through.
            Err(_) => {}
        }
        // cPanel's fixed layout for an account's main domain.
        let info = self.require_account("domainuserdata", username).await?;
        if info
            .domain
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(domain))
        {
            Ok(format!("/home/{username}/public_html"))
        } else {
            Err(PanelError::not_found(
                "domainuserdata",
                format!("no document root known for {domain}"),
            ))
        }
    }
}

impl CpanelDriver {
    async fn has_database(&self, user: &str, database: &str) -> Result<bool, PanelError> {
        let list = self
            .uapi(user, "Mysql", "list_databases", &Vec::new(), &[])
            .await?;
        Ok(list.as_array().is_some_and(|dbs| {
            dbs.iter()
                .any(|d| text(d, "database").as_deref() == Some(database))
        }))
    }

    async fn has_db_user(&self, user: &str, db_user: &str) -> Result<bool, PanelError> {
        let list = self
            .uapi(user, "Mysql", "list_users", &Vec::new(), &[])
            .await?;
        Ok(list.as_array().is_some_and(|users| {
            users
                .iter()
                .any(|u| text(u, "user").as_deref() == Some(db_user))
        }))
    }
}

/// A zone as `parse_dns_zone` reports it: records with their `line_index`, and the SOA serial
/// `mass_edit_dns_zone` needs to detect concurrent edits.
struct Zone {
    serial: Option<String>,
    records: Vec<(usize, DnsRecord)>,
}

impl Zone {
    /// The SOA serial `mass_edit_dns_zone` must quote. A zone read without one cannot be
    /// edited safely: WHM refuses a missing or stale serial, and guessing one would defeat the
    /// check that protects concurrent edits.
    fn serial(&self, domain: &str) -> Result<String, PanelError> {
        self.serial
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                PanelError::permanent(
                    "parse_dns_zone",
                    format!(
                        "the zone of {domain} has no SOA record with a serial, which \
                     mass_edit_dns_zone needs; the zone file needs repair on the server"
                    ),
                )
            })
    }

    /// The `mass_edit_dns_zone` items that make the zone hold every record of `records`: a
    /// record already there is left alone; otherwise the first record of its slot with the same
    /// type is edited in place, the rest of the slot (a CNAME an address replaces, or what a
    /// CNAME replaces) is removed, and a record with no slot is added. Line indexes refer to
    /// the zone as read, which is what WHM checks the serial against.
    fn edits_for(&self, domain: &str, records: &[DnsRecord]) -> Vec<(&'static str, String)> {
        let mut claimed: Vec<usize> = Vec::new();
        let mut edits = Vec::new();
        let mut removes = Vec::new();
        let mut adds = Vec::new();
        for record in records {
            let present = self
                .records
                .iter()
                .any(|(line, r)| !claimed.contains(line) && record.same_content(r));
            if present {
                continue;
            }
            let slot: Vec<&(usize, DnsRecord)> = self
                .records
                .iter()
                .filter(|(line, r)| !claimed.contains(line) && record.same_slot(r))
                .collect();
            let kept = slot
                .iter()
                .find(|(_, r)| r.record_type == record.record_type)
                .map(|(line, _)| *line);
            for (line, _) in &slot {
                claimed.push(*line);
                if Some(*line) != kept {
                    removes.push(("remove", line.to_string()));
                }
            }
            match kept {
                Some(line) => edits.push((
                    "edit",
                    mass_edit_item(domain, record, Some(line)).to_string(),
                )),
                None => adds.push(("add", mass_edit_item(domain, record, None).to_string())),
            }
        }
        edits.into_iter().chain(removes).chain(adds).collect()
    }

    /// `data.payload[]`: `{type:"record", line_index, record_type, ttl, dname_b64,
    /// data_b64[]}`; names and RDATA are base64 because zone files are not UTF-8 by contract.
    fn from_parse_dns_zone(domain: &str, envelope: &Value) -> Self {
        let rows = envelope
            .pointer("/data/payload")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut serial = None;
        let mut records = Vec::new();
        for row in &rows {
            if text(row, "type").is_some_and(|t| t != "record") {
                continue; // comments, $TTL and other control lines
            }
            let data: Vec<String> = row
                .get("data_b64")
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(|d| unbase64(d.as_str()?)).collect())
                .unwrap_or_default();
            let kind = text(row, "record_type").unwrap_or_default();
            if kind.eq_ignore_ascii_case("SOA") {
                // SOA RDATA: mname rname serial refresh retry expire minimum.
                serial = data.get(2).cloned();
                continue;
            }
            let Ok(record_type) = kind.parse::<RecordType>() else {
                continue;
            };
            let Some(line) = row.get("line_index").and_then(number) else {
                continue;
            };
            let (value, priority) = match record_type {
                RecordType::Mx => (
                    data.get(1).cloned().unwrap_or_default(),
                    data.first().and_then(|p| p.parse().ok()),
                ),
                // TXT character-strings are one value split at 255 bytes.
                RecordType::Txt => (data.concat(), None),
                _ => (data.join(" "), None),
            };
            let name = row
                .get("dname_b64")
                .and_then(Value::as_str)
                .and_then(unbase64)
                .unwrap_or_default();
            records.push((
                usize::try_from(line).unwrap_or(usize::MAX),
                DnsRecord {
                    name: relative_name(&name, domain),
                    record_type,
                    value: value.trim_end_matches('.').to_owned(),
                    ttl: row
                        .get("ttl")
                        .and_then(number)
                        .and_then(|t| u32::try_from(t).ok())
                        .unwrap_or(0),
                    priority,
                },
            ));
        }
        Self { serial, records }
    }
}

fn unbase64(s: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    String::from_utf8(bytes).ok()
}

/// One `add` or `edit` item of `mass_edit_dns_zone`: a JSON string with `dname`, `ttl`,
/// `record_type`, `data` (and `line_index` for an edit). MX data is `[preference, exchange]`.
fn mass_edit_item(domain: &str, record: &DnsRecord, line: Option<usize>) -> Value {
    let dname = absolute_name(&record.name, domain) + ".";
    let data = match record.record_type {
        RecordType::Mx => json!([record.priority.unwrap_or(10).to_string(), record.value]),
        // A TXT character-string holds at most 255 bytes; longer values (DKIM keys) are split.
        RecordType::Txt => json!(txt_chunks(&record.value)),
        _ => json!([record.value]),
    };
    let mut item = json!({
        "dname": dname,
        "ttl": record.ttl,
        "record_type": record.record_type.as_str(),
        "data": data,
    });
    if let Some(line) = line {
        item["line_index"] = json!(line);
    }
    item
}

fn txt_chunks(value: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        if current.len() + c.len_utf8() > 255 {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    chunks.push(current);
    chunks
}

fn account_info(acct: &Value) -> AccountInfo {
    AccountInfo {
        username: text(acct, "user").unwrap_or_default(),
        domain: text(acct, "domain"),
        // listaccts names the contact email `email`; "*unknown*" means none was set.
        contact_email: text(acct, "email").filter(|e| e.contains('@')),
        package: text(acct, "plan"),
        suspended: acct.get("suspended").and_then(flag).unwrap_or(false),
        owner_marker: None,
        panel_id: None,
    }
}

/// WHM's booleans: `1`, `"1"`, `true` (and the zero forms). cpanelgo: "WHM randomly returns this
/// as a string".
fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim() {
            "1" | "true" => Some(true),
            "0" | "false" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A field as text, whether WHM sent it as a string or a number.
fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn value_of(amount: Amount) -> Option<u64> {
    match amount {
        Amount::Value(v) => Some(v),
        Amount::Unlimited => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_get_the_eight_character_prefix_once() {
        assert_eq!(CpanelDriver::prefixed("verylongname", "wp"), "verylong_wp");
        assert_eq!(CpanelDriver::prefixed("bob", "bob_wp"), "bob_wp");
    }

    #[test]
    fn result_flag_accepts_numbers_and_strings() {
        assert_eq!(flag(&json!(1)), Some(true));
        assert_eq!(flag(&json!("1")), Some(true));
        assert_eq!(flag(&json!("0")), Some(false));
        assert_eq!(flag(&json!(0)), Some(false));
    }
}
