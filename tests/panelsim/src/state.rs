//! The simulated server's state: accounts, sites, DNS zones, mail, databases, certificates and
//! web-root files, shared by all three panel front-ends.
//!
//! It knows nothing about HTTP or envelopes; panels translate to and from it. Cross-object
//! clean-up (terminating an account removes everything it owns) lives here so every panel
//! removes the same things. Real MariaDB objects are dropped by the caller, from the lists
//! `remove_*` return, after the lock is released.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::SimKind;
use crate::catalog::{HOSTNAME, NAMESERVERS, SERVER_IP};

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub username: String,
    pub password: String,
    pub email: String,
    pub owner: String,
    /// Set for cPanel/DirectAdmin; Plesk keeps the plan on the subscription (site).
    pub package: Option<String>,
    pub suspended: bool,
    pub suspend_reason: Option<String>,
    pub suspend_time: i64,
    pub created: i64,
    pub id: u64,
    pub guid: String,
    /// Plesk client fields.
    pub name: String,
    pub company: String,
    pub locale: String,
    pub external_id: String,
    pub description: String,
    pub client_type: String,
    /// The `ip` a DirectAdmin create named (an address, or `shared`/`server`/`assign`).
    pub ip: Option<String>,
    /// What the usage endpoints report (zero until seeded or set through `/__sim/usage`).
    pub usage: SimUsage,
}

/// An account's resource use, in bytes (inodes: a count). Each panel reports it in its own
/// unit: cPanel disk in whole MB, DirectAdmin disk and bandwidth in MB, Plesk in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SimUsage {
    #[serde(default)]
    pub disk_used_bytes: u64,
    #[serde(default)]
    pub bandwidth_used_bytes: u64,
    #[serde(default)]
    pub inodes_used: u64,
}

impl Account {
    pub(crate) fn new(id: u64, username: &str, password: &str, email: &str, owner: &str) -> Self {
        Account {
            username: username.to_owned(),
            password: password.to_owned(),
            email: email.to_owned(),
            owner: owner.to_owned(),
            package: None,
            suspended: false,
            suspend_reason: None,
            suspend_time: 0,
            created: clock::now_unix(),
            id,
            guid: uuid::Uuid::new_v4().to_string(),
            name: username.to_owned(),
            company: String::new(),
            locale: "en-US".to_owned(),
            external_id: String::new(),
            description: String::new(),
            client_type: "customer".to_owned(),
            ip: None,
            usage: SimUsage::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SiteStatus {
    Active,
    Suspended,
    Disabled,
}

impl SiteStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SiteStatus::Active => "active",
            SiteStatus::Suspended => "suspended",
            SiteStatus::Disabled => "disabled",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(SiteStatus::Active),
            "suspended" => Some(SiteStatus::Suspended),
            "disabled" => Some(SiteStatus::Disabled),
            _ => None,
        }
    }
}

/// A hosted domain (cPanel main domain, Plesk domain/subscription, DirectAdmin domain).
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub id: u64,
    pub name: String,
    /// Account username, or `admin` for a Plesk domain without a customer.
    pub owner: String,
    pub plan: Option<String>,
    pub status: SiteStatus,
    pub hosting_type: String,
    pub docroot: String,
    pub guid: String,
    pub created: i64,
    pub ftp_login: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub id: u64,
    /// Fully qualified, lower case, without the trailing dot.
    pub name: String,
    pub rtype: String,
    /// For MX the exchange host, for CNAME/NS the target (no trailing dot).
    pub value: String,
    pub ttl: u32,
    /// MX preference (and SRV priority).
    pub priority: Option<u16>,
}

#[derive(Debug, Clone)]
pub(crate) struct Zone {
    pub serial: u32,
    /// Without the SOA, which panels render from `serial`.
    pub records: Vec<Record>,
}

