//! The REST CLI gateway: `GET /api/v2/cli/commands`, `POST /api/v2/cli/{id}/call` with
//! `{"params":[…],"env":{…}}` → `{"code","stdout","stderr"}` (reference §2.3, §2.4).
//!
//! Simulated utilities:
//! - `mail --create|--update|--remove|--info ADDRESS [-passwd X] [-mailbox true] [-mbox_quota 100M]`
//! - `subscription --switch-subscription SUB -service-plan NAME`, `--sync-subscription SUB`,
//!   `--webspace-off|--webspace-on SUB`, `--info SUB`
//! - `extension --exec letsencrypt cli.php -d DOMAIN [-d …] -m EMAIL` (§2.4; the REST id
//!   `extension` is UNCONFIRMED)
//! - `pleskrestore --restore FILE -level clients -filter list:LOGIN`: restores one customer
//!   (its subscriptions, mail, databases, DNS) from an archive of the server repository
//!   (official "pleskrestore: Restoration from Backup": `--restore <backup_file>`, `-level`,
//!   `-filter`). The call answers when the restore is done (the utility runs in the
//!   foreground). An existing customer is a conflict the utility reports with the documented
//!   message "Cannot restore <object name>: <object name> <object type> already exists in
//!   Plesk" (official "Conflict Description Messages"), exit code 1 (UNCONFIRMED); an unknown
//!   file's text is UNCONFIRMED.
//! - `filemng SYSUSER write PATH CONTENT`: the simulator's way to write an ACME HTTP-01 file
//!   under a domain's `www_root`. UNCONFIRMED / invented: Plesk's `filemng` exists as a local
//!   helper, but neither it nor this calling convention is documented for the gateway.
//!
//! Output texts are UNCONFIRMED; failures use a non-zero `code` and "already exists"/"Error:"
//! wording (§2.4).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{body, error, ok};
use crate::reply::{self, Reply};
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Certificate, Mailbox, SiteStatus, clock};
use crate::webroot;
use crate::{SimKind, catalog};

const COMMANDS: [&str; 5] = [
    "extension",
    "filemng",
    "mail",
    "pleskrestore",
    "subscription",
];

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(stdout: impl Into<String>) -> Self {
        Output {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn fail(code: i32, stderr: impl Into<String>) -> Self {
        Output {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    fn reply(self) -> Reply {
        let body = json!({"code": self.code, "stdout": self.stdout, "stderr": self.stderr});
        Reply::new(self.code == 0, reply::json(StatusCode::OK, &body))
    }
}

pub(super) fn commands() -> Reply {
    ok(StatusCode::OK, &json!(COMMANDS))
}

fn command_of(req: &ApiRequest) -> &str {
    req.path.trim_matches('/').split('/').nth(3).unwrap_or("")
}

fn params_of(req: &ApiRequest) -> Result<Vec<String>, Reply> {
    let map = body(req)?;
    match map.get("params") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()),
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "params: expected an array of strings",
        )),
    }
}

/// The value following `-name` (or `--name`).
fn option<'p>(params: &'p [String], name: &str) -> Option<&'p str> {
    params
        .iter()
        .position(|p| p.trim_start_matches('-') == name && p.starts_with('-'))
        .and_then(|i| params.get(i + 1))
        .map(String::as_str)
}

fn all_options<'p>(params: &'p [String], name: &str) -> Vec<&'p str> {
    params
        .windows(2)
        .filter(|w| w[0].starts_with('-') && w[0].trim_start_matches('-') == name)
        .map(|w| w[1].as_str())
        .collect()
}

pub(super) async fn call(sim: &Sim, req: &ApiRequest, id: &str) -> Reply {
    if !COMMANDS.contains(&id) {
        return error(StatusCode::NOT_FOUND, "Command is not found");
    }
    let params = match params_of(req) {
        Ok(params) => params,
        Err(reply) => return reply,
    };
    let output = match id {
        "mail" => mail(sim, &params),
        "subscription" => subscription(sim, &params),
        "extension" => extension(sim, &params),
        "pleskrestore" => pleskrestore(sim, &params),
        _ => filemng(sim, &params),
    };
    output.reply()
}

fn pleskrestore(sim: &Sim, params: &[String]) -> Output {
    let Some(file) = option(params, "restore") else {
        return Output::fail(1, "Error: only --restore is simulated\n");
    };
    if option(params, "level") != Some("clients") {
        return Output::fail(1, "Error: only -level clients is simulated\n");
    }
    let Some(login) = option(params, "filter").and_then(|f| f.strip_prefix("list:")) else {
        return Output::fail(1, "Error: -filter list:LOGIN is required\n");
    };
    let mut world = sim.world();
    let id = world.next_id().to_string();
    match world.start_restore(
        login,
        crate::backups::Storage::Server,
        file,
        false,
        id,
        std::time::Duration::ZERO,
    ) {
        Ok(restore) => {
            world.settle();
            match world.restore_by_id(&restore.id).and_then(|r| r.outcome) {
                Some(Ok(())) => Output::ok("The restoration completed successfully.\n"),
                Some(Err(reason)) => Output::fail(1, format!("Error: {reason}\n")),
                None => Output::fail(1, "Error: the restoration did not finish\n"),
            }
        }
        Err(crate::backups::RestoreRefusal::NoArchive) => Output::fail(
            1,
            format!("Error: The backup file {file} does not exist.\n"),
        ),
        Err(crate::backups::RestoreRefusal::AccountExists) => Output::fail(
            1,
            format!("Cannot restore {login}: {login} customer already exists in Plesk\n"),
        ),
    }
}

