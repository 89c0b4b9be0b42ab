//! WHM account lifecycle, packages and bandwidth (reference §1.3, §1.8).

use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use super::{whm_fail, whm_ok};
use crate::SimKind;
use crate::catalog::{self, NAMESERVERS, Plan, SERVER_IP, limit_str};
use crate::dns::valid_domain;
use crate::reply::Reply;
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Account, World, clock};

/// §1.8 examples plus common system accounts.
const RESERVED: [&str; 32] = [
    "root",
    "abuse",
    "adm",
    "admin",
    "apache",
    "bin",
    "daemon",
    "ftp",
    "mail",
    "mysql",
    "named",
    "nobody",
    "postmaster",
    "info",
    "marketing",
    "sales",
    "support",
    "news",
    "usenet",
    "cpanel",
    "whm",
    "webmaster",
    "hostmaster",
    "operator",
    "shutdown",
    "halt",
    "sync",
    "games",
    "dovecot",
    "exim",
    "nginx",
    "postgres",
];

const DOES_NOT_EXIST: &str = "Account does not exist";

/// §1.8 username rules. The reason texts are UNCONFIRMED.
pub(super) fn validate_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("No user name supplied: “username” is a required argument.".to_owned());
    }
    if username.len() > 16 {
        return Err(format!(
            "The username “{username}” is too long: usernames may not exceed 16 characters."
        ));
    }
    if !username
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "The username “{username}” is invalid: only lowercase letters (a-z) and digits (0-9) are allowed."
        ));
    }
    if username.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "The username “{username}” is invalid: it may not start with a digit."
        ));
    }
    if username.starts_with("test") {
        return Err(format!(
            "The username “{username}” is invalid: it may not start with “test”."
        ));
    }
    if username.ends_with("assword") {
        return Err(format!(
            "The username “{username}” is invalid: it may not end with “assword”."
        ));
    }
    if RESERVED.contains(&username) {
        return Err(format!("The username “{username}” is reserved."));
    }
    Ok(())
}

/// §1.8: the first 8 characters must be unique (MySQL prefix). Text UNCONFIRMED.
fn prefix_conflict(world: &World, username: &str) -> Option<String> {
    let prefix: String = username.chars().take(8).collect();
    world
        .accounts
        .keys()
        .find(|other| other.chars().take(8).collect::<String>() == prefix)
        .map(|other| {
            format!(
                "The first 8 characters of the username “{username}” (“{prefix}”) are already used by the account “{other}”; they must be unique for database prefixes."
            )
        })
}

fn generated_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}

