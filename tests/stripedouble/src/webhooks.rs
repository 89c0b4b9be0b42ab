//! Webhook delivery as Stripe does it: each event POSTed as JSON to the endpoint with
//! `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`, one at a time in
//! creation order, by a background task so API answers never wait on the endpoint. Tests can
//! hold deliveries (pause/resume, optionally resuming newest first), re-send an event many
//! times (duplicates, concurrently if asked) and read the log of every attempt.
//!
//! Unlike Stripe, a failed delivery is not retried by itself: re-send it with the control API.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Double;
use crate::ids::now;

/// Where events go. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    /// The endpoint's signing secret, `whsec_...`.
    pub secret: String,
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The `Stripe-Signature` header value for `payload` signed with `secret` at `timestamp`.
pub fn signature_header(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(payload);
    format!("t={timestamp},v1={}", hex::encode(ctx.sign().as_ref()))
}

#[derive(Debug, Clone)]
pub(crate) struct DeliveryRecord {
    pub event_id: String,
    pub event_type: String,
    /// The endpoint's HTTP status; `None` when no answer came (refused, timed out).
    pub status: Option<u16>,
    pub error: Option<String>,
    pub redelivery: bool,
    pub at: i64,
}

/// The delivery queue; lives inside the store so events are queued in the same critical
/// section that creates them.
pub(crate) struct Outbox {
    target: Option<WebhookTarget>,
    paused: bool,
    queue: VecDeque<String>,
    log: Vec<DeliveryRecord>,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(target: Option<WebhookTarget>, wake: Arc<Notify>) -> Self {
        Outbox {
            target,
            paused: false,
            queue: VecDeque::new(),
            log: Vec::new(),
            wake,
        }
    }

    /// Queues event `id` if an endpoint is configured; tells whether it was.
    pub fn enqueue(&mut self, id: &str) -> bool {
        if self.target.is_none() {
            return false;
        }
        self.queue.push_back(id.to_owned());
        self.wake.notify_one();
        true
    }

    pub fn target(&self) -> Option<&WebhookTarget> {
        self.target.as_ref()
    }

    pub fn set_target(&mut self, target: Option<WebhookTarget>) {
        self.target = target;
        self.wake.notify_one();
    }

    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Lets held events go, oldest first, or newest first when `reverse` (out-of-order
    /// arrival, as Stripe allows).
    pub fn resume(&mut self, reverse: bool) {
        if reverse {
            self.queue.make_contiguous().reverse();
        }
        self.paused = false;
        self.wake.notify_one();
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn next(&mut self) -> Option<(String, WebhookTarget)> {
        if self.paused {
            return None;
        }
        let target = self.target.clone()?;
        let id = self.queue.pop_front()?;
        Some((id, target))
    }

    pub fn record(&mut self, record: DeliveryRecord) {
        self.log.push(record);
    }

    pub fn log_json(&self) -> Value {
        Value::Array(
            self.log
                .iter()
                .map(|d| {
                    json!({
                        "eventId": d.event_id,
                        "type": d.event_type,
                        "status": d.status,
                        "error": d.error,
                        "redelivery": d.redelivery,
                        "at": d.at
                    })
                })
                .collect(),
        )
    }
}

/// The body Stripe would send for an event: its JSON, pretty-printed as Stripe's are (the
/// signature covers these exact bytes, so a receiver must verify the raw body).
pub(crate) fn event_body(event: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(event).unwrap_or_default()
}

/// What one delivery got: the endpoint's status, or why there was none.
pub(crate) type Outcome = (Option<u16>, Option<String>);

/// POSTs one signed event.
pub(crate) async fn post_event(
    client: &reqwest::Client,
    target: &WebhookTarget,
    body: Vec<u8>,
) -> Outcome {
    let header = signature_header(&body, &target.secret, now());
    let sent = client
        .post(&target.url)
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", header)
        .header("user-agent", "Stripe/1.0")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the answer so the connection can be reused.
            let _ = response.bytes().await;
            (Some(status), None)
        }
        // Only the kind of failure: the error's text can carry the URL, which is fine to show,
        // but never anything from the request.
        Err(e) if e.is_timeout() => (None, Some("timed out".to_owned())),
        Err(e) if e.is_connect() => (None, Some("connection refused".to_owned())),
        Err(_) => (None, Some("request failed".to_owned())),
    }
}

/// The client deliveries use: a bounded wait, no redirects (Stripe does not follow them).
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// Sends queued events in order until `stop`.
pub(crate) async fn run(double: Arc<Double>, stop: CancellationToken) {
    loop {
        let next = {
            let mut store = double.lock();
            store.outbox.next().and_then(|(id, target)| {
                let event = store.event(&id)?;
                Some((id, event.kind.clone(), event_body(&event.json()), target))
            })
        };
        let Some((id, kind, body, target)) = next else {
            tokio::select! {
                _ = double.wake.notified() => continue,
                _ = stop.cancelled() => return,
            }
        };
        let (status, error) = tokio::select! {
            sent = post_event(&double.http, &target, body) => sent,
            _ = stop.cancelled() => return,
        };
        tracing::info!(event = %id, kind = %kind, status = ?status, "webhook delivered");
        let mut store = double.lock();
        if status.is_some_and(|s| (200..300).contains(&s)) {
            store.mark_delivered(&id);
        }
        store.outbox.record(DeliveryRecord {
            event_id: id,
            event_type: kind,
            status,
            error,
            redelivery: false,
            at: now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body_in_lowercase_hex() {
        // RFC 4231 does not cover this message; the value was computed independently with
        // `printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test`.
        let header = signature_header(br#"{"id":"evt_1"}"#, "whsec_test", 1_700_000_000);
        assert_eq!(
            header,
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let target = WebhookTarget {
            url: "http://127.0.0.1:1/hook".into(),
            secret: "whsec_topsecret".into(),
        };
        assert!(!format!("{target:?}").contains("topsecret"));
    }
}
