//! DirectAdmin account lifecycle (reference §3.3, §3.8).

use super::{failure, list, pairs, selected, success};
use crate::SimKind;
use crate::catalog::{self, NAMESERVERS, Plan, SERVER_IP, limit_str};
use crate::dns::valid_domain;
use crate::reply::Reply;
use crate::request::ApiRequest;
use crate::routes::Caller;
use crate::sim::Sim;
use crate::state::{Account, World, clock};

/// UNCONFIRMED (§3.3); the brief's choice.
pub(super) const DUPLICATE_USER: &str = "That username already exists on the system";
const NO_USER: &str = "User does not exist";
/// §3.2/§3.3: the answer to a create without `ip` on a server with no default.
pub(super) const NO_IPS: &str = "You have no available IPs";

const RESERVED: [&str; 16] = [
    "root",
    "admin",
    "diradmin",
    "mysql",
    "apache",
    "nobody",
    "mail",
    "ftp",
    "bin",
    "daemon",
    "named",
    "postmaster",
    "webapps",
    "majordomo",
    "www",
    "backup",
];

/// §3.8 is UNCONFIRMED: the simulator takes 3–16 lower-case letters and digits starting with
/// a letter (OpenIaaS "usually 3–16 alphanumeric"; the third-party 10-character rule fits).
fn validate_username(username: &str) -> Result<(), &'static str> {
    let ok = (3..=16).contains(&username.len())
        && username.starts_with(|c: char| c.is_ascii_lowercase())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok {
        return Err(
            "Invalid username: use 3 to 16 lowercase letters and digits, starting with a letter",
        );
    }
    if RESERVED.contains(&username) {
        return Err("That username is reserved");
    }
    Ok(())
}

/// `POST CMD_API_ACCOUNT_USER action=create&add=Submit&username&email&passwd&passwd2&domain
/// &package&ip&notify` → "User <name> created" (§3.2, §3.3).
pub(super) fn account_user(sim: &Sim, req: &ApiRequest) -> Reply {
    const FAIL: &str = "Unable to create user";
    if req.arg("action") != Some("create") {
        return failure(
            req,
            "Unknown action",
            "Only action=create is supported by CMD_API_ACCOUNT_USER",
        );
    }
    let username = req.arg("username").unwrap_or("");
    if let Err(details) = validate_username(username) {
        return failure(req, FAIL, details);
    }
    let email = req.arg("email").unwrap_or("");
    if !email.contains('@') {
        return failure(req, FAIL, "Invalid E-Mail address");
    }
    let password = req.param("passwd").unwrap_or("");
    if password.is_empty() {
        return failure(req, FAIL, "Password is empty");
    }
    if req.param("passwd2") != Some(password) {
        return failure(req, FAIL, "Passwords do not match");
    }
    let domain = req.arg("domain").unwrap_or("").to_ascii_lowercase();
    if !valid_domain(&domain) {
        return failure(req, FAIL, "Invalid domain name");
    }
    let Some(package) = req.arg("package") else {
        return failure(req, FAIL, "No package selected");
    };
    // §3.3: every documented create form sends `ip`; without one DirectAdmin answers
    // "You have no available IPs" on a server with no default, which is how the simulated
    // server is set up. Since 1.44 `shared`, `server` and `assign` are accepted too.
    let ip = req.arg("ip").unwrap_or("").trim();
    if ip.is_empty() {
        return failure(req, FAIL, NO_IPS);
    }
    if !matches!(ip, "shared" | "server" | "assign") && ip.parse::<std::net::IpAddr>().is_err() {
        // Text UNCONFIRMED.
        return failure(req, FAIL, &format!("Invalid IP address: {ip}"));
    }
    let Some(plan) = catalog::plan(SimKind::Directadmin, package) else {
        return failure(req, FAIL, &format!("Package {package} does not exist"));
    };

    let mut world = sim.world();
    if world.accounts.contains_key(username) {
        return failure(req, FAIL, DUPLICATE_USER);
    }
    // §3.2 observed details text.
    if world.sites.contains_key(&domain) {
        return failure(req, FAIL, "Domain already exists");
    }
    let id = world.next_id();
    let mut account = Account::new(id, username, password, email, "admin");
    account.package = Some(plan.name.to_owned());
    account.ip = Some(ip.to_owned());
    world.accounts.insert(username.to_owned(), account);
    world.add_site(SimKind::Directadmin, &domain, username, None);
    drop(world);
    tracing::info!(
        username,
        domain,
        package = plan.name,
        "directadmin user created"
    );
    success(
        req,
        &format!("User {username} created"),
        "Unix user created successfully<br>\nUser's data directory created successfully<br>\n\
         Domains directory created successfully<br>\nDomain created successfully<br>\n",
    )
}