/// `createacct` (§1.3). Not idempotent: a second call fails (§4.1).
pub(super) fn createacct(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "createacct";
    // §1.3: "converted to lowercase".
    let username = req.arg("username").unwrap_or("").to_ascii_lowercase();
    if let Err(reason) = validate_username(&username) {
        return whm_fail(sim, CMD, reason, None);
    }
    let password = match (req.param("password"), req.param("pass")) {
        (Some(_), Some(_)) => {
            return whm_fail(
                sim,
                CMD,
                "You may not specify both “password” and “pass”.",
                None,
            );
        }
        (Some(p), None) | (None, Some(p)) if !p.is_empty() => p.to_owned(),
        _ => generated_password(),
    };
    // §1.3: without a domain cPanel makes a temporary one.
    let domain = req.arg("domain").map_or_else(
        || format!("{username}.temp.{}", catalog::HOSTNAME),
        str::to_ascii_lowercase,
    );
    if !valid_domain(&domain) {
        return whm_fail(
            sim,
            CMD,
            format!("“{domain}” is not a valid domain name."),
            None,
        );
    }
    let plan_name = req.arg("plan").unwrap_or("default");

    let mut world = sim.world();
    if world.accounts.contains_key(&username) {
        // §1.3 duplicate text (boxbilling#19).
        return whm_fail(
            sim,
            CMD,
            "Sorry, a group for that username already exists.",
            None,
        );
    }
    if let Some(reason) = prefix_conflict(&world, &username) {
        return whm_fail(sim, CMD, reason, None);
    }
    // §1.3: a domain owned by another account, or an existing zone (unless forcedns=1).
    let owned = world.sites.contains_key(&domain);
    if owned || (world.zones.contains_key(&domain) && !req.flag("forcedns")) {
        return whm_fail(
            sim,
            CMD,
            format!(
                "Sorry, a DNS entry for {domain} already exists, please delete it first (from all servers in the dns cluster)"
            ),
            None,
        );
    }
    let Some(plan) = catalog::plan(SimKind::Cpanel, plan_name) else {
        // Text UNCONFIRMED.
        return whm_fail(
            sim,
            CMD,
            format!("Sorry, the package “{plan_name}” does not exist."),
            None,
        );
    };

    let id = world.next_id();
    let mut account = Account::new(
        id,
        &username,
        &password,
        req.arg("contactemail").unwrap_or(""),
        req.arg("owner").unwrap_or("root"),
    );
    account.package = Some(plan.name.to_owned());
    world.accounts.insert(username.clone(), account);
    world.add_site(SimKind::Cpanel, &domain, &username, None);
    drop(world);

    tracing::info!(username, domain, plan = plan.name, "cpanel account created");
    let data = json!({
        "ip": SERVER_IP,
        "nameserver": NAMESERVERS[0], "nameserver2": NAMESERVERS[1],
        "nameserver3": null, "nameserver4": null,
        "nameservera": null, "nameservera2": null, "nameservera3": null, "nameservera4": null,
        "nameserverentry": null, "nameserverentry2": null,
        "nameserverentry3": null, "nameserverentry4": null,
        "package": plan.name,
    });
    let raw = format!(
        "Checking input data...Validating Username......Done\nValidating Domain......Done\n\
         Creating account {username} for {domain}...\nwwwacct creation finished\n\
         Account Creation Complete!!!...Account Creation Ok...Done\n"
    );
    whm_ok(sim, CMD, "Account Creation Ok", Some(data), Some(raw))
}

/// One `listaccts`/`accountsummary` element (§1.3 sample): sizes and limits are strings.
fn acct_json(world: &World, account: &Account) -> Value {
    let plan_name = world
        .package_of(account)
        .unwrap_or_else(|| "default".to_owned());
    let plan = catalog::plan(SimKind::Cpanel, &plan_name).copied();
    let limit = |pick: fn(&Plan) -> Option<u64>| limit_str(plan.as_ref().and_then(pick));
    let disk_limit = match plan.and_then(|p| p.quota_mb) {
        Some(mb) => format!("{mb}M"),
        None => "unlimited".to_owned(),
    };
    let site = world.primary_site(&account.username);
    json!({
        "user": account.username,
        "domain": site.map(|s| s.name.clone()).unwrap_or_default(),
        "email": account.email,
        "plan": plan_name,
        "owner": account.owner,
        "ip": SERVER_IP,
        "ipv6": [],
        "suspended": u8::from(account.suspended),
        "suspendreason": account.suspend_reason.clone().unwrap_or_else(|| "not suspended".to_owned()),
        "suspendtime": account.suspend_time,
        "is_locked": 0,
        // Whole MB, as the §1.3 sample ("10M").
        "diskused": format!("{}M", account.usage.disk_used_bytes / (1024 * 1024)),
        "disklimit": disk_limit,
        "inodesused": account.usage.inodes_used,
        "inodeslimit": "unlimited",
        "startdate": clock::whm_startdate(account.created),
        "unix_startdate": account.created,
        "partition": "home",
        "shell": "/usr/local/cpanel/bin/noshell",
        "theme": "jupiter",
        "maxpop": limit(|p| p.max_pop),
        "maxsql": limit(|p| p.max_sql),
        "maxftp": limit(|p| p.max_ftp),
        "maxsub": limit(|p| p.max_sub),
        "maxparked": limit(|p| p.max_park),
        "maxaddons": limit(|p| p.max_addon),
        "maxlst": "unlimited",
        "max_email_per_hour": limit(|p| p.max_email_per_hour),
        "backup": 0,
        "legacy_backup": 0,
        "temporary": 0,
        "mailbox_format": "maildir",
        "outgoing_mail_hold": 0,
        "uid": 1000 + account.id,
    })
}