/// A scripted duplicate for the called utility.
pub(super) fn already_exists(req: &ApiRequest) -> axum::response::Response {
    let params = params_of(req).unwrap_or_default();
    let subject = params.get(1).cloned().unwrap_or_default();
    let output = match command_of(req) {
        "mail" => Output::fail(
            1,
            format!(
                "An error occurred during mail name creation: Mail name {subject} already exists.\n"
            ),
        ),
        _ => Output::fail(1, format!("Error: Object {subject} already exists.\n")),
    };
    output.reply().into_response()
}

/// `-mbox_quota` values: `100M`, `1G`, `512K`, plain bytes, `-1` for unlimited.
fn quota_mb(raw: &str) -> Result<Option<u64>, String> {
    let raw = raw.trim();
    if raw == "-1" || raw.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("Invalid quota value: {raw}"))?;
    match unit.to_ascii_uppercase().as_str() {
        "" | "B" => Ok(Some(n / (1024 * 1024))),
        "K" => Ok(Some(n / 1024)),
        "M" => Ok(Some(n)),
        "G" => Ok(Some(n * 1024)),
        _ => Err(format!("Invalid quota value: {raw}")),
    }
}

fn mail(sim: &Sim, params: &[String]) -> Output {
    let Some(action) = params.first().map(|a| a.trim_start_matches('-')) else {
        return Output::fail(
            1,
            "Error: no command given. Use --create, --update, --remove or --info.\n",
        );
    };
    let address = params
        .get(1)
        .map(|a| a.to_ascii_lowercase())
        .unwrap_or_default();
    let Some((local, domain)) = address.split_once('@') else {
        return Output::fail(1, format!("Error: invalid mail name '{address}'\n"));
    };
    let mut world = sim.world();
    let Some(owner) = world.sites.get(domain).map(|s| s.owner.clone()) else {
        return Output::fail(1, format!("Error: Unable to find domain {domain}\n"));
    };
    let quota = match option(params, "mbox_quota").map(quota_mb).transpose() {
        Ok(q) => q,
        Err(e) => return Output::fail(1, format!("Error: {e}\n")),
    };
    match action {
        "create" | "c" => {
            if local.is_empty()
                || !local
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Output::fail(1, format!("Error: invalid mail name '{address}'\n"));
            }
            if world.mailboxes.contains_key(&address) {
                return Output::fail(
                    1,
                    format!(
                        "An error occurred during mail name creation: Mail name {address} already exists.\n"
                    ),
                );
            }
            let mailbox = option(params, "mailbox").is_none_or(|v| v == "true");
            let password = option(params, "passwd").unwrap_or("");
            if mailbox && password.is_empty() {
                return Output::fail(
                    1,
                    "Error: a password (-passwd) is required for a mailbox.\n",
                );
            }
            world.mailboxes.insert(
                address.clone(),
                Mailbox {
                    address: address.clone(),
                    owner,
                    password: password.to_owned(),
                    quota_mb: quota.flatten(),
                    created: clock::now_unix(),
                },
            );
            Output::ok(format!(
                "SUCCESS: Creation of mailname '{address}' complete.\n"
            ))
        }
        "update" | "u" => {
            let Some(mailbox) = world.mailboxes.get_mut(&address) else {
                return Output::fail(1, format!("Error: Mail name {address} does not exist.\n"));
            };
            if let Some(password) = option(params, "passwd") {
                mailbox.password = password.to_owned();
            }
            if let Some(quota) = quota {
                mailbox.quota_mb = quota;
            }
            Output::ok(format!(
                "SUCCESS: Update of mailname '{address}' complete.\n"
            ))
        }
        "remove" | "r" => match world.mailboxes.remove(&address) {
            Some(_) => Output::ok(format!("SUCCESS: Removal of '{address}' complete.\n")),
            None => Output::fail(1, format!("Error: Mail name {address} does not exist.\n")),
        },
        "info" | "i" => match world.mailboxes.get(&address) {
            Some(m) => Output::ok(format!(
                "Mailname:      {local}\nDomain:        {domain}\nMailbox:       true\nMbox quota:    {}\n",
                m.quota_mb
                    .map_or_else(|| "Unlimited".to_owned(), |q| format!("{q} MB"))
            )),
            None => Output::fail(1, format!("Error: Mail name {address} does not exist.\n")),
        },
        other => Output::fail(1, format!("Error: unknown command --{other}\n")),
    }
}

