//! The overview at `/admin`: fleet health, the queue, billing and scheduled jobs, read in one
//! go into a [`Snapshot`]. The page renders a fresh snapshot; the event stream (`live`) renders
//! the same regions from the snapshots its shared poller takes, with the same partial templates.
//!
//! What the API already decides is taken from where the API takes it: an agent's status from
//! [`crate::fleet::Fleet::agents`] (heartbeat age against the configured thresholds), a job's
//! next run and staleness from [`crate::cron::Cron::jobs`].

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use mpanel_common::status::{AgentStatus, ProvisioningStep, StepStatus, TaskKind, TaskStatus};
use mpanel_common::{Currency, JobId, Money};
use serde_json::{Value, json};

use crate::fleet::AgentView;
use crate::store::admin_users::shown_time;
use crate::store::{Page, StepRecord, Task, TaskFilter, now_ms};
use crate::web::Web;

/// The version agents are compared against.
pub(super) const CONTROLLER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How many rows each list of the overview shows at most.
const LIST_LIMIT: i64 = 50;
/// How many rows the billing lists show.
const BILLING_LIMIT: i64 = 10;
/// How long a completed task stays on the overview.
const RECENT_MS: i64 = 15 * 60 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// A certificate this close to its expiry is flagged.
const CERT_WARNING_MS: i64 = 14 * DAY_MS;
/// Error texts are cut to this many characters on the overview.
const ERROR_CHARS: usize = 300;

/// The live regions of the overview: element id and the partial that renders it. The server
/// forms are a region of their own, so the heartbeats that change the fleet table every few
/// seconds do not replace a button under the admin's pointer.
pub(super) const REGIONS: [(&str, &str); 5] = [
    ("fleet", "admin/partials/fleet.html"),
    ("fleet-actions", "admin/partials/fleet_actions.html"),
    ("queue", "admin/partials/queue.html"),
    ("billing", "admin/partials/billing.html"),
    ("cron", "admin/partials/cron.html"),
];

/// Everything the overview shows, as template data, plus the live admin sessions (for the
/// streams to end when theirs is revoked). Equal snapshots render equal pages.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Snapshot {
    pub(super) fleet: Value,
    pub(super) queue: Value,
    pub(super) billing: Value,
    pub(super) cron: Value,
    pub(super) sessions: Vec<i64>,
}

impl Snapshot {
    /// The data of the region with this element id.
    pub(super) fn region(&self, id: &str) -> &Value {
        match id {
            "fleet" | "fleet-actions" => &self.fleet,
            "queue" => &self.queue,
            "billing" => &self.billing,
            _ => &self.cron,
        }
    }

    /// The template context of the regions: their data and the viewer's CSRF token.
    pub(super) fn context(&self, csrf: &str) -> Value {
        json!({
            "csrf": csrf,
            "fleet": self.fleet,
            "queue": self.queue,
            "billing": self.billing,
            "cron": self.cron,
        })
    }
}

/// A region rendered alone, as the event stream sends it.
pub(super) fn region_html(
    web: &Web,
    template: &str,
    ctx: Value,
) -> Result<String, minijinja::Error> {
    // The protocol splits data on newlines; a carriage return would add empty lines.
    Ok(web
        .render_string(template, ctx)?
        .trim()
        .replace("\r\n", "\n")
        .replace('\r', "\n"))
}

/// A short digest of a region's HTML: the page names what it shows by these, so a stream
/// opened by that page sends only what changed since.
pub(super) fn fingerprint(html: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, html.as_bytes());
    hex::encode(&digest.as_ref()[..8])
}

/// Reads everything the overview shows, as of now.
pub(super) async fn gather(web: &Web) -> anyhow::Result<Snapshot> {
    let now = now_ms();
    Ok(Snapshot {
        fleet: fleet(web, now).await?,
        queue: queue(web, now).await?,
        billing: billing(web, now).await?,
        cron: cron(web).await?,
        sessions: {
            let mut ids = web.app.store.live_admin_session_ids(now).await?;
            ids.sort_unstable();
            ids
        },
    })
}