/// `CMD_API_USER_EXISTS?user=U` → `exists=1|0` (answer shape UNCONFIRMED).
pub(super) fn user_exists(sim: &Sim, req: &ApiRequest) -> Reply {
    let user = req.arg("user").unwrap_or("");
    let exists = sim.world().accounts.contains_key(user);
    pairs(
        req,
        vec![(
            "exists".to_owned(),
            if exists { "1" } else { "0" }.to_owned(),
        )],
    )
}

/// `CMD_API_SHOW_ALL_USERS` → `list[]=…`.
pub(super) fn show_all_users(sim: &Sim, req: &ApiRequest) -> Reply {
    let users: Vec<String> = sim.world().accounts.keys().cloned().collect();
    list(req, users)
}

fn visible<'w>(world: &'w World, req: &ApiRequest, caller: &Caller) -> Option<&'w Account> {
    let user = req.arg("user")?;
    match caller {
        Caller::User(me) if me != user => None,
        _ => world.accounts.get(user),
    }
}

fn plan_of(world: &World, account: &Account) -> Option<Plan> {
    world
        .package_of(account)
        .and_then(|p| catalog::plan(SimKind::Directadmin, &p).copied())
}

/// `CMD_API_SHOW_USER_CONFIG?user=U` (keys from omines `Users/User.php`, §3.3).
pub(super) fn show_user_config(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    let world = sim.world();
    let Some(account) = visible(&world, req, caller) else {
        return failure(
            req,
            NO_USER,
            &format!("User {} does not exist", req.arg("user").unwrap_or("")),
        );
    };
    let plan = plan_of(&world, account);
    let limit = |pick: fn(&Plan) -> Option<u64>| limit_str(plan.as_ref().and_then(pick));
    let domain = world
        .primary_site(&account.username)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let config = vec![
        ("username", account.username.clone()),
        ("name", account.name.clone()),
        ("usertype", "user".to_owned()),
        ("creator", account.owner.clone()),
        ("package", world.package_of(account).unwrap_or_default()),
        ("domain", domain),
        ("email", account.email.clone()),
        ("ip", SERVER_IP.to_owned()),
        ("ns1", NAMESERVERS[0].to_owned()),
        ("ns2", NAMESERVERS[1].to_owned()),
        (
            "suspended",
            if world.is_suspended(account) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ),
        ("date_created", clock::ctime(account.created)),
        ("bandwidth", limit(|p| p.bandwidth_mb)),
        ("quota", limit(|p| p.quota_mb)),
        ("vdomains", limit(|p| p.max_addon.map(|n| n + 1))),
        ("nsubdomains", limit(|p| p.max_sub)),
        ("nemails", limit(|p| p.max_pop)),
        ("mysql", limit(|p| p.max_sql)),
        ("ftp", limit(|p| p.max_ftp)),
        ("cgi", "ON".to_owned()),
        ("php", "ON".to_owned()),
        ("ssl", "ON".to_owned()),
        ("language", "en".to_owned()),
    ];
    let config = config.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    drop(world);
    pairs(req, config)
}

/// Bytes as DirectAdmin's usage prints them: MB, with two decimals when not whole.
fn megabytes(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MB) {
        (bytes / MB).to_string()
    } else {
        #[allow(clippy::cast_precision_loss)]
        let mb = bytes as f64 / MB as f64;
        format!("{mb:.2}")
    }
}