/// `accountsummary?user=U` (or `domain=D`): `data.acct[]` with one element.
pub(super) fn accountsummary(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "accountsummary";
    let world = sim.world();
    let account = match (req.arg("user"), req.arg("domain")) {
        (Some(user), _) => world.accounts.get(user),
        (None, Some(domain)) => world
            .sites
            .get(&domain.to_ascii_lowercase())
            .and_then(|s| world.accounts.get(&s.owner)),
        (None, None) => None,
    };
    match account {
        Some(account) => {
            let data = json!({ "acct": [acct_json(&world, account)] });
            drop(world);
            whm_ok(sim, CMD, "OK", Some(data), None)
        }
        None => {
            drop(world);
            whm_fail(sim, CMD, DOES_NOT_EXIST, None)
        }
    }
}

/// The value `searchtype` compares. Without a searchtype, user and domain both count.
fn search_fields(world: &World, account: &Account, searchtype: Option<&str>) -> Vec<String> {
    let domain = world
        .primary_site(&account.username)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    match searchtype {
        Some("domain") => vec![domain],
        Some("owner") => vec![account.owner.clone()],
        Some("user") => vec![account.username.clone()],
        Some("ip") => vec![SERVER_IP.to_owned()],
        Some("package") => vec![world.package_of(account).unwrap_or_default()],
        _ => vec![account.username.clone(), domain],
    }
}

/// `search` is PCRE in cPanel. The simulator supports literals with optional `^`/`$` anchors
/// (regex mode) and `searchmethod=exact`.
fn matches(value: &str, search: &str, exact: bool) -> bool {
    if exact {
        return value == search;
    }
    let (anchored_start, rest) = match search.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, search),
    };
    let (anchored_end, literal) = match rest.strip_suffix('$') {
        Some(literal) => (true, literal),
        None => (false, rest),
    };
    let literal = literal.replace("\\.", ".");
    match (anchored_start, anchored_end) {
        (true, true) => value == literal,
        (true, false) => value.starts_with(&literal),
        (false, true) => value.ends_with(&literal),
        (false, false) => value.contains(&literal),
    }
}

fn selected<'w>(world: &'w World, req: &ApiRequest) -> Vec<&'w Account> {
    let search = req.param("search").filter(|s| !s.is_empty());
    let exact = req.param("searchmethod") == Some("exact");
    world
        .accounts
        .values()
        .filter(|account| {
            search.is_none_or(|search| {
                search_fields(world, account, req.arg("searchtype"))
                    .iter()
                    .any(|field| matches(field, search, exact))
            })
        })
        .collect()
}

/// `listaccts` (§1.3): `data.acct[]`, optional `search`/`searchtype`/`searchmethod`/`want`.
pub(super) fn listaccts(sim: &Sim, req: &ApiRequest) -> Reply {
    // §1.3 enumerates both: `searchtype` `domain|owner|user|ip|package`, `searchmethod`
    // `exact|regex`. Another value would search something else than the caller meant, so it
    // is refused (text UNCONFIRMED) instead of silently matching on user and domain.
    if let Some(kind) = req.arg("searchtype")
        && !matches!(kind, "domain" | "owner" | "user" | "ip" | "package")
    {
        return whm_fail(
            sim,
            "listaccts",
            format!("Invalid “searchtype” value: “{kind}”."),
            None,
        );
    }
    if let Some(method) = req.arg("searchmethod")
        && !matches!(method, "exact" | "regex")
    {
        return whm_fail(
            sim,
            "listaccts",
            format!("Invalid “searchmethod” value: “{method}”."),
            None,
        );
    }
    let want: Option<Vec<&str>> = req
        .arg("want")
        .map(|w| w.split(',').map(str::trim).collect());
    let world = sim.world();
    let accounts: Vec<Value> = selected(&world, req)
        .into_iter()
        .map(|account| {
            let mut acct = acct_json(&world, account);
            if let (Some(want), Some(object)) = (&want, acct.as_object_mut()) {
                object.retain(|key, _| want.contains(&key.as_str()));
            }
            acct
        })
        .collect();
    drop(world);
    whm_ok(
        sim,
        "listaccts",
        "OK",
        Some(json!({ "acct": accounts })),
        None,
    )
}