#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    pub address: String,
    pub owner: String,
    pub password: String,
    /// `None` = unlimited.
    pub quota_mb: Option<u64>,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Database {
    pub id: u64,
    pub name: String,
    pub owner: String,
    /// Plesk parent domain.
    pub site_id: Option<u64>,
    pub default_user_id: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct DbUser {
    pub id: u64,
    pub name: String,
    pub owner: String,
    pub password: String,
    /// Plesk: the one database this user was created for.
    pub database_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub user: String,
    pub database: String,
    pub privileges: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Certificate {
    pub domain: String,
    pub owner: String,
    /// How it got there: `installssl`, `uapi`, `xml-api`, `paste`, `letsencrypt`, `autossl`.
    pub source: String,
    pub name: String,
    pub cert_pem: String,
    pub has_key: bool,
    pub cabundle: Option<String>,
    pub installed: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct WebFile {
    pub owner: String,
    pub content: Vec<u8>,
}

/// What a removal took with it that also lives in MariaDB.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    pub databases: Vec<String>,
    pub users: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct World {
    pub accounts: BTreeMap<String, Account>,
    pub sites: BTreeMap<String, Site>,
    pub zones: BTreeMap<String, Zone>,
    pub mailboxes: BTreeMap<String, Mailbox>,
    pub databases: BTreeMap<String, Database>,
    pub db_users: BTreeMap<String, DbUser>,
    pub grants: Vec<Grant>,
    pub certificates: BTreeMap<String, Certificate>,
    /// Absolute path → file.
    pub files: BTreeMap<String, WebFile>,
    pub autossl_checks: Vec<String>,
    pub backups: Vec<crate::backups::Backup>,
    pub restores: Vec<crate::backups::Restore>,
    /// WHM pkgacct sessions: id → (account, the backup's start in Unix seconds).
    pub pkgacct_sessions: BTreeMap<String, (String, i64)>,
    /// cPanel's `~/.trash`: (owner, leaf, what was moved there).
    pub trash: Vec<(String, String, crate::backups::Backup)>,
    pub call_counts: BTreeMap<String, u64>,
    next_id: u64,
}

/// Where each panel keeps a site's documents.
pub(crate) fn docroot(kind: SimKind, owner: &str, domain: &str) -> String {
    match kind {
        SimKind::Cpanel => format!("/home/{owner}/public_html"),
        SimKind::Plesk => format!("/var/www/vhosts/{domain}/httpdocs"),
        SimKind::Directadmin => format!("/home/{owner}/domains/{domain}/public_html"),
    }
}

/// The account every simulator holds from the start: a real server is never empty, and a
/// driver that picks "the first account" or "the only zone" instead of looking its own up
/// gets caught by it. Its name shares no prefix with the names tests use.
pub const RESIDENT_USER: &str = "hostco";
pub const RESIDENT_DOMAIN: &str = "hostco-site.example";

impl World {
    /// A world holding only the resident account, its site and its default zone.
    pub(crate) fn with_resident(kind: SimKind) -> Self {
        let mut world = World::default();
        let resident = SeedRequest {
            accounts: vec![SeedAccount {
                username: RESIDENT_USER.to_owned(),
                domain: Some(RESIDENT_DOMAIN.to_owned()),
                package: Some(
                    match kind {
                        SimKind::Plesk => "Unlimited",
                        SimKind::Cpanel | SimKind::Directadmin => "default",
                    }
                    .to_owned(),
                ),
                suspended: false,
                owner: None,
                password: Some("Res1dent-pass".to_owned()),
                email: Some(format!("webmaster@{RESIDENT_DOMAIN}")),
                usage: None,
            }],
        };
        world
            .seed(kind, resident)
            .expect("an empty world takes the resident account");
        world
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn count_call(&mut self, endpoint: &str) {
        *self.call_counts.entry(endpoint.to_owned()).or_default() += 1;
    }

    /// The account's first site: its main domain.
    pub(crate) fn primary_site(&self, username: &str) -> Option<&Site> {
        self.sites
            .values()
            .filter(|s| s.owner == username)
            .min_by_key(|s| s.id)
    }

    pub(crate) fn account_by_id(&self, id: u64) -> Option<&Account> {
        self.accounts.values().find(|a| a.id == id)
    }

    pub(crate) fn site_by_id(&self, id: u64) -> Option<&Site> {
        self.sites.values().find(|s| s.id == id)
    }

    /// The site serving `host` (the bare domain or its `www.`).
    pub(crate) fn site_for_host(&self, host: &str) -> Option<&Site> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.sites.get(&host).or_else(|| {
            host.strip_prefix("www.")
                .and_then(|bare| self.sites.get(bare))
        })
    }

    /// The effective plan: the account's, else its main site's.
    pub(crate) fn package_of(&self, account: &Account) -> Option<String> {
        account.package.clone().or_else(|| {
            self.primary_site(&account.username)
                .and_then(|s| s.plan.clone())
        })
    }

    /// Suspended as a whole, or its main site is (Plesk suspends subscriptions separately).
    pub(crate) fn is_suspended(&self, account: &Account) -> bool {
        account.suspended
            || self
                .primary_site(&account.username)
                .is_some_and(|s| s.status != SiteStatus::Active)
    }

    /// Add a site and its default DNS zone (an existing orphan zone is replaced).
    pub(crate) fn add_site(
        &mut self,
        kind: SimKind,
        name: &str,
        owner: &str,
        plan: Option<String>,
    ) {
        let id = self.next_id();
        let site = Site {
            id,
            name: name.to_owned(),
            owner: owner.to_owned(),
            plan,
            status: SiteStatus::Active,
            hosting_type: "virtual".to_owned(),
            docroot: docroot(kind, owner, name),
            guid: uuid::Uuid::new_v4().to_string(),
            created: clock::now_unix(),
            ftp_login: None,
            description: String::new(),
        };
        self.sites.insert(name.to_owned(), site);
        let zone = self.default_zone(kind, name);
        self.zones.insert(name.to_owned(), zone);
    }

    /// The zone a panel writes for a new site, from its default zone template (README,
    /// "Default zones"): cPanel's `standard` template points `www`, `mail` and `ftp` at the
    /// apex with CNAMEs and sends mail to the apex (MX 0); Plesk's server-wide DNS template
    /// makes `www` and `ftp` CNAMEs of the domain and `mail`/`webmail` A records with MX 10
    /// `mail`; DirectAdmin's `named.db` template gives `www`, `ftp`, `mail`, `pop` and `smtp`
    /// A records with MX 10 `mail`. All three add the server's nameservers and an SPF record.
    fn default_zone(&mut self, kind: SimKind, domain: &str) -> Zone {
        let apex = domain;
        let at = |label: &str| format!("{label}.{domain}");
        let ip = SERVER_IP;
        let mut rows: Vec<(String, &str, String, Option<u16>)> = vec![
            (apex.to_owned(), "NS", NAMESERVERS[0].to_owned(), None),
            (apex.to_owned(), "NS", NAMESERVERS[1].to_owned(), None),
            (apex.to_owned(), "A", ip.to_owned(), None),
        ];
        match kind {
            SimKind::Cpanel => rows.extend([
                (at("localhost"), "A", "127.0.0.1".to_owned(), None),
                (apex.to_owned(), "MX", apex.to_owned(), Some(0)),
                (at("mail"), "CNAME", apex.to_owned(), None),
                (at("www"), "CNAME", apex.to_owned(), None),
                (at("ftp"), "CNAME", apex.to_owned(), None),
                (at("webmail"), "A", ip.to_owned(), None),
                (at("cpanel"), "A", ip.to_owned(), None),
                (
                    apex.to_owned(),
                    "TXT",
                    "v=spf1 +a +mx ~all".to_owned(),
                    None,
                ),
            ]),
            SimKind::Plesk => rows.extend([
                (at("www"), "CNAME", apex.to_owned(), None),
                (at("ftp"), "CNAME", apex.to_owned(), None),
                (at("mail"), "A", ip.to_owned(), None),
                (at("webmail"), "A", ip.to_owned(), None),
                (at("ipv4"), "A", ip.to_owned(), None),
                (apex.to_owned(), "MX", at("mail"), Some(10)),
                (
                    apex.to_owned(),
                    "TXT",
                    format!("v=spf1 +a +mx +a:{HOSTNAME} -all"),
                    None,
                ),
                (at("_dmarc"), "TXT", "v=DMARC1; p=none".to_owned(), None),
            ]),
            SimKind::Directadmin => rows.extend([
                (at("ftp"), "A", ip.to_owned(), None),
                (at("localhost"), "A", "127.0.0.1".to_owned(), None),
                (at("mail"), "A", ip.to_owned(), None),
                (at("pop"), "A", ip.to_owned(), None),
                (at("smtp"), "A", ip.to_owned(), None),
                (at("www"), "A", ip.to_owned(), None),
                (apex.to_owned(), "MX", at("mail"), Some(10)),
                (
                    apex.to_owned(),
                    "TXT",
                    format!("v=spf1 a mx ip4:{ip} ~all"),
                    None,
                ),
            ]),
        }
        let records = rows
            .into_iter()
            .map(|(name, rtype, value, priority)| Record {
                id: self.next_id(),
                name,
                rtype: rtype.to_owned(),
                value,
                ttl: 14400,
                priority,
            })
            .collect();
        Zone {
            serial: clock::initial_serial(),
            records,
        }
    }

    /// Remove a site with its zone, mailboxes, databases, certificate and files.
    pub(crate) fn remove_site(&mut self, name: &str, keep_dns: bool) -> Dropped {
        let mut dropped = Dropped::default();
        let Some(site) = self.sites.remove(name) else {
            return dropped;
        };
        if !keep_dns {
            self.zones.remove(name);
        }
        let suffix = format!("@{name}");
        self.mailboxes
            .retain(|address, _| !address.ends_with(&suffix));
        self.certificates.remove(name);
        let prefix = format!("{}/", site.docroot);
        self.files.retain(|path, _| !path.starts_with(&prefix));
        let doomed: Vec<String> = self
            .databases
            .values()
            .filter(|db| db.site_id == Some(site.id))
            .map(|db| db.name.clone())
            .collect();
        for database in doomed {
            self.drop_database_record(&database, &mut dropped);
        }
        dropped
    }

    fn drop_database_record(&mut self, database: &str, dropped: &mut Dropped) {
        let Some(db) = self.databases.remove(database) else {
            return;
        };
        self.grants.retain(|g| g.database != database);
        // Plesk users belong to one database and go with it.
        let users: Vec<String> = self
            .db_users
            .values()
            .filter(|u| u.database_id == Some(db.id))
            .map(|u| u.name.clone())
            .collect();
        for user in users {
            self.db_users.remove(&user);
            self.grants.retain(|g| g.user != user);
            dropped.users.push(user);
        }
        dropped.databases.push(db.name);
    }

    pub(crate) fn remove_database(&mut self, database: &str) -> Dropped {
        let mut dropped = Dropped::default();
        self.drop_database_record(database, &mut dropped);
        dropped
    }

    pub(crate) fn remove_db_user(&mut self, user: &str) -> Dropped {
        let mut dropped = Dropped::default();
        if self.db_users.remove(user).is_some() {
            self.grants.retain(|g| g.user != user);
            dropped.users.push(user.to_owned());
        }
        dropped
    }

    /// Terminate an account: everything it owns goes too.
    pub(crate) fn remove_account(&mut self, username: &str, keep_dns: bool) -> Option<Dropped> {
        self.accounts.remove(username)?;
        // Archives in the account's home go with it; the server's backup storage keeps its own.
        self.backups
            .retain(|b| !(b.owner == username && b.storage == crate::backups::Storage::Home));
        let mut dropped = Dropped::default();
        let sites: Vec<String> = self
            .sites
            .values()
            .filter(|s| s.owner == username)
            .map(|s| s.name.clone())
            .collect();
        for site in sites {
            let more = self.remove_site(&site, keep_dns);
            dropped.databases.extend(more.databases);
            dropped.users.extend(more.users);
        }
        let databases: Vec<String> = self
            .databases
            .values()
            .filter(|d| d.owner == username)
            .map(|d| d.name.clone())
            .collect();
        for database in databases {
            self.drop_database_record(&database, &mut dropped);
        }
        let users: Vec<String> = self
            .db_users
            .values()
            .filter(|u| u.owner == username)
            .map(|u| u.name.clone())
            .collect();
        for user in users {
            dropped.users.extend(self.remove_db_user(&user).users);
        }
        self.mailboxes.retain(|_, m| m.owner != username);
        self.certificates.retain(|_, c| c.owner != username);
        self.files.retain(|_, f| f.owner != username);
        Some(dropped)
    }

    /// `add` a grant, replacing an existing one for the same pair.
    pub(crate) fn set_grant(&mut self, user: &str, database: &str, privileges: &str) {
        self.grants
            .retain(|g| !(g.user == user && g.database == database));
        self.grants.push(Grant {
            user: user.to_owned(),
            database: database.to_owned(),
            privileges: privileges.to_owned(),
        });
    }

    /// Insert accounts directly (drift tests' orphans): account, site and zone.
    pub(crate) fn seed(&mut self, kind: SimKind, seed: SeedRequest) -> Result<usize, String> {
        for account in &seed.accounts {
            if account.username.trim().is_empty() {
                return Err("accounts[].username: must not be empty".to_owned());
            }
            if self.accounts.contains_key(&account.username) {
                return Err(format!("account '{}' already exists", account.username));
            }
            if let Some(domain) = &account.domain
                && self.sites.contains_key(&domain.to_ascii_lowercase())
            {
                return Err(format!("domain '{domain}' already exists"));
            }
        }
        let count = seed.accounts.len();
        for seeded in seed.accounts {
            let id = self.next_id();
            let email = seeded
                .email
                .clone()
                .unwrap_or_else(|| match &seeded.domain {
                    Some(d) => format!("{}@{d}", seeded.username),
                    None => String::new(),
                });
            let mut account = Account::new(
                id,
                &seeded.username,
                seeded.password.as_deref().unwrap_or("seeded-password"),
                &email,
                seeded.owner.as_deref().unwrap_or(match kind {
                    SimKind::Cpanel => "root",
                    SimKind::Plesk | SimKind::Directadmin => "admin",
                }),
            );
            account.suspended = seeded.suspended;
            account.usage = seeded.usage.unwrap_or_default();
            if seeded.suspended {
                account.suspend_reason = Some("seeded".to_owned());
                account.suspend_time = clock::now_unix();
            }
            if kind != SimKind::Plesk {
                account.package = seeded.package.clone();
            }
            let username = account.username.clone();
            self.accounts.insert(username.clone(), account);
            if let Some(domain) = seeded.domain {
                let plan = if kind == SimKind::Plesk {
                    seeded.package
                } else {
                    None
                };
                self.add_site(kind, &domain.to_ascii_lowercase(), &username, plan);
            }
        }
        Ok(count)
    }

    /// Applies `POST /__sim/usage` bodies, all or nothing: an unknown username changes nobody.
    pub(crate) fn set_usage(&mut self, updates: Vec<SetUsage>) -> Result<usize, String> {
        if let Some(unknown) = updates
            .iter()
            .find(|u| !self.accounts.contains_key(&u.username))
        {
            return Err(format!("account '{}' does not exist", unknown.username));
        }
        let count = updates.len();
        for update in updates {
            if let Some(account) = self.accounts.get_mut(&update.username) {
                let usage = &mut account.usage;
                usage.disk_used_bytes = update.disk_used_bytes.unwrap_or(usage.disk_used_bytes);
                usage.bandwidth_used_bytes = update
                    .bandwidth_used_bytes
                    .unwrap_or(usage.bandwidth_used_bytes);
                usage.inodes_used = update.inodes_used.unwrap_or(usage.inodes_used);
            }
        }
        Ok(count)
    }

    /// The `/__sim/state` document.
    pub(crate) fn to_json(&self, kind: SimKind) -> Value {
        let accounts: Vec<Value> = self
            .accounts
            .values()
            .map(|a| {
                json!({
                    "username": a.username,
                    "id": a.id,
                    "domain": self.primary_site(&a.username).map(|s| s.name.clone()),
                    "owner": a.owner,
                    "package": self.package_of(a),
                    "suspended": self.is_suspended(a),
                    "suspendReason": a.suspend_reason,
                    "email": a.email,
                    "password": a.password,
                    "created": a.created,
                    "ip": a.ip,
                    "usage": {
                        "diskUsedBytes": a.usage.disk_used_bytes,
                        "bandwidthUsedBytes": a.usage.bandwidth_used_bytes,
                        "inodesUsed": a.usage.inodes_used,
                    },
                })
            })
            .collect();
        let sites: Vec<Value> = self
            .sites
            .values()
            .map(|s| {
                json!({
                    "name": s.name, "id": s.id, "owner": s.owner, "plan": s.plan,
                    "status": s.status.as_str(), "docroot": s.docroot,
                    "hostingType": s.hosting_type, "ftpLogin": s.ftp_login,
                })
            })
            .collect();
        let zones: Vec<Value> = self
            .zones
            .iter()
            .map(|(domain, zone)| {
                let records: Vec<Value> = zone
                    .records
                    .iter()
                    .map(|r| {
                        json!({"id": r.id, "name": r.name, "type": r.rtype, "value": r.value,
                               "ttl": r.ttl, "priority": r.priority})
                    })
                    .collect();
                json!({"domain": domain, "serial": zone.serial, "records": records})
            })
            .collect();
        let mailboxes: Vec<Value> = self
            .mailboxes
            .values()
            .map(|m| {
                json!({"address": m.address, "owner": m.owner, "quotaMb": m.quota_mb,
                       "password": m.password, "created": m.created})
            })
            .collect();
        let databases: Vec<Value> = self
            .databases
            .values()
            .map(|d| json!({"name": d.name, "owner": d.owner, "id": d.id}))
            .collect();
        let db_users: Vec<Value> = self
            .db_users
            .values()
            .map(|u| json!({"name": u.name, "owner": u.owner, "password": u.password, "id": u.id}))
            .collect();
        let grants: Vec<Value> = self
            .grants
            .iter()
            .map(|g| json!({"user": g.user, "database": g.database, "privileges": g.privileges}))
            .collect();
        let certificates: Vec<Value> = self
            .certificates
            .values()
            .map(|c| {
                json!({"domain": c.domain, "owner": c.owner, "source": c.source, "name": c.name,
                       "hasKey": c.has_key, "hasCabundle": c.cabundle.is_some(),
                       "cert": c.cert_pem, "installed": c.installed})
            })
            .collect();
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|(path, f)| {
                let site = self
                    .sites
                    .values()
                    .find(|s| path.starts_with(&format!("{}/", s.docroot)));
                json!({
                    "path": path,
                    "owner": f.owner,
                    "domain": site.map(|s| s.name.clone()),
                    "urlPath": site.map(|s| path[s.docroot.len()..].to_owned()),
                    "content": String::from_utf8_lossy(&f.content),
                })
            })
            .collect();
        let backups: Vec<Value> = self
            .backups
            .iter()
            .map(|b| {
                json!({"owner": b.owner, "name": b.name, "sizeBytes": b.size_bytes,
                "created": b.created, "ready": b.ready(),
                "storage": match b.storage {
                    crate::backups::Storage::Home => "home",
                    crate::backups::Storage::Server => "server",
                }})
            })
            .collect();
        let restores: Vec<Value> = self
            .restores
            .iter()
            .map(|r| {
                json!({"id": r.id, "owner": r.owner, "archive": r.archive, "started": r.started,
                       "state": match &r.outcome {
                           None => "running",
                           Some(Ok(())) => "completed",
                           Some(Err(_)) => "failed",
                       },
                       "error": r.outcome.as_ref().and_then(|o| o.as_ref().err())})
            })
            .collect();
        json!({
            "kind": kind.as_str(),
            "backups": backups,
            "restores": restores,
            "accounts": accounts,
            "domains": sites,
            "zones": zones,
            "mailboxes": mailboxes,
            "databases": databases,
            "dbUsers": db_users,
            "grants": grants,
            "certificates": certificates,
            "webRootFiles": files,
            "autosslChecks": self.autossl_checks,
            "callCounts": self.call_counts,
        })
    }
}

/// Body of `POST /__sim/seed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedRequest {
    #[serde(default)]
    pub accounts: Vec<SeedAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedAccount {
    pub username: String,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// `{"diskUsedBytes","bandwidthUsedBytes","inodesUsed"}`, each optional.
    #[serde(default)]
    pub usage: Option<SimUsage>,
}

/// Body of `POST /__sim/usage`: sets the usage one account reports; fields left out keep
/// their value.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SetUsage {
    pub username: String,
    #[serde(default)]
    pub disk_used_bytes: Option<u64>,
    #[serde(default)]
    pub bandwidth_used_bytes: Option<u64>,
    #[serde(default)]
    pub inodes_used: Option<u64>,
}

/// Wall-clock helpers; the only place that reads the time.
pub(crate) mod clock {
    use time::OffsetDateTime;
    use time::macros::format_description;

    pub(crate) fn now_unix() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// `YYYYMMDD01`: the first SOA serial of the day.
    pub(crate) fn initial_serial() -> u32 {
        let today = OffsetDateTime::now_utc();
        let ymd = today.year() as u32 * 10_000
            + u32::from(u8::from(today.month())) * 100
            + u32::from(today.day());
        ymd * 100 + 1
    }

    /// `2016-11-13` (Plesk `created`).
    pub(crate) fn date(unix: i64) -> String {
        at(unix)
            .format(format_description!("[year]-[month]-[day]"))
            .unwrap_or_default()
    }

    /// `08 Jun 19 17:05` (WHM listaccts `startdate`: two-digit year first).
    pub(crate) fn whm_startdate(unix: i64) -> String {
        at(unix)
            .format(format_description!(
                "[year repr:last_two] [month repr:short] [day] [hour]:[minute]"
            ))
            .unwrap_or_default()
    }

    /// `Tue Nov 25 07:43:00 2026` (DirectAdmin `date_created`, ctime style).
    pub(crate) fn ctime(unix: i64) -> String {
        at(unix)
            .format(format_description!(
                "[weekday repr:short] [month repr:short] [day] [hour]:[minute]:[second] [year]"
            ))
            .unwrap_or_default()
    }

    /// `12.01.2026_05-00-00` (cPanel `backup-MM.DD.YYYY_HH-mm-ss_user.tar.gz`).
    pub(crate) fn cpanel_backup_stamp(unix: i64) -> String {
        at(unix)
            .format(format_description!(
                "[month].[day].[year]_[hour]-[minute]-[second]"
            ))
            .unwrap_or_default()
    }

    /// `20260323154328` (the time part of WHM's pkgacct session ids).
    pub(crate) fn compact_stamp(unix: i64) -> String {
        at(unix)
            .format(format_description!(
                "[year][month][day][hour][minute][second]"
            ))
            .unwrap_or_default()
    }

    /// `Dec-1-2026` (DirectAdmin user backups, `backup-Dec-1-2026-1.tar.gz`).
    pub(crate) fn directadmin_backup_stamp(unix: i64) -> String {
        at(unix)
            .format(format_description!(
                "[month repr:short]-[day padding:none]-[year]"
            ))
            .unwrap_or_default()
    }

    /// `2512010500` (Plesk local backups, `backup_2512010500.tar`: YYMMDDhhmm).
    pub(crate) fn plesk_backup_stamp(unix: i64) -> String {
        at(unix)
            .format(format_description!(
                "[year repr:last_two][month][day][hour][minute]"
            ))
            .unwrap_or_default()
    }

    pub(crate) fn month_year() -> (u8, i32) {
        let now = OffsetDateTime::now_utc();
        (u8::from(now.month()), now.year())
    }
}