fn subscription(sim: &Sim, params: &[String]) -> Output {
    let Some(action) = params.first().map(|a| a.trim_start_matches('-')) else {
        return Output::fail(1, "Error: no command given.\n");
    };
    let name = params
        .get(1)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let mut world = sim.world();
    let Some(site) = world.sites.get_mut(&name) else {
        return Output::fail(1, format!("Error: Unable to find subscription {name}\n"));
    };
    match action {
        "switch-subscription" => {
            let Some(plan) = option(params, "service-plan") else {
                return Output::fail(1, "Error: -service-plan is required.\n");
            };
            if catalog::plan(SimKind::Plesk, plan).is_none() {
                return Output::fail(1, format!("Error: Unable to find service plan {plan}\n"));
            }
            site.plan = Some(plan.to_owned());
            Output::ok(format!(
                "SUCCESS: The subscription {name} was switched to the service plan {plan}.\n"
            ))
        }
        "sync-subscription" => Output::ok(format!(
            "SUCCESS: The subscription {name} was synchronized.\n"
        )),
        "webspace-off" => {
            site.status = SiteStatus::Suspended;
            Output::ok(format!("SUCCESS: The subscription {name} was suspended.\n"))
        }
        "webspace-on" => {
            site.status = SiteStatus::Active;
            Output::ok(format!("SUCCESS: The subscription {name} was activated.\n"))
        }
        "info" => Output::ok(format!(
            "Domain name:   {name}\nService plan:  {}\nStatus:        {}\nWWW root:      {}\n",
            site.plan.clone().unwrap_or_else(|| "Custom".to_owned()),
            site.status.as_str(),
            site.docroot
        )),
        other => Output::fail(1, format!("Error: unknown command --{other}\n")),
    }
}

fn extension(sim: &Sim, params: &[String]) -> Output {
    let is_letsencrypt = params
        .first()
        .is_some_and(|p| p == "--exec" || p == "-exec")
        && params.get(1).is_some_and(|p| p == "letsencrypt")
        && params.get(2).is_some_and(|p| p == "cli.php");
    if !is_letsencrypt {
        return Output::fail(
            1,
            "Error: only `--exec letsencrypt cli.php` is simulated.\n",
        );
    }
    let domains = all_options(params, "d");
    let Some(first) = domains.first().map(|d| d.to_ascii_lowercase()) else {
        return Output::fail(1, "Error: at least one -d DOMAIN is required.\n");
    };
    let mut world = sim.world();
    let Some(site) = world.site_for_host(&first).cloned() else {
        return Output::fail(1, format!("Error: Domain {first} not found\n"));
    };
    world.certificates.insert(
        site.name.clone(),
        Certificate {
            domain: site.name.clone(),
            owner: site.owner.clone(),
            source: "letsencrypt".to_owned(),
            name: format!("Lets Encrypt {}", site.name),
            cert_pem: String::new(),
            has_key: true,
            cabundle: None,
            installed: clock::now_unix(),
        },
    );
    Output::ok(String::new())
}

/// `filemng SYSUSER write PATH CONTENT` (invented, see module docs). `SYSUSER` is the
/// subscription's FTP login or its owner's login; `PATH` is absolute under its `www_root`.
fn filemng(sim: &Sim, params: &[String]) -> Output {
    let [user, verb, path, content, ..] = params else {
        return Output::fail(1, "filemng: usage: filemng SYSUSER write PATH CONTENT\n");
    };
    if verb != "write" {
        return Output::fail(1, format!("filemng: unknown command '{verb}'\n"));
    }
    let Some(path) = webroot::resolve("/", path).filter(|_| path.starts_with('/')) else {
        return Output::fail(1, format!("filemng: {path}: invalid path\n"));
    };
    let mut world = sim.world();
    let site = world
        .sites
        .values()
        .find(|s| webroot::is_within(&path, &s.docroot))
        .map(|s| (s.owner.clone(), s.ftp_login.clone()));
    let Some((owner, ftp_login)) = site else {
        return Output::fail(1, format!("filemng: {path}: Permission denied\n"));
    };
    if *user != owner && Some(user) != ftp_login.as_ref() {
        return Output::fail(1, format!("filemng: {path}: Permission denied\n"));
    }
    webroot::write(&mut world, &owner, path, content.as_bytes().to_vec());
    Output::ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_plesk_units() {
        assert_eq!(quota_mb("100M"), Ok(Some(100)));
        assert_eq!(quota_mb("1G"), Ok(Some(1024)));
        assert_eq!(quota_mb("-1"), Ok(None));
        assert_eq!(quota_mb("1048576"), Ok(Some(1)));
        assert!(quota_mb("lots").is_err());
    }

    #[test]
    fn options_are_read_after_their_flag() {
        let params: Vec<String> = [
            "--create", "a@b.test", "-passwd", "x", "-d", "one", "-d", "two",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(option(&params, "passwd"), Some("x"));
        assert_eq!(all_options(&params, "d"), vec!["one", "two"]);
        assert_eq!(option(&params, "mailbox"), None);
    }
}