/// `listsuspended` (§1.3): `data.account[]`.
pub(super) fn listsuspended(sim: &Sim) -> Reply {
    let world = sim.world();
    let accounts: Vec<Value> = world
        .accounts
        .values()
        .filter(|a| a.suspended)
        .map(|a| {
            json!({"user": a.username, "owner": a.owner,
                   "reason": a.suspend_reason.clone().unwrap_or_default(),
                   "time": clock::whm_startdate(a.suspend_time), "unixtime": a.suspend_time,
                   "is_locked": 0})
        })
        .collect();
    drop(world);
    whm_ok(
        sim,
        "listsuspended",
        "OK",
        Some(json!({ "account": accounts })),
        None,
    )
}

/// `suspendacct?user=U&reason=R` (§1.3). Suspending a suspended account succeeds again.
pub(super) fn suspendacct(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "suspendacct";
    let user = req.arg("user").unwrap_or("").to_owned();
    let mut world = sim.world();
    let Some(account) = world.accounts.get_mut(&user) else {
        drop(world);
        return whm_fail(sim, CMD, DOES_NOT_EXIST, None);
    };
    account.suspended = true;
    account.suspend_reason = Some(req.arg("reason").unwrap_or("Unknown").to_owned());
    account.suspend_time = clock::now_unix();
    drop(world);
    let raw = format!(
        "Changing Shell to /bin/false...Done\nLocking Password...Done\nSuspending mysql users\n\
         Suspending websites...Done\n{user}'s account has been suspended\n"
    );
    whm_ok(
        sim,
        CMD,
        &format!("{user}'s account has been suspended"),
        None,
        Some(raw),
    )
}

/// `unsuspendacct?user=U`. Response body UNCONFIRMED (§1.3); mirrors suspendacct.
pub(super) fn unsuspendacct(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "unsuspendacct";
    let user = req.arg("user").unwrap_or("").to_owned();
    let mut world = sim.world();
    let Some(account) = world.accounts.get_mut(&user) else {
        drop(world);
        return whm_fail(sim, CMD, DOES_NOT_EXIST, None);
    };
    account.suspended = false;
    account.suspend_reason = None;
    account.suspend_time = 0;
    drop(world);
    let raw = format!(
        "Changing shell for {user}...Done\nUnlocking password for {user}...Done\n\
         Unsuspending mysql users\n{user}'s account is now active\n"
    );
    whm_ok(
        sim,
        CMD,
        &format!("{user}'s account is now active"),
        None,
        Some(raw),
    )
}

/// `removeacct?username=U` (`user` accepted too, §1.3). Drops its MariaDB objects.
pub(super) async fn removeacct(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "removeacct";
    let user = req
        .arg("username")
        .or_else(|| req.arg("user"))
        .unwrap_or("")
        .to_owned();
    let _db = sim.db_ops.lock().await;
    let dropped = sim.world().remove_account(&user, req.flag("keepdns"));
    let Some(dropped) = dropped else {
        return whm_fail(sim, CMD, DOES_NOT_EXIST, None);
    };
    sim.db_drop(&dropped).await;
    tracing::info!(user, "cpanel account removed");
    let raw = format!(
        "Running pre removal script (/usr/local/cpanel/scripts/prekillacct)......Done\n\
         Collecting Domain Name and IP...Done\nRemoving MySQL databases and users...Done\n\
         Removing User & Group...Done\n{user} account removed\n"
    );
    whm_ok(
        sim,
        CMD,
        &format!("{user} account removed"),
        None,
        Some(raw),
    )
}