/// What a form's `?done=` says happened. Only these fixed texts are shown: nothing from the
/// query string is reflected.
fn flash(done: &str) -> Option<&'static str> {
    Some(match done {
        "drained" => "The server is draining: it keeps its services and receives no new ones.",
        "enabled" => "The server is active: it receives new services again.",
        "revoked" => {
            "The agent's certificates are revoked and its session closed; only a new enrollment brings it back."
        }
        "retried" => "The task is queued again.",
        "cleared" => "The task is off the failed list; it stays in the history.",
        "cleared-all" => "The failed list is cleared; the tasks stay in the history.",
        _ => return None,
    })
}

pub(super) async fn overview(
    State(web): State<Web>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let admin = match web.admin_page(&headers).await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let snapshot = match gather(&web).await {
        Ok(snapshot) => snapshot,
        Err(e) => return web.failure(&e, "/admin"),
    };
    let done = query
        .ok()
        .and_then(|Query(q)| q.get("done").and_then(|d| flash(d)));
    let mut ctx = snapshot.context(&admin.csrf(&web));
    let mut live_url = "/admin/live?".to_owned();
    for (id, template) in REGIONS {
        match region_html(&web, template, ctx.clone()) {
            Ok(html) => live_url.push_str(&format!("{id}={}&", fingerprint(&html))),
            Err(e) => return web.failure(&e, "/admin"),
        }
    }
    live_url.pop();
    ctx["live_url"] = json!(live_url);
    ctx["email"] = json!(admin.session.email);
    ctx["expires_at"] = json!(shown_time(admin.session.expires_at));
    ctx["flash"] = json!(done);
    web.render(StatusCode::OK, "admin/home.html", ctx)
}

// ---- fleet ----------------------------------------------------------------------------------

async fn fleet(web: &Web, now: i64) -> anyhow::Result<Value> {
    let mut servers = web.app.store.list_servers().await?;
    servers.sort_by_key(|s| s.id);
    let agents: HashMap<i64, AgentView> = web
        .app
        .fleet
        .agents()
        .await?
        .into_iter()
        .map(|a| (a.row.server_id.get(), a))
        .collect();
    let accounts = web.app.store.accounts_per_server().await?;
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    let rows: Vec<Value> = servers
        .iter()
        .map(|server| {
            let agent = agents.get(&server.id.get());
            // A server whose agent never enrolled is `pending`, as an enrolled agent that never
            // connected is.
            let status = agent.map_or(AgentStatus::Pending, |a| a.status);
            *counts.entry(status.as_str()).or_default() += 1;
            let load = agent.and_then(|a| a.load.as_ref());
            let version = agent
                .map(|a| a.row.agent_version.as_str())
                .filter(|v| !v.is_empty())
                .or(load.map(|l| l.agent_version.as_str()))
                .filter(|v| !v.is_empty());
            let cert_expiry = agent
                .and_then(|a| a.row.cert_not_after)
                .filter(|_| status != AgentStatus::Revoked);
            json!({
                "id": server.id.get(),
                "hostname": server.hostname,
                "status": status.as_str(),
                "enrolled": agent.is_some(),
                "connected": agent.is_some_and(|a| a.connected),
                "upgrade_required": agent.and_then(|a| a.too_old.as_ref()).map(|t| t.reason()),
                "heartbeat": agent.and_then(|a| a.last_heartbeat_ms).map(|ms| moment(ms, now)),
                "load": load.map(|l| json!({
                    "per_cpu": format!("{:.2}", l.load1 / f64::from(l.cpu_count.max(1))),
                    "averages": format!("{:.2} {:.2} {:.2}", l.load1, l.load5, l.load15),
                    "cpus": l.cpu_count,
                })),
                "disk": load.map(|l| share(l.disk_free_bytes, l.disk_total_bytes, bytes)),
                "inodes": load.map(|l| share(l.inodes_free, l.inodes_total, |n| n.to_string())),
                "accounts": accounts.get(&server.id.get()).copied().unwrap_or(0),
                "capacity": server.max_accounts,
                "full": accounts.get(&server.id.get()).copied().unwrap_or(0) >= i64::from(server.max_accounts),
                "version": version,
                "outdated": version.is_some_and(|v| older(v, CONTROLLER_VERSION)),
                "panel_kind": agent
                    .map(|a| a.row.panel_kind.as_str())
                    .filter(|k| !k.is_empty())
                    .unwrap_or(server.control_panel.as_str()),
                "panel_answers": load.map(|l| l.panel_reachable),
                "certificate": cert_expiry.map(|ms| json!({
                    "moment": moment(ms, now),
                    "expired": ms <= now,
                    "soon": ms > now && ms - now < CERT_WARNING_MS,
                })),
                "revoked": status == AgentStatus::Revoked,
                "server_status": server.status.as_str(),
            })
        })
        .collect();
    let summary: Vec<String> = AgentStatus::ALL
        .iter()
        .filter_map(|s| {
            counts
                .get(s.as_str())
                .map(|n| format!("{n} {}", s.as_str()))
        })
        .collect();
    Ok(json!({
        "servers": rows,
        "summary": summary.join(", "),
        "controller_version": CONTROLLER_VERSION,
    }))
}