/// `CMD_API_SHOW_USER_USAGE?user=U` (`quota=512&bandwidth=2048` style, §3.2): disk (`quota`)
/// and `bandwidth` in MB, `inode` a count.
pub(super) fn show_user_usage(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    let world = sim.world();
    let Some(account) = visible(&world, req, caller) else {
        return failure(
            req,
            NO_USER,
            &format!("User {} does not exist", req.arg("user").unwrap_or("")),
        );
    };
    let user = &account.username;
    let count = |n: usize| n.to_string();
    let used = account.usage;
    let usage = vec![
        ("bandwidth", megabytes(used.bandwidth_used_bytes)),
        ("quota", megabytes(used.disk_used_bytes)),
        (
            "vdomains",
            count(world.sites.values().filter(|s| &s.owner == user).count()),
        ),
        ("nsubdomains", "0".to_owned()),
        (
            "nemails",
            count(
                world
                    .mailboxes
                    .values()
                    .filter(|m| &m.owner == user)
                    .count(),
            ),
        ),
        ("nemailf", "0".to_owned()),
        ("nemailr", "0".to_owned()),
        (
            "mysql",
            count(
                world
                    .databases
                    .values()
                    .filter(|d| &d.owner == user)
                    .count(),
            ),
        ),
        ("ftp", "1".to_owned()),
        ("domainptr", "0".to_owned()),
        ("inode", used.inodes_used.to_string()),
    ];
    let usage = usage.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    drop(world);
    pairs(req, usage)
}

enum SelectAction {
    Suspend,
    Unsuspend,
    Delete,
}

/// `CMD_API_SELECT_USERS` with `select0..N` and one button (§3.3): `dosuspend`/`dounsuspend`
/// (any non-empty value, UNCONFIRMED), legacy `suspend=Suspend|Unsuspend`, or
/// `delete=yes&confirmed=Confirm`. No button (or `delete` without `confirmed=Confirm`) →
/// `error=1&text=Unkown Select Command&details=none` (DA's typo). All-or-nothing: an unknown
/// user in the selection changes nobody.
pub(super) async fn select_users(sim: &Sim, req: &ApiRequest) -> Reply {
    let action = if req.arg("dosuspend").is_some() {
        Some(SelectAction::Suspend)
    } else if req.arg("dounsuspend").is_some() {
        Some(SelectAction::Unsuspend)
    } else if req.arg("delete").is_some() && req.arg("confirmed") == Some("Confirm") {
        Some(SelectAction::Delete)
    } else {
        match req.arg("suspend") {
            Some("Suspend") => Some(SelectAction::Suspend),
            Some("Unsuspend") => Some(SelectAction::Unsuspend),
            _ => None,
        }
    };
    let Some(action) = action else {
        return failure(req, "Unkown Select Command", "none");
    };
    let targets = selected(req);
    if targets.is_empty() {
        return failure(
            req,
            "No users selected",
            "Select at least one user (select0=…)",
        );
    }
    if let Some(missing) = {
        let world = sim.world();
        targets
            .iter()
            .find(|t| !world.accounts.contains_key(*t))
            .cloned()
    } {
        return failure(req, NO_USER, &format!("User {missing} does not exist"));
    }
    match action {
        SelectAction::Suspend | SelectAction::Unsuspend => {
            let suspend = matches!(action, SelectAction::Suspend);
            let mut world = sim.world();
            for target in &targets {
                if let Some(account) = world.accounts.get_mut(target) {
                    account.suspended = suspend;
                    account.suspend_reason = suspend.then(|| "admin".to_owned());
                    account.suspend_time = if suspend { clock::now_unix() } else { 0 };
                }
            }
            drop(world);
            // "User suspended" per directadmin-go; the unsuspend text is UNCONFIRMED
            // (directadmin-go expects "User suspended" for both directions).
            success(
                req,
                if suspend {
                    "User suspended"
                } else {
                    "User unsuspended"
                },
                "",
            )
        }
        SelectAction::Delete => {
            let _db = sim.db_ops.lock().await;
            for target in &targets {
                let dropped = sim.world().remove_account(target, false);
                if let Some(dropped) = dropped {
                    sim.db_drop(&dropped).await;
                }
            }
            tracing::info!(users = ?targets, "directadmin users deleted");
            success(req, "User deleted", "")
        }
    }
}