/// `changepackage?user=U&pkg=P` (§1.3). Texts UNCONFIRMED.
pub(super) fn changepackage(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "changepackage";
    let user = req.arg("user").unwrap_or("").to_owned();
    let pkg = req.arg("pkg").unwrap_or("").to_owned();
    let Some(plan) = catalog::plan(SimKind::Cpanel, &pkg) else {
        return whm_fail(
            sim,
            CMD,
            format!("Specified package “{pkg}” does not exist."),
            None,
        );
    };
    let mut world = sim.world();
    let Some(account) = world.accounts.get_mut(&user) else {
        drop(world);
        return whm_fail(sim, CMD, DOES_NOT_EXIST, None);
    };
    account.package = Some(plan.name.to_owned());
    drop(world);
    let raw = format!(
        "<pre>\nChanging the account bandwidth limit to {}\nChanging the disk quota to {}\n\
         Changing max pop accounts to {}\nChanging max sql databases to {}\n</pre>\n",
        limit_str(plan.bandwidth_mb),
        limit_str(plan.quota_mb),
        limit_str(plan.max_pop),
        limit_str(plan.max_sql),
    );
    whm_ok(
        sim,
        CMD,
        &format!("Account Upgrade/Downgrade Complete for {user}"),
        None,
        Some(raw),
    )
}

/// `passwd?user=U&password=P` (§1.3 sample).
pub(super) fn passwd(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "passwd";
    let user = req.arg("user").unwrap_or("").to_owned();
    let Some(password) = req.param("password").filter(|p| !p.is_empty()) else {
        return whm_fail(sim, CMD, "“password” is a required argument.", None);
    };
    let mut world = sim.world();
    let Some(account) = world.accounts.get_mut(&user) else {
        drop(world);
        return whm_fail(sim, CMD, DOES_NOT_EXIST, None);
    };
    account.password = password.to_owned();
    drop(world);
    let reason = format!("Password changed for user “{user}”.");
    whm_ok(sim, CMD, &reason, Some(json!({ "app": ["ftp"] })), None)
}

/// getpkginfo's upper-case keys (§1.3 sample: numbers, or `"unlimited"`).
fn pkg_json(plan: &Plan) -> Value {
    let value = |limit: Option<u64>| limit.map_or_else(|| json!("unlimited"), |n| json!(n));
    json!({
        "QUOTA": value(plan.quota_mb),
        "BWLIMIT": value(plan.bandwidth_mb),
        "MAXPOP": value(plan.max_pop),
        "MAXSQL": value(plan.max_sql),
        "MAXFTP": value(plan.max_ftp),
        "MAXSUB": value(plan.max_sub),
        "MAXPARK": value(plan.max_park),
        "MAXADDON": value(plan.max_addon),
        "MAXLST": "unlimited",
        "MAX_EMAIL_PER_HOUR": value(plan.max_email_per_hour),
        "MAX_EMAILACCT_QUOTA": "unlimited",
        "CGI": 1,
        "HASSHELL": 0,
        "IP": 0,
        "LANG": "en",
        "CPMOD": "jupiter",
        "FEATURELIST": "default",
    })
}

/// `listpkgs`: `data.pkg[]` of `name` + getpkginfo's keys (shape UNCONFIRMED, §1.3).
pub(super) fn listpkgs(sim: &Sim) -> Reply {
    let packages: Vec<Value> = catalog::plans(SimKind::Cpanel)
        .iter()
        .map(|plan| {
            let mut pkg = pkg_json(plan);
            pkg["name"] = json!(plan.name);
            pkg
        })
        .collect();
    whm_ok(
        sim,
        "listpkgs",
        "OK",
        Some(json!({ "pkg": packages })),
        None,
    )
}

