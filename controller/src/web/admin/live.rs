//! `GET /admin/live`: the overview's Server-Sent Events. Each event's data is a region's element
//! id, a newline and the region's new HTML (the protocol of `/assets/live.js`), sent only when
//! that HTML changed. The page's stream address names what the page shows (`?fleet=<digest>&…`),
//! so a stream starts by sending only the regions that differ from it: nothing is replaced
//! under the admin's pointer right after the page loads, and a browser that reconnects catches
//! up. A region the address does not name is sent at once, and so is every region to a browser
//! that reconnects after updates (it sends `Last-Event-ID`).
//!
//! One poller per controller reads the store once a second into a [`Snapshot`] and publishes it
//! on a watch channel only when it changed; every open stream renders from it with its own CSRF
//! token. The poller starts with the first stream and stops a second after the last one closes.
//! A stream ends when its session is revoked or expires (the browser's reconnect then gets 401
//! and stops) and when the controller shuts down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::dashboard::{REGIONS, Snapshot, fingerprint, gather, region_html};
use crate::store::now_ms;
use crate::web::Web;

/// How often the shared poller reads the store.
const POLL: Duration = Duration::from_secs(1);
/// What the browser waits before reconnecting.
const RETRY: Duration = Duration::from_millis(1000);
/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The latest snapshot: `None` until the poller's first read.
type Feed = watch::Sender<Option<Arc<Stamped>>>;

/// A snapshot and when it was taken (when the data last changed).
#[derive(Debug)]
pub(super) struct Stamped {
    taken_at: i64,
    snapshot: Snapshot,
}

/// The shared poller's channel, while one runs.
#[derive(Default)]
pub(crate) struct LiveHub {
    feed: Mutex<Option<Arc<Feed>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveHub {
    /// A receiver of the snapshots, starting the poller if none runs.
    fn subscribe(self: &Arc<Self>, web: &Web) -> watch::Receiver<Option<Arc<Stamped>>> {
        let mut feed = lock(&self.feed);
        if let Some(tx) = feed.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        let tx = Arc::new(tx);
        *feed = Some(tx.clone());
        tokio::spawn(poll(self.clone(), web.clone(), tx));
        rx
    }
}

/// Reads the store every [`POLL`] and publishes what changed, until no stream listens (the
/// check and `subscribe` hold the same lock, so a new stream cannot miss a stopping poller) or
/// the controller shuts down.
async fn poll(hub: Arc<LiveHub>, web: Web, tx: Arc<Feed>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = web.app.shutdown.cancelled() => break,
        }
        if tx.receiver_count() == 0 {
            let mut feed = lock(&hub.feed);
            if tx.receiver_count() == 0 {
                *feed = None;
                return;
            }
        }
        match gather(&web).await {
            Ok(snapshot) => {
                tx.send_if_modified(|current| {
                    if current.as_ref().is_some_and(|c| c.snapshot == snapshot) {
                        return false;
                    }
                    *current = Some(Arc::new(Stamped {
                        taken_at: now_ms(),
                        snapshot,
                    }));
                    true
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "dashboard poll failed; keeping the last snapshot");
            }
        }
    }
    *lock(&hub.feed) = None;
}

/// One browser's stream.
struct Viewer {
    web: Web,
    rx: watch::Receiver<Option<Arc<Stamped>>>,
    csrf: String,
    session_id: i64,
    session_created_at: i64,
    session_expires_at: i64,
    /// The snapshot last rendered, and the HTML last sent per region.
    last: Option<Arc<Stamped>>,
    sent: HashMap<&'static str, String>,
    /// The digests of the regions the page showed, until the first render.
    shown: HashMap<String, String>,
    /// The reconnection delay is sent first, once.
    retry_sent: bool,
}

pub(super) async fn stream(
    State(web): State<Web>,
    Extension(hub): Extension<Arc<LiveHub>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let (session, cookie) = match web.admin_session(&headers).await {
        Ok(Some(found)) => found,
        // An event stream is not a page to redirect: the browser stops retrying on a 401.
        Ok(None) => {
            return web.render(
                StatusCode::UNAUTHORIZED,
                "message.html",
                json!({
                    "title": "Signed out",
                    "message": "Sign in to follow the dashboard live.",
                    "link": "/admin/login",
                    "link_text": "Sign in",
                }),
            );
        }
        Err(response) => return response,
    };
    let viewer = Viewer {
        rx: hub.subscribe(&web),
        csrf: web.token("session", &cookie),
        session_id: session.id,
        session_created_at: session.created_at,
        session_expires_at: session.expires_at,
        web,
        last: None,
        sent: HashMap::new(),
        // A browser that had updates since its page (it names the last) is sent every region.
        shown: if headers.contains_key("last-event-id") {
            HashMap::new()
        } else {
            query.map(|Query(q)| q).unwrap_or_default()
        },
        retry_sent: false,
    };
    let events = futures::stream::unfold(viewer, Viewer::next_events)
        .flat_map(futures::stream::iter)
        .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

impl Viewer {
    /// Waits for a snapshot that changes some region and answers its events; `None` ends the
    /// stream.
    async fn next_events(mut self) -> Option<(Vec<Event>, Viewer)> {
        if !self.retry_sent {
            self.retry_sent = true;
            return Some((vec![Event::default().retry(RETRY)], self));
        }
        loop {
            let latest = self.rx.borrow_and_update().clone();
            if let Some(latest) = latest
                && !self.last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &latest))
            {
                // A snapshot older than the session cannot know of it yet.
                let revoked = latest.taken_at > self.session_created_at
                    && latest
                        .snapshot
                        .sessions
                        .binary_search(&self.session_id)
                        .is_err();
                if revoked {
                    return None;
                }
                let events = self.render(&latest);
                self.last = Some(latest);
                if !events.is_empty() {
                    return Some((events, self));
                }
            }
            let expires_in =
                Duration::from_millis(u64::try_from(self.session_expires_at - now_ms()).ok()?);
            tokio::select! {
                changed = self.rx.changed() => changed.ok()?,
                () = self.web.app.shutdown.cancelled() => return None,
                () = tokio::time::sleep(expires_in) => return None,
            }
        }
    }

    /// The events of the regions whose HTML differs from what this browser shows.
    fn render(&mut self, latest: &Stamped) -> Vec<Event> {
        let ctx = latest.snapshot.context(&self.csrf);
        let mut events = Vec::new();
        for (id, template) in REGIONS {
            let unchanged = self
                .last
                .as_ref()
                .is_some_and(|l| l.snapshot.region(id) == latest.snapshot.region(id));
            if unchanged && self.sent.contains_key(id) {
                continue;
            }
            let html = match region_html(&self.web, template, ctx.clone()) {
                Ok(html) => html,
                Err(e) => {
                    tracing::error!(template, error = %e, "cannot render a live region");
                    continue;
                }
            };
            let on_page = self
                .shown
                .remove(id)
                .is_some_and(|digest| digest == fingerprint(&html));
            if !on_page && self.sent.get(id) != Some(&html) {
                // An id makes a reconnecting browser say it has had updates since the page.
                events.push(
                    Event::default()
                        .id(latest.taken_at.to_string())
                        .data(format!("{id}\n{html}")),
                );
            }
            self.sent.insert(id, html);
        }
        self.shown.clear();
        events
    }
}