/// `CMD_API_MODIFY_USER action=package&user=U&package=P` (§3.3). Without `action` nothing
/// happens (third-party test): the simulator answers `error=0` with empty texts and changes
/// nothing. `action=customize` is accepted and ignored. Texts UNCONFIRMED.
pub(super) fn modify_user(sim: &Sim, req: &ApiRequest) -> Reply {
    match req.arg("action") {
        None => success(req, "", ""),
        Some("package") => {
            let user = req.arg("user").unwrap_or("");
            let package = req.arg("package").unwrap_or("");
            let Some(plan) = catalog::plan(SimKind::Directadmin, package) else {
                return failure(
                    req,
                    "Cannot change package",
                    &format!("Package {package} does not exist"),
                );
            };
            let mut world = sim.world();
            let Some(account) = world.accounts.get_mut(user) else {
                return failure(req, NO_USER, &format!("User {user} does not exist"));
            };
            account.package = Some(plan.name.to_owned());
            drop(world);
            success(
                req,
                "User package changed",
                &format!("{user} now uses package {package}"),
            )
        }
        Some("customize") => {
            let user = req.arg("user").unwrap_or("");
            if !sim.world().accounts.contains_key(user) {
                return failure(req, NO_USER, &format!("User {user} does not exist"));
            }
            success(req, "Saved", "")
        }
        Some(other) => failure(
            req,
            "Unknown action",
            &format!("action={other} is not supported"),
        ),
    }
}

/// `CMD_API_USER_PASSWD username=U&passwd=P&passwd2=P` (regru, §3.3). Text UNCONFIRMED.
pub(super) fn user_passwd(sim: &Sim, req: &ApiRequest) -> Reply {
    let user = req.arg("username").unwrap_or("");
    let password = req.param("passwd").unwrap_or("");
    if password.is_empty() {
        return failure(req, "Unable to change password", "Password is empty");
    }
    if req.param("passwd2") != Some(password) {
        return failure(req, "Unable to change password", "Passwords do not match");
    }
    let mut world = sim.world();
    let Some(account) = world.accounts.get_mut(user) else {
        return failure(req, NO_USER, &format!("User {user} does not exist"));
    };
    account.password = password.to_owned();
    drop(world);
    success(req, "Password Changed", "")
}

/// `CMD_API_PACKAGES_USER` → `list[]=…`; `?package=NAME` → its limits (§3.3).
pub(super) fn packages_user(req: &ApiRequest) -> Reply {
    let Some(name) = req.arg("package") else {
        let names = catalog::plans(SimKind::Directadmin)
            .iter()
            .map(|p| p.name.to_owned())
            .collect();
        return list(req, names);
    };
    let Some(plan) = catalog::plan(SimKind::Directadmin, name) else {
        return failure(
            req,
            "Package does not exist",
            &format!("Package {name} does not exist"),
        );
    };
    let details = vec![
        ("bandwidth", limit_str(plan.bandwidth_mb)),
        ("quota", limit_str(plan.quota_mb)),
        ("vdomains", limit_str(plan.max_addon.map(|n| n + 1))),
        ("nsubdomains", limit_str(plan.max_sub)),
        ("nemails", limit_str(plan.max_pop)),
        ("nemailf", "unlimited".to_owned()),
        ("nemailr", "unlimited".to_owned()),
        ("mysql", limit_str(plan.max_sql)),
        ("domainptr", limit_str(plan.max_park)),
        ("ftp", limit_str(plan.max_ftp)),
        ("aftp", "OFF".to_owned()),
        ("cgi", "ON".to_owned()),
        ("php", "ON".to_owned()),
        ("spam", "ON".to_owned()),
        ("ssl", "ON".to_owned()),
        ("ssh", "OFF".to_owned()),
        ("dnscontrol", "ON".to_owned()),
        ("suspend_at_limit", "ON".to_owned()),
        ("language", "en".to_owned()),
    ];
    pairs(
        req,
        details
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::validate_username;

    #[test]
    fn usernames_are_short_lowercase_and_start_with_a_letter() {
        assert!(validate_username("bob2024").is_ok());
        assert!(validate_username("bo").is_err());
        assert!(validate_username("2bob").is_err());
        assert!(validate_username("Bob").is_err());
        assert!(validate_username("bob_smith").is_err());
        assert!(validate_username("abcdefghijklmnopq").is_err());
        assert!(validate_username("admin").is_err());
    }
}
