//! The admin dashboard against a real controller on loopback, driven as a browser without
//! JavaScript would (cookies kept by hand, redirects not followed), with real agents and a
//! simulated cPanel; its event stream read with a plain HTTP client. The dashboard's own store
//! queries run on both backends.

mod backends;
mod fleet_support;
mod web_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fleet_support::*;
use mpanel_common::status::TaskStatus;
use mpanel_controller::store::billing::{ChargeDeclined, NewInvoice, NewPayment};
use mpanel_controller::store::{self, DynStore, Task, now_ms};
use mpanel_controller::web::credentials::hash_password;
use reqwest::{Method, StatusCode};
use serde_json::json;
use web_support::Browser;

const PASSWORD: &str = "correct horse battery staple";

async fn start(overrides: &[(&str, &str)]) -> (Controller, DynStore) {
    let c = Controller::start(overrides).await;
    let store = store::connect(&c.env["DATABASE_URL"]).await.unwrap();
    (c, store)
}

/// A browser signed in as a new admin, and that admin's user id.
async fn signed_in(c: &Controller, store: &DynStore, email: &str) -> (Browser, i64) {
    let hash = hash_password(PASSWORD).unwrap();
    let id = store
        .create_admin_user(email, &hash, "cli")
        .await
        .unwrap()
        .id;
    let mut browser = Browser::new(c);
    let page = browser.sign_in(email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    (browser, id)
}

/// The opening tag of the element with this id.
fn tag<'a>(body: &'a str, id: &str) -> Option<&'a str> {
    let at = body.find(&format!(" id=\"{id}\""))?;
    let start = body[..at].rfind('<')?;
    let end = body[at..].find('>')? + at;
    Some(&body[start..=end])
}

/// The `data-status` of the element with this id.
fn status_of(body: &str, id: &str) -> Option<String> {
    let tag = tag(body, id)?;
    let at = tag.find("data-status=\"")? + "data-status=\"".len();
    Some(tag[at..at + tag[at..].find('"')?].to_owned())
}

/// The row (`<tr …>…</tr>`) with this id.
fn row<'a>(body: &'a str, id: &str) -> &'a str {
    let start = body
        .find(&format!("<tr id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row {id} in {body}"));
    let end = body[start..].find("</tr>").unwrap() + start;
    &body[start..end]
}

/// Every `id="…"` of the page appears once.
fn assert_unique_ids(body: &str) {
    let mut seen = HashSet::new();
    for (at, _) in body.match_indices(" id=\"") {
        let rest = &body[at + 5..];
        let id = &rest[..rest.find('"').unwrap()];
        assert!(seen.insert(id.to_owned()), "id {id} appears twice");
    }
}

/// The CSRF token of the form with this id.
fn form_csrf(body: &str, form_id: &str) -> String {
    let start = body
        .find(&format!("<form id=\"{form_id}\""))
        .unwrap_or_else(|| panic!("no form {form_id} in {body}"));
    let form = &body[start..start + body[start..].find("</form>").unwrap()];
    let at = form.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    form[at..at + form[at..].find('"').unwrap()].to_owned()
}