/// `free` of `total` as a percentage and in units.
fn share(free: u64, total: u64, unit: fn(u64) -> String) -> Value {
    let percent = if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    };
    json!({
        "percent": format!("{percent:.0}%"),
        "of": format!("{} of {}", unit(free), unit(total)),
        "low": total > 0 && percent < 10.0,
    })
}

/// Bytes in binary units, one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Whether version `a` is older than `b`, comparing dotted numbers (a pre-release suffix is
/// ignored; a version that is not numbers is never called older).
fn older(a: &str, b: &str) -> bool {
    fn parts(v: &str) -> Option<Vec<u64>> {
        v.trim()
            .trim_start_matches('v')
            .split(['-', '+'])
            .next()?
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    }
    match (parts(a), parts(b)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

// ---- times ----------------------------------------------------------------------------------

/// A moment as RFC 3339 and relative to `now` ("12 s ago", "2 minutes ago", "in 3 days"): to
/// the second under a minute (a heartbeat's age matters there), coarser above.
fn moment(ms: i64, now: i64) -> Value {
    json!({ "at": shown_time(ms), "relative": relative(ms, now) })
}

fn relative(ms: i64, now: i64) -> String {
    let diff = now - ms;
    let span = span(diff.unsigned_abs() / 1000);
    match span {
        None => "just now".to_owned(),
        Some(span) if diff >= 0 => format!("{span} ago"),
        Some(span) => format!("in {span}"),
    }
}

/// A duration in seconds as a rough span; `None` under a second.
fn span(secs: u64) -> Option<String> {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    Some(match secs {
        0 => return None,
        1..60 => format!("{secs} s"),
        60..3600 => plural(secs / 60, "minute"),
        3600..172_800 => plural(secs / 3600, "hour"),
        _ => plural(secs / 86_400, "day"),
    })
}

// ---- queue ----------------------------------------------------------------------------------

async fn queue(web: &Web, now: i64) -> anyhow::Result<Value> {
    let store = &web.app.store;
    let list = |status: TaskStatus| TaskFilter {
        status: Some(status),
        service_id: None,
        only_uncleared: status == TaskStatus::Failed,
        page: Page {
            limit: LIST_LIMIT,
            after_id: None,
        },
    };
    let processing = store.list_tasks(&list(TaskStatus::Processing)).await?;
    let mut waiting = store.list_tasks(&list(TaskStatus::Pending)).await?;
    waiting.sort_by_key(|t| (t.next_attempt_at, t.id));
    let failed = store.list_tasks(&list(TaskStatus::Failed)).await?;
    let finished = store.recently_completed_tasks(now - RECENT_MS, 10).await?;
    let domains = store.queue_domains(now - RECENT_MS).await?;
    let row = |t: &Task| task_row(t, &domains, now);

    let mut by_kind: Vec<(String, [i64; 3])> = TaskKind::ALL
        .iter()
        .map(|k| (k.as_str().to_owned(), [0; 3]))
        .collect();
    for c in store.task_counts_by_kind().await? {
        let column = match c.status.as_str() {
            "pending" => 0,
            "processing" => 1,
            _ => 2,
        };
        match by_kind.iter_mut().find(|(k, _)| *k == c.kind) {
            Some((_, counts)) => counts[column] += c.count,
            None => {
                let mut counts = [0; 3];
                counts[column] = c.count;
                by_kind.push((c.kind, counts));
            }
        }
    }
    let totals = by_kind.iter().fold([0; 3], |mut sum, (_, c)| {
        for (s, n) in sum.iter_mut().zip(c) {
            *s += n;
        }
        sum
    });
    Ok(json!({
        "counts": by_kind
            .iter()
            .map(|(kind, c)| json!({
                "kind": kind, "pending": c[0], "processing": c[1], "failed": c[2],
            }))
            .collect::<Vec<_>>(),
        "totals": { "pending": totals[0], "processing": totals[1], "failed": totals[2] },
        "processing": processing.iter().map(row).collect::<Vec<_>>(),
        "waiting": waiting.iter().map(row).collect::<Vec<_>>(),
        "failed": failed.iter().map(row).collect::<Vec<_>>(),
        "finished": finished.iter().map(row).collect::<Vec<_>>(),
    }))
}

fn task_row(t: &Task, domains: &HashMap<i64, String>, now: i64) -> Value {
    json!({
        "id": t.id.get(),
        "job": JobId::for_task(t.id).to_string(),
        "kind": t.task_type.as_str(),
        "status": t.status.as_str(),
        "service_id": t.service_id.get(),
        "domain": domains.get(&t.service_id.get()),
        "attempts": t.attempts,
        "max_retries": t.max_retries,
        "error": t.error.as_deref().map(cut),
        "steps": steps(t),
        "reason": (t.status == TaskStatus::Pending).then(|| waiting_reason(t, now)),
        "next_attempt": (t.status == TaskStatus::Pending && t.next_attempt_at > now)
            .then(|| moment(t.next_attempt_at, now)),
        "created": moment(t.created_at, now),
        "completed": t.completed_at.map(|ms| moment(ms, now)),
    })
}

/// Each step of the task with its state: the six provisioning steps in order (those not
/// recorded yet are `running`, for the first while the task is processing, or `to do`), or a
/// lifecycle task's one step.
fn steps(t: &Task) -> Vec<Value> {
    let recorded = &t.result.0.steps;
    let state = |r: &StepRecord| match r.status {
        StepStatus::Success => "done",
        StepStatus::Failed => "failed",
        StepStatus::Waiting => "waiting",
    };
    // A step's error is shown unless it is the task's own, shown beside it already.
    let step = |name: &str, state: &str, r: Option<&StepRecord>| {
        json!({
            "name": name,
            "state": state,
            "error": r
                .and_then(|r| r.error.as_deref())
                .filter(|e| t.error.as_deref() != Some(*e))
                .map(cut),
        })
    };
    if t.task_type != TaskKind::Provision {
        if recorded.is_empty() {
            let state = match t.status {
                TaskStatus::Processing => "running",
                TaskStatus::Completed => "done",
                TaskStatus::Failed => "failed",
                TaskStatus::Pending => "to do",
            };
            return vec![step(t.task_type.as_str(), state, None)];
        }
        return recorded
            .iter()
            .map(|r| step(r.step.as_str(), state(r), Some(r)))
            .collect();
    }
    let mut running_shown = false;
    ProvisioningStep::ALL
        .iter()
        .map(|s| match recorded.iter().find(|r| r.step == s.as_str()) {
            Some(r) => step(s.as_str(), state(r), Some(r)),
            None if t.status == TaskStatus::Processing && !running_shown => {
                running_shown = true;
                step(s.as_str(), "running", None)
            }
            None => step(s.as_str(), "to do", None),
        })
        .collect()
}

/// Why a pending task has not run yet.
fn waiting_reason(t: &Task, now: i64) -> String {
    if let Some(reason) = &t.wait_reason {
        return format!("Waiting for {}", cut(reason));
    }
    if t.attempts > 0 {
        let mut reason = format!(
            "Retrying after a failed attempt ({} of {})",
            t.attempts,
            t.max_retries.max(t.attempts)
        );
        if let Some(e) = &t.error {
            reason.push_str(": ");
            reason.push_str(&cut(e));
        }
        return reason;
    }
    if t.next_attempt_at > now {
        return "Scheduled for later".to_owned();
    }
    "Waiting for a free worker".to_owned()
}

/// Text cut to [`ERROR_CHARS`] characters.
fn cut(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(ERROR_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

// ---- billing --------------------------------------------------------------------------------

fn money(amount: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(currency) => Money {
            amount_minor: amount,
            currency,
        }
        .to_string(),
        Err(_) => format!("{amount} {currency}"),
    }
}

async fn billing(web: &Web, now: i64) -> anyhow::Result<Value> {
    let day_start = now - now.rem_euclid(DAY_MS);
    let b = web
        .app
        .store
        .billing_glance(now, day_start, BILLING_LIMIT)
        .await?;
    let payments = |status: &str| -> Vec<Value> {
        b.payments_today
            .iter()
            .filter(|p| p.status == status)
            .map(|p| json!({ "count": p.count, "amount": money(p.amount_minor, &p.currency) }))
            .collect()
    };
    let charged = payments("succeeded");
    let failed = payments("failed");
    Ok(json!({
        "overdue_count": b.overdue_count,
        "overdue": b.overdue.iter().map(|i| json!({
            "id": i.id,
            "number": i.number,
            "customer": i.customer_email,
            "due": money((i.amount_minor - i.amount_paid_minor).max(0), &i.currency),
            "due_at": moment(i.due_at, now),
        })).collect::<Vec<_>>(),
        "charged": charged,
        "charge_count": b.payments_today.iter().filter(|p| p.status == "succeeded").map(|p| p.count).sum::<i64>(),
        "failed_payments": failed,
        "declines_count": b.declines_today_count,
        "declines": b.declines_today.iter().map(|d| json!({
            "invoice": d.number.clone().or_else(|| d.invoice_id.map(|i| format!("#{i}"))),
            "error": d.details.0.get("error").and_then(Value::as_str).map(cut),
            "attempt": d.details.0.get("attempt").and_then(Value::as_i64),
            "at": moment(d.created_at, now),
        })).collect::<Vec<_>>(),
        "disputed_count": b.disputed_count,
        "disputed": b.disputed.iter().map(|s| json!({
            "id": s.id,
            "domain": s.domain,
            "status": s.status,
            "dispute": s.dispute_ref,
            "customer": s.customer_email,
        })).collect::<Vec<_>>(),
        "day": shown_time(day_start).get(..10).unwrap_or_default(),
    }))
}

// ---- scheduled jobs -------------------------------------------------------------------------

async fn cron(web: &Web) -> anyhow::Result<Value> {
    let cron = &web.app.cron;
    let now = cron.now();
    let jobs = cron.jobs(now).await?;
    Ok(json!({
        "zone": cron.registry().zone().name(),
        "jobs": jobs.iter().map(|j| json!({
            "name": j.name,
            "schedule": j.schedule.clone().unwrap_or_else(|| "off".to_owned()),
            "enabled": j.schedule.is_some(),
            "last_run": j.last_run.as_ref().map(|r| json!({
                "status": r.status,
                "trigger": r.trigger,
                "moment": moment(r.finished_at.or(r.started_at).unwrap_or(r.scheduled_for), now),
                "error": r.error.as_deref().map(cut),
            })),
            "next_run": j.next_run_at.map(|ms| moment(ms, now)),
            "stale": j.stale,
        })).collect::<Vec<_>>(),
        "stale_count": jobs.iter().filter(|j| j.stale).count(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number() {
        assert!(older("0.9.0", "0.10.0"));
        assert!(older("1.2.3", "1.2.4"));
        assert!(!older("1.2.4", "1.2.4"));
        assert!(!older("1.3.0-rc.1", "1.2.9"));
        assert!(!older("custom", "1.0.0"));
    }

    #[test]
    fn relative_times_are_seconds_then_coarser() {
        assert_eq!(relative(1_000, 1_500), "just now");
        assert_eq!(relative(1_000, 5_000), "4 s ago");
        assert_eq!(relative(0, 25_000), "25 s ago");
        assert_eq!(relative(0, 61_000), "1 minute ago");
        assert_eq!(relative(0, 3 * 3_600_000), "3 hours ago");
        assert_eq!(relative(3 * 86_400_000, 0), "in 3 days");
    }

    #[test]
    fn only_known_flashes_are_shown() {
        assert!(flash("retried").is_some());
        assert_eq!(flash("<script>"), None);
    }

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