/// `getpkginfo?pkg=NAME` (§1.3).
pub(super) fn getpkginfo(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "getpkginfo";
    let name = req.arg("pkg").unwrap_or("");
    match catalog::plan(SimKind::Cpanel, name) {
        Some(plan) => whm_ok(sim, CMD, "OK", Some(json!({ "pkg": pkg_json(plan) })), None),
        None => whm_fail(
            sim,
            CMD,
            format!("The package “{name}” does not exist."),
            None,
        ),
    }
}

/// `verify_new_username?user=U` (§1.3): result 0 with the conflict in `reason`.
pub(super) fn verify_new_username(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "verify_new_username";
    let user = req.arg("user").unwrap_or("").to_ascii_lowercase();
    if let Err(reason) = validate_username(&user) {
        return whm_fail(sim, CMD, reason, None);
    }
    let world = sim.world();
    let conflict = if world.accounts.contains_key(&user) {
        Some(format!(
            "This system already has an account named “{user}”."
        ))
    } else {
        prefix_conflict(&world, &user)
    };
    drop(world);
    match conflict {
        Some(reason) => whm_fail(sim, CMD, reason, None),
        None => whm_ok(sim, CMD, "OK", None, None),
    }
}

/// `showbw` (§1.3; body UNCONFIRMED): per-account totals in `data.acct[]`, no traffic.
pub(super) fn showbw(sim: &Sim, req: &ApiRequest) -> Reply {
    let (this_month, this_year) = clock::month_year();
    let month = req
        .arg("month")
        .and_then(|m| m.parse::<u8>().ok())
        .unwrap_or(this_month);
    let year = req
        .arg("year")
        .and_then(|y| y.parse::<i32>().ok())
        .unwrap_or(this_year);
    let world = sim.world();
    let accounts: Vec<Value> = selected(&world, req)
        .into_iter()
        .map(|account| {
            let plan = world
                .package_of(account)
                .and_then(|name| catalog::plan(SimKind::Cpanel, &name).copied());
            let limit = match plan.and_then(|p| p.bandwidth_mb) {
                Some(mb) => (mb * 1024 * 1024).to_string(),
                None => "unlimited".to_owned(),
            };
            let domain = world
                .primary_site(&account.username)
                .map(|s| s.name.clone());
            let used = account.usage.bandwidth_used_bytes;
            let over = plan
                .and_then(|p| p.bandwidth_mb)
                .is_some_and(|mb| used > mb * 1024 * 1024);
            json!({
                "user": account.username, "owner": account.owner, "maindomain": domain,
                "totalbytes": used, "limit": limit, "bwlimited": u8::from(over), "deleted": 0,
                "bwusage": [{"domain": domain, "usage": used}],
            })
        })
        .collect();
    drop(world);
    let total: u64 = accounts
        .iter()
        .filter_map(|a| a["totalbytes"].as_u64())
        .sum();
    let data = json!({"acct": accounts, "month": month, "year": year, "reseller": "root",
                      "totalused": total});
    whm_ok(sim, "showbw", "OK", Some(data), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules_follow_section_1_8() {
        assert!(validate_username("bob2024").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("abcdefghijklmnopq").is_err());
        assert!(validate_username("bob-smith").is_err());
        assert!(validate_username("Bob").is_err());
        assert!(validate_username("1bob").is_err());
        assert!(validate_username("testbob").is_err());
        assert!(validate_username("myassword").is_err());
        assert!(validate_username("root").is_err());
    }

    #[test]
    fn search_supports_literals_and_anchors() {
        assert!(matches("example.com", "example", false));
        assert!(matches("example.com", "^example\\.com$", false));
        assert!(!matches("myexample.com", "^example", false));
        assert!(matches("bob", "bob", true));
        assert!(!matches("bobby", "bob", true));
    }
}