/// (actor, action) of the log rows about `target`, oldest first.
async fn activity(c: &Controller, target: &str) -> Vec<(String, String)> {
    let (status, body) = c
        .request(Method::GET, &format!("/api/activity?target={target}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut rows: Vec<(String, String)> = body["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.reverse();
    rows
}

async fn server_status(c: &Controller, id: i64) -> String {
    let (status, body) = c
        .request(Method::GET, &format!("/api/servers/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

/// The dashboard's event stream as a browser's EventSource reads it.
struct Live {
    response: reqwest::Response,
    buffer: String,
    /// The `retry:` field of the first event, in milliseconds.
    retry: Option<u64>,
}

impl Live {
    async fn open(browser: &Browser) -> reqwest::Response {
        Live::open_at(browser, "/admin/live").await
    }

    async fn open_at(browser: &Browser, path: &str) -> reqwest::Response {
        let cookies: Vec<String> = browser
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        reqwest::Client::new()
            .get(format!("{}{path}", browser.base))
            .header("cookie", cookies.join("; "))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap()
    }

    async fn start(browser: &Browser) -> Live {
        Live::start_at(browser, "/admin/live").await
    }

    async fn start_at(browser: &Browser, path: &str) -> Live {
        let response = Live::open_at(browser, path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Live {
            response,
            buffer: String::new(),
            retry: None,
        }
    }

    /// The next event's (element id, HTML); `None` when the stream ended or `deadline` passed.
    async fn next(&mut self, deadline: Instant) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut data: Vec<&str> = Vec::new();
                for line in block.lines() {
                    if let Some(d) = line.strip_prefix("data:") {
                        data.push(d.strip_prefix(' ').unwrap_or(d));
                    } else if let Some(r) = line.strip_prefix("retry:") {
                        self.retry.get_or_insert(r.trim().parse().unwrap());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = data.join("\n");
                let (id, html) = data.split_once('\n').expect("id, newline, HTML");
                return Some((id.to_owned(), html.to_owned()));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(_) => return None,
                Err(_) => return None,
            }
        }
    }

    /// Reads events until one of region `id` satisfies `check`; panics after `within`.
    async fn wait_for(
        &mut self,
        id: &str,
        within: Duration,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        loop {
            match self.next(deadline).await {
                Some((region, html)) if region == id => {
                    let first_tag = &html[..html.find('>').unwrap_or(0)];
                    assert!(
                        html.starts_with('<') && first_tag.contains(&format!(" id=\"{id}\"")),
                        "a region's HTML is the element itself: {html}"
                    );
                    if check(&html) {
                        return html;
                    }
                    last = html;
                }
                Some(_) => {}
                None => panic!("no {id} update with {what} in time; last: {last}"),
            }
        }
    }
}

async fn wait_for_task(
    store: &DynStore,
    task: &Task,
    what: &str,
    done: impl Fn(&Task) -> bool,
) -> Task {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = store.get_task(task.id).await.unwrap();
        if done(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task never reached {what}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_every_server_with_the_status_its_heartbeats_give() {
    let (c, store) = start(&[]).await;
    let (online, _online_dir, online_state) = enrolled_agent(&c, "online.example.net").await;
    let agent =
        run_agent_until_online(&c, online, agent_options(&c.grpc_url(), &online_state)).await;
    let never = c.create_server("never.example.net").await;
    let (stopped, _stopped_dir, stopped_state) = enrolled_agent(&c, "stopped.example.net").await;
    let gone =
        run_agent_until_online(&c, stopped, agent_options(&c.grpc_url(), &stopped_state)).await;
    gone.stop().await;
    c.wait_for_agent(stopped, Duration::from_secs(15), "offline", |a| {
        a["status"] == "offline"
    })
    .await;

    let mut anonymous = Browser::new(&c);
    let away = anonymous.get("/admin").await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(away.header("location"), "/admin/login");

    let (mut browser, _) = signed_in(&c, &store, "ops@example.com").await;
    let page = browser.get("/admin").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert_eq!(
        status_of(body, &format!("server-{online}")).as_deref(),
        Some("online")
    );
    assert_eq!(
        status_of(body, &format!("server-{never}")).as_deref(),
        Some("pending")
    );
    assert_eq!(
        status_of(body, &format!("server-{stopped}")).as_deref(),
        Some("offline")
    );
    // The status is text too, not only an attribute.
    let online_row = row(body, &format!("server-{online}"));
    assert!(online_row.contains(">online</span>"), "{online_row}");
    assert!(online_row.contains("online.example.net"), "{online_row}");
    assert!(
        online_row.contains(env!("CARGO_PKG_VERSION")),
        "{online_row}"
    );
    assert!(!online_row.contains("out of date"), "{online_row}");
    assert!(
        online_row.contains("/ 500"),
        "accounts against capacity: {online_row}"
    );
    assert!(online_row.contains("<time datetime=\""), "{online_row}");
    assert!(row(body, &format!("server-{never}")).contains("not enrolled"));
    assert!(row(body, &format!("server-{stopped}")).contains(">offline</span>"));
    for server in [online, never, stopped] {
        for form in ["drain", "enable", "enrollment-token", "revoke"] {
            assert!(
                body.contains(&format!("<form id=\"{form}-server-{server}\"")),
                "{form} form of {server}"
            );
        }
    }
    for needle in [
        // `/` and `&` are escaped as every attribute value is.
        "data-live=\"&#x2f;admin&#x2f;live?fleet=",
        "<script src=\"/assets/live.js\" defer></script>",
        "<div id=\"fleet\">",
        "<div id=\"fleet-actions\">",
        "<section id=\"queue\"",
        "<section id=\"billing\"",
        "<section id=\"cron\"",
        "href=\"#queue\"",
        "Signed in as <strong>ops@example.com</strong>",
        "action=\"/admin/logout\"",
        "recurring-billing",
        "service-suspension",
    ] {
        assert!(body.contains(needle), "{needle} in {body}");
    }
    assert_eq!(body.matches("<h1").count(), 1);
    assert_unique_ids(body);
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    );

    // Only the known confirmations are shown; nothing of the query string is reflected.
    let flashed = browser.get("/admin?done=drained").await;
    assert!(flashed.body.contains("role=\"status\""), "{}", flashed.body);
    let odd = browser.get("/admin?done=%3Cb%3Eowned%3C%2Fb%3E").await;
    assert_eq!(odd.status, StatusCode::OK);
    assert!(!odd.body.contains("owned"));
    assert!(!odd.body.contains("role=\"status\""));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_follows_an_agent_that_drops_and_ends_with_its_session() {
    let (c, store) = start(&[]).await;
    let (server, _dir, state) = enrolled_agent(&c, "web1.example.net").await;
    let agent = run_agent_until_online(&c, server, agent_options(&c.grpc_url(), &state)).await;
    let mut anonymous = Browser::new(&c);
    anonymous.get("/admin/login").await;
    assert_eq!(
        Live::open(&anonymous).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let (mut browser, _) = signed_in(&c, &store, "ops@example.com").await;
    let mut live = Live::start(&browser).await;
    // A new stream starts with every region.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut regions = Vec::new();
    while regions.len() < 5 {
        let (id, html) = live.next(deadline).await.expect("the first regions");
        if id == "fleet" {
            assert_eq!(
                status_of(&html, &format!("server-{server}")).as_deref(),
                Some("online")
            );
        }
        regions.push(id);
    }
    regions.sort();
    assert_eq!(
        regions,
        ["billing", "cron", "fleet", "fleet-actions", "queue"]
    );
    assert_eq!(live.retry, Some(1000));

    // The page's own stream address names what it shows: only what changes since is sent
    // (here the fleet table, which every heartbeat changes, and the cron table when a job is
    // due within the minute: its "in 40 s" counts down).
    let page = browser.get("/admin").await;
    let at = page.body.find("data-live=\"").unwrap() + "data-live=\"".len();
    let address = page.body[at..at + page.body[at..].find('"').unwrap()]
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    let mut from_page = Live::start_at(&browser, &address).await;
    let quiet_until = Instant::now() + Duration::from_millis(2500);
    while let Some((region, _)) = from_page.next(quiet_until).await {
        assert!(
            region == "fleet" || region == "cron",
            "only the fleet and cron tables change on their own since the page: {region}"
        );
    }
    assert_eq!(
        from_page.retry,
        Some(1000),
        "the reconnection delay comes first"
    );
    drop(from_page);

    agent.stop().await;
    let row_id = format!("server-{server}");
    live.wait_for("fleet", Duration::from_secs(10), "suspect", |html| {
        status_of(html, &row_id).as_deref() == Some("suspect")
    })
    .await;
    live.wait_for("fleet", Duration::from_secs(10), "offline", |html| {
        status_of(html, &row_id).as_deref() == Some("offline")
    })
    .await;

    // Revoked through the API, the session's stream ends and does not come back.
    let (status, sessions) = c.request(Method::GET, "/api/admin/sessions", None).await;
    assert_eq!(status, 200, "{sessions}");
    let id = sessions["sessions"][0]["id"].as_i64().unwrap();
    let (status, body) = c
        .request(Method::DELETE, &format!("/api/admin/sessions/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while live.next(deadline).await.is_some() {}
    assert!(
        Instant::now() < deadline,
        "the stream ended before the deadline"
    );
    assert_eq!(
        Live::open(&browser).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_forms_act_as_the_api_does_and_write_activity() {
    let (c, store) = start(&[]).await;
    let (server, _dir, _state) = enrolled_agent(&c, "web1.example.net").await;
    let (mut browser, admin) = signed_in(&c, &store, "ops@example.com").await;
    let actor = format!("admin_user:{admin}");
    let page = browser.get("/admin").await;
    let csrf = form_csrf(&page.body, &format!("drain-server-{server}"));

    let drained = browser
        .post(
            &format!("/admin/servers/{server}/drain"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(drained.status, StatusCode::SEE_OTHER, "{}", drained.body);
    assert_eq!(drained.header("location"), "/admin?done=drained#fleet");
    assert_eq!(server_status(&c, server).await, "draining");
    assert!(
        activity(&c, &format!("server:{server}"))
            .await
            .contains(&(actor.clone(), "server.updated".to_owned()))
    );
    let shown = browser.get("/admin?done=drained").await;
    assert!(row(&shown.body, &format!("server-{server}")).contains(">draining</span>"));

    // Draining a draining server changes nothing and says so.
    let before = activity(&c, &format!("server:{server}")).await.len();
    let again = browser
        .post(
            &format!("/admin/servers/{server}/drain"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("already draining"), "{}", again.body);
    assert_eq!(
        activity(&c, &format!("server:{server}")).await.len(),
        before
    );

    let enabled = browser
        .post(
            &format!("/admin/servers/{server}/enable"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER);
    assert_eq!(enabled.header("location"), "/admin?done=enabled#fleet");
    assert_eq!(server_status(&c, server).await, "active");

    // The enrollment token is shown once, and it enrolls.
    let token_page = browser
        .post(
            &format!("/admin/servers/{server}/enrollment-token"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(token_page.status, StatusCode::OK, "{}", token_page.body);
    let at = token_page.body.find("value=\"mpe_").expect("the token") + "value=\"".len();
    let token = &token_page.body[at..at + token_page.body[at..].find('"').unwrap()];
    let (_dir2, state2) = state_dir();
    let enrolled = mpanel_agent::enroll::enroll(&c.grpc_url(), token, &state2)
        .await
        .expect("the token from the page enrolls");
    assert_eq!(enrolled.server_id, server);
    let actions = activity(&c, &format!("server:{server}")).await;
    assert!(
        actions
            .iter()
            .any(|(who, what)| *who == actor && what.contains("enrollment")),
        "{actions:?}"
    );

    let revoked = browser
        .post(
            &format!("/admin/servers/{server}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(revoked.header("location"), "/admin?done=revoked#fleet");
    assert_eq!(c.agent(server).await["status"], "revoked");
    assert!(
        activity(&c, &format!("server:{server}"))
            .await
            .contains(&(actor.clone(), "agent.certificate_revoked".to_owned()))
    );
    let page = browser.get("/admin").await;
    assert_eq!(
        status_of(&page.body, &format!("server-{server}")).as_deref(),
        Some("revoked")
    );
    let again = browser
        .post(
            &format!("/admin/servers/{server}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Unknown servers are a 404 page.
    for path in ["/admin/servers/999999/drain", "/admin/servers/abc/revoke"] {
        let missing = browser.post(path, &[("csrf", &csrf)]).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
        assert!(missing.body.contains("Not found"), "{}", missing.body);
    }
    browser.validate_pages();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_right_token_or_session_are_refused_and_change_nothing() {
    let (c, store) = start(&[]).await;
    let server = c.create_server("web1.example.net").await;
    let (mut browser, _) = signed_in(&c, &store, "ops@example.com").await;
    let page = browser.get("/admin").await;
    let csrf = form_csrf(&page.body, &format!("drain-server-{server}"));
    let (mut other, _) = signed_in(&c, &store, "other@example.com").await;
    let before = activity(&c, &format!("server:{server}")).await.len();

    let path = format!("/admin/servers/{server}/drain");
    for form in [vec![], vec![("csrf", "00ff")], vec![("csrf", "not hex")]] {
        let refused = browser.post(&path, &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(
            refused.body.contains("nothing was done"),
            "{}",
            refused.body
        );
    }
    // Another admin's token is not this session's.
    let refused = other.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    for path in [
        format!("/admin/servers/{server}/revoke"),
        format!("/admin/servers/{server}/enrollment-token"),
        "/admin/tasks/1/retry".to_owned(),
        "/admin/tasks/1/clear".to_owned(),
        "/admin/failed/clear".to_owned(),
    ] {
        assert_eq!(
            browser.post(&path, &[]).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    // Without a session, a form is refused, a page sends to the sign-in page.
    let mut anonymous = Browser::new(&c);
    assert_eq!(
        anonymous.post(&path, &[("csrf", &csrf)]).await.status,
        StatusCode::FORBIDDEN
    );
    let away = anonymous.get("/admin").await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(away.header("location"), "/admin/login");

    assert_eq!(server_status(&c, server).await, "active");
    assert_eq!(
        activity(&c, &format!("server:{server}")).await.len(),
        before
    );
}

/// A controller with one agent on a simulated cPanel that refuses to create accounts, and two
/// orders whose provisioning has failed for it.
async fn failing_rig(
    database_url: Option<&str>,
) -> (
    Controller,
    DynStore,
    mpanel_panelsim::SimHandle,
    RunningAgent,
    tempfile::TempDir,
    [Task; 2],
) {
    let mut env = vec![
        ("PROVISIONING_RETRY_BASE_MS", "50"),
        ("EMAIL_PROVIDER", "log"),
    ];
    if let Some(url) = database_url {
        env.push(("DATABASE_URL", url));
    }
    let (c, store) = start(&env).await;
    let (server, dir, state) = enrolled_agent(&c, "web1.example.net").await;
    let sim = start_cpanel_sim(|_| {}).await;
    let agent = run_panel_agent(&c, server, &state, cpanel_driver(&sim)).await;
    let fault = insecure()
        .post(format!("{}/__sim/faults", sim.base_url()))
        .json(&json!({"kind": "server_error", "pathContains": "createacct", "times": 1000}))
        .send()
        .await
        .unwrap();
    assert!(fault.status().is_success());
    let a = store_order(&store, "retried.example").await;
    let b = store_order(&store, "cleared.example").await;
    let a = wait_for_task(&store, &a, "failed", |t| t.status == TaskStatus::Failed).await;
    let b = wait_for_task(&store, &b, "failed", |t| t.status == TaskStatus::Failed).await;
    (c, store, sim, agent, dir, [a, b])
}

fn insecure() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// Retry and clear from the page, followed live until the retried task completes.
async fn retry_and_clear(
    c: &Controller,
    store: &DynStore,
    sim: &mpanel_panelsim::SimHandle,
    tasks: &[Task; 2],
) {
    let [a, b] = tasks;
    let (mut browser, admin) = signed_in(c, store, "ops@example.com").await;
    let actor = format!("admin_user:{admin}");
    let page = browser.get("/admin").await;
    for t in [a, b] {
        let id = format!("task-{}", t.id);
        assert_eq!(status_of(&page.body, &id).as_deref(), Some("failed"));
        let failed_row = row(&page.body, &id);
        assert!(failed_row.contains(&format!("<form id=\"retry-task-{}\"", t.id)));
        assert!(failed_row.contains(&format!("<form id=\"clear-task-{}\"", t.id)));
        assert!(failed_row.contains(">Retry</button>"), "{failed_row}");
        assert!(
            failed_row.contains("data-step=\"account\" data-state=\"failed\""),
            "{failed_row}"
        );
        assert!(
            failed_row.contains("data-step=\"welcome_email\" data-state=\"to do\""),
            "{failed_row}"
        );
    }
    let counts = "<tr><th scope=\"row\">provision</th><td class=\"num\">0</td><td class=\"num\">0</td><td class=\"num\">2</td></tr>";
    assert!(
        page.body.contains(counts),
        "two failed provision tasks: {}",
        page.body
    );
    assert_unique_ids(&page.body);
    let csrf = form_csrf(&page.body, &format!("retry-task-{}", a.id));

    let healed = insecure()
        .delete(format!("{}/__sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(healed.status().is_success());
    let mut live = Live::start(&browser).await;

    let retried = browser
        .post(&format!("/admin/tasks/{}/retry", a.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.body);
    assert_eq!(retried.header("location"), "/admin?done=retried#queue");
    let now = store.get_task(a.id).await.unwrap();
    assert_ne!(now.status, TaskStatus::Failed, "re-queued: {now:?}");
    // The row the API's retry writes, on the task's service.
    let rows = activity(c, &format!("service:{}", a.service_id)).await;
    assert!(
        rows.contains(&(actor.clone(), "task.provision.retried".to_owned())),
        "{rows:?}"
    );
    // The page follows the task's steps until it completes.
    let task_id = format!("task-{}", a.id);
    let done = live
        .wait_for(
            "queue",
            Duration::from_secs(30),
            "the task completed",
            |html| status_of(html, &task_id).as_deref() == Some("completed"),
        )
        .await;
    assert!(row(&done, &task_id).contains("data-step=\"welcome_email\" data-state=\"done\""));
    drop(live);

    // A task that is not failed is not retried again.
    let again = browser
        .post(&format!("/admin/tasks/{}/retry", a.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.body.contains("only failed tasks can be retried"),
        "{}",
        again.body
    );
    assert_eq!(
        store.get_task(a.id).await.unwrap().status,
        TaskStatus::Completed
    );

    let cleared = browser
        .post(&format!("/admin/tasks/{}/clear", b.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{}", cleared.body);
    assert_eq!(cleared.header("location"), "/admin?done=cleared#queue");
    let b_now = store.get_task(b.id).await.unwrap();
    assert_eq!(b_now.status, TaskStatus::Failed);
    assert!(b_now.cleared_at.is_some());
    assert!(
        activity(c, &format!("provisioning_task:{}", b.id))
            .await
            .contains(&(actor.clone(), "task.failed_cleared".to_owned()))
    );
    let page = browser.get("/admin?done=cleared").await;
    assert!(!page.body.contains(&format!("id=\"task-{}\"", b.id)));
    let again = browser
        .post(&format!("/admin/tasks/{}/clear", b.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    for path in [
        "/admin/tasks/999999/retry",
        "/admin/tasks/999999/clear",
        "/admin/tasks/x/retry",
    ] {
        let missing = browser.post(path, &[("csrf", &csrf)]).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
    }
    browser.validate_pages();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_retried_from_the_page_and_followed_live_until_it_completes() {
    let (mut c, store, sim, agent, _dir, tasks) = failing_rig(None).await;
    retry_and_clear(&c, &store, &sim, &tasks).await;
    agent.stop().await;
    sim.shutdown().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_retried_from_the_page_on_postgres() {
    let db = mpanel_e2e::databases::TestDatabase::create().await;
    let (mut c, store, sim, agent, _dir, tasks) = failing_rig(Some(&db.url)).await;
    retry_and_clear(&c, &store, &sim, &tasks).await;
    agent.stop().await;
    sim.shutdown().await;
    store.close().await;
    c.stop().await;
    db.drop_database().await;
}

// ---- the dashboard's store queries, on both backends -----------------------------------------

async fn fail(store: &DynStore, task: &Task) -> Task {
    let claimed = store
        .claim_next_task("test-worker", 60_000)
        .await
        .unwrap()
        .expect("a runnable task");
    assert_eq!(claimed.id, task.id);
    store
        .fail_task(task.id, "test-worker", "the panel said no")
        .await
        .unwrap();
    store.get_task(task.id).await.unwrap()
}

async fn clearing_one_failed_task_leaves_the_rest_of_the_list(store: DynStore) {
    let a = store_order(&store, "a.example").await;
    let a = fail(&store, &a).await;
    let b = store_order(&store, "b.example").await;
    let b = fail(&store, &b).await;
    let open = store_order(&store, "c.example").await;

    let counts = store.task_counts_by_kind().await.unwrap();
    let count = |status: &str| {
        counts
            .iter()
            .find(|c| c.kind == "provision" && c.status == status)
            .map_or(0, |c| c.count)
    };
    assert_eq!((count("pending"), count("failed")), (1, 2), "{counts:?}");

    let cleared = store.clear_failed_task(a.id, "admin_user:1").await.unwrap();
    assert!(
        cleared.as_ref().is_ok_and(|t| t.cleared_at.is_some()),
        "{cleared:?}"
    );
    assert_eq!(
        store.get_task(a.id).await.unwrap().status,
        TaskStatus::Failed
    );
    assert!(store.get_task(b.id).await.unwrap().cleared_at.is_none());
    assert!(
        store
            .clear_failed_task(a.id, "admin_user:1")
            .await
            .unwrap()
            .is_err()
    );
    assert!(
        store
            .clear_failed_task(open.id, "admin_user:1")
            .await
            .unwrap()
            .is_err()
    );
    assert!(store.get_task(open.id).await.unwrap().cleared_at.is_none());
    assert!(matches!(
        store
            .clear_failed_task(mpanel_common::ids::TaskId::new(999_999), "admin_user:1")
            .await,
        Err(store::StoreError::NotFound { .. })
    ));
    let rows = store
        .list_activity("provisioning_task", a.id.get())
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|r| r.action == "task.failed_cleared" && r.actor == "admin_user:1"),
        "{rows:?}"
    );
    let counts = store.task_counts_by_kind().await.unwrap();
    assert_eq!(
        counts
            .iter()
            .find(|c| c.status == "failed")
            .map(|c| c.count),
        Some(1)
    );
    let domains = store.queue_domains(now_ms() - 60_000).await.unwrap();
    assert_eq!(
        domains.get(&open.service_id.get()).map(String::as_str),
        Some("c.example")
    );
    assert_eq!(
        domains.get(&b.service_id.get()).map(String::as_str),
        Some("b.example")
    );
    assert!(
        !domains.contains_key(&a.service_id.get()),
        "cleared: {domains:?}"
    );
}

async fn billing_at_a_glance_counts_overdue_charges_declines_and_disputes(store: DynStore) {
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    let task = store_order(&store, "billed.example").await;
    let service = store.get_service(task.service_id).await.unwrap();
    let invoice = |due_at: i64| NewInvoice {
        customer_id: service.customer_id.get(),
        service_id: Some(service.id.get()),
        period_start: None,
        period_end: None,
        subtotal_minor: 1000,
        tax_minor: 0,
        tax_rate_bp: 0,
        currency: "USD".into(),
        lines: vec![],
        issued_at: now - 10 * day,
        due_at,
        next_charge_at: None,
    };
    let overdue = store
        .create_invoice(&invoice(now - 3 * day), &[], "test")
        .await
        .unwrap()
        .unwrap();
    let current = store
        .create_invoice(&invoice(now + 3 * day), &[], "test")
        .await
        .unwrap()
        .unwrap();
    store
        .record_charge_declined(
            &ChargeDeclined {
                invoice_id: overdue.id,
                attempt: 1,
                error: "Your card was declined.".into(),
                next_charge_at: None,
                pay_url: None,
                notice: None,
            },
            "billing",
        )
        .await
        .unwrap();
    store
        .record_payment(
            &NewPayment {
                invoice_id: current.id,
                amount_minor: 1000,
                currency: "USD".into(),
                provider: "stripe".into(),
                provider_ref: "pi_dashboard".into(),
                method: "card".into(),
                reference: None,
                now,
            },
            "billing",
            None,
        )
        .await
        .unwrap();
    store
        .record_dispute("pi_dashboard", "dp_dashboard", &[], None)
        .await
        .unwrap();

    let day_start = now - now.rem_euclid(day);
    let glance = store.billing_glance(now, day_start, 10).await.unwrap();
    assert_eq!(glance.overdue_count, 1);
    assert_eq!(glance.overdue[0].id, overdue.id);
    assert_eq!(glance.overdue[0].customer_email, "owner@billed.example");
    let paid: Vec<_> = glance
        .payments_today
        .iter()
        .filter(|p| p.status == "succeeded")
        .collect();
    assert_eq!(paid.len(), 1, "{:?}", glance.payments_today);
    assert_eq!((paid[0].count, paid[0].amount_minor), (1, 1000));
    assert_eq!(glance.declines_today_count, 1);
    assert_eq!(glance.declines_today[0].invoice_id, Some(overdue.id));
    assert_eq!(
        glance.declines_today[0].details.0["error"],
        "Your card was declined."
    );
    assert_eq!(glance.disputed_count, 1);
    assert_eq!(glance.disputed[0].dispute_ref, "dp_dashboard");
    // Tomorrow, today's charges and declines are yesterday's.
    let later = store
        .billing_glance(now, day_start + day, 10)
        .await
        .unwrap();
    assert!(later.payments_today.is_empty());
    assert_eq!(later.declines_today_count, 0);

    let accounts = store.accounts_per_server().await.unwrap();
    assert!(
        accounts.is_empty(),
        "no service is placed yet: {accounts:?}"
    );
}

async fn live_sessions_leave_out_revoked_expired_and_disabled(store: DynStore) {
    use mpanel_controller::store::NewAdminSession;
    let now = now_ms();
    let user = store
        .create_admin_user("a@example.com", "hash", "cli")
        .await
        .unwrap();
    let other = store
        .create_admin_user("b@example.com", "hash", "cli")
        .await
        .unwrap();
    let session = |user_id: i64, hash: &str, expires_at: i64| NewAdminSession {
        user_id,
        token_hash: hash.to_owned(),
        expires_at,
        user_agent: None,
        ip_address: None,
    };
    let live = store
        .create_admin_session(&session(user.id, "h1", now + 60_000), "email:a@example.com")
        .await
        .unwrap();
    let revoked = store
        .create_admin_session(&session(user.id, "h2", now + 60_000), "email:a@example.com")
        .await
        .unwrap();
    store
        .revoke_admin_session(revoked.id, "test", "admin_session.revoked")
        .await
        .unwrap();
    store
        .create_admin_session(&session(user.id, "h3", now - 1), "email:a@example.com")
        .await
        .unwrap();
    store
        .create_admin_session(
            &session(other.id, "h4", now + 60_000),
            "email:b@example.com",
        )
        .await
        .unwrap();
    store
        .disable_admin_user("b@example.com", "test")
        .await
        .unwrap();
    assert_eq!(store.live_admin_session_ids(now).await.unwrap(), [live.id]);
}

on_both_backends!(
    clearing_one_failed_task_leaves_the_rest_of_the_list,
    billing_at_a_glance_counts_overdue_charges_declines_and_disputes,
    live_sessions_leave_out_revoked_expired_and_disabled,
);
