//! Stripe for end-to-end tests, as real processes on free loopback ports, each logging to the
//! test's directory and SIGKILLed when its handle drops:
//!
//! - [`StripeDouble`]: the workspace's `mpanel-stripedouble` (Checkout Sessions,
//!   `checkout.session.*`/`charge.*` events, Idempotency-Key, 402 `authentication_required`,
//!   scripted faults). Like the other workspace binaries it must be built first: nextest and
//!   `cargo build --workspace` build it, or `cargo build -p mpanel-stripedouble`.
//! - [`LocalStripe`]: the third-party fake from the PyPI package `localstripe` (customers,
//!   payment methods, PaymentIntents, invoices, subscriptions), run as a separate program and
//!   never linked; `scripts/test` installs it.
//!
//! [`sign_stripe_payload`] makes the `Stripe-Signature` header Stripe would send, so a test can
//! post crafted events to the controller's webhook.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Running, TestDir, command, free_port, http_client};

/// The secret key tests give Stripe clients (both fakes accept any `sk_...`).
pub const STRIPE_TEST_KEY: &str = "sk_test_mpanel_e2e";
/// The webhook signing secret tests configure.
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_mpanel_e2e";

/// The `Stripe-Signature` header value Stripe sends with `payload` signed by the endpoint
/// secret at `timestamp`: `t=<timestamp>,v1=<lowercase hex HMAC-SHA256(secret, "{t}.{payload}")>`.
pub fn sign_stripe_payload(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(payload);
    format!("t={timestamp},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// One `mpanel-stripedouble` process. Its state lives in memory: there is no restart.
#[derive(Debug)]
pub struct StripeDouble {
    /// `http://127.0.0.1:PORT`: the API base for a Stripe client (`STRIPE_API_BASE`).
    pub url: String,
    dir: TestDir,
    process: Running,
    client: reqwest::Client,
}

impl StripeDouble {
    /// Starts the double on a free port, sending events to `webhook_url` (signed with
    /// [`STRIPE_WEBHOOK_SECRET`]) when given, and waits until it answers.
    pub async fn start(dir: &TestDir, name: &str, webhook_url: Option<&str>) -> StripeDouble {
        let client = http_client();
        // A port taken between our probe and the child's bind: pick a new one, once.
        for attempt in 0..2 {
            let port = free_port();
            let (_, log) = dir.log(name);
            let mut cmd = command("mpanel-stripedouble", dir.path(), &log);
            cmd.args(["--listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "info");
            if let Some(url) = webhook_url {
                // The secret goes through the environment, not the process's arguments.
                cmd.args(["--webhook-url", url])
                    .env("MPANEL_STRIPEDOUBLE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET);
            }
            let mut process = Running::spawn(cmd, "mpanel-stripedouble");
            let url = format!("http://127.0.0.1:{port}");
            let up = answers(
                &client,
                &format!("{url}/__double/state"),
                None,
                &mut process,
            )
            .await;
            if up {
                return StripeDouble {
                    url,
                    dir: dir.clone(),
                    process,
                    client,
                };
            }
            eprintln!("{name}: did not come up (attempt {attempt}); retrying with a new port");
        }
        dir.fail(&format!("{name} (mpanel-stripedouble) did not start"))
    }

    /// `GET /__double/state`.
    pub async fn state(&self) -> Value {
        let r = self
            .client
            .get(format!("{}/__double/state", self.url))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            other => self.dir.fail(&format!("GET /__double/state: {other:?}")),
        }
    }

    /// `POST /__double/<path>` with a JSON body; fails the test unless it answers 2xx.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let path = path.trim_start_matches('/');
        let r = self
            .client
            .post(format!("{}/__double/{path}", self.url))
            .json(&body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                self.dir
                    .fail(&format!("POST /__double/{path} answered {status}: {text}"))
            }
            Err(e) => self.dir.fail(&format!("POST /__double/{path} failed: {e}")),
        }
    }

    /// The customer pays Checkout Session `id`: `outcome` `paid` (card `payment_method`, e.g.
    /// `pm_card_visa`) or `unpaid` (a delayed method). Answers the events made and the session.
    pub async fn complete_checkout(&self, id: &str, outcome: &str, payment_method: &str) -> Value {
        self.control(
            &format!("checkout/sessions/{id}/complete"),
            serde_json::json!({"outcome": outcome, "paymentMethod": payment_method}),
        )
        .await
    }

    /// Points webhook delivery at `url`, signed with [`STRIPE_WEBHOOK_SECRET`].
    pub async fn set_webhook(&self, url: &str) {
        self.control(
            "webhook",
            serde_json::json!({"url": url, "secret": STRIPE_WEBHOOK_SECRET}),
        )
        .await;
    }

    /// `POST /__double/faults` with one fault or an array of them.
    pub async fn script_faults(&self, faults: Value) {
        self.control("faults", faults).await;
    }

    /// `GET /__double/deliveries`: every webhook attempt and the status it got.
    pub async fn deliveries(&self) -> Value {
        let r = self
            .client
            .get(format!("{}/__double/deliveries", self.url))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            other => self
                .dir
                .fail(&format!("GET /__double/deliveries: {other:?}")),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }
}

/// One `localstripe --from-scratch` process (PyPI package `localstripe`). It listens on every
/// address; tests reach it on 127.0.0.1. It writes its state to `/tmp/localstripe.pickle` as
/// it goes, which `--from-scratch` never reads back, so parallel instances do not share state.
#[derive(Debug)]
pub struct LocalStripe {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    dir: TestDir,
    process: Running,
    client: reqwest::Client,
}

impl LocalStripe {
    /// Starts localstripe on a free port and waits until its API answers. Fails saying how to
    /// install it when the `localstripe` command is missing.
    pub async fn start(dir: &TestDir, name: &str) -> LocalStripe {
        let installed = Command::new("localstripe")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(installed, Ok(s) if s.success()) {
            dir.fail(
                "`localstripe` cannot be run: install the PyPI package with \
                 `python3 -m pip install localstripe` (scripts/test does)",
            );
        }
        let client = http_client();
        for attempt in 0..2 {
            let port = free_port();
            let (_, log) = dir.log(name);
            // Not `command`: localstripe is not a workspace binary, and its Python needs the
            // caller's environment (PATH, HOME) to start.
            let mut cmd = Command::new("localstripe");
            cmd.args(["--port", &port.to_string(), "--from-scratch"])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log);
            let mut process = Running::spawn(cmd, "localstripe");
            let url = format!("http://127.0.0.1:{port}");
            let up = answers(
                &client,
                &format!("{url}/v1/customers"),
                Some(STRIPE_TEST_KEY),
                &mut process,
            )
            .await;
            if up {
                return LocalStripe {
                    url,
                    dir: dir.clone(),
                    process,
                    client,
                };
            }
            eprintln!("{name}: did not come up (attempt {attempt}); retrying with a new port");
        }
        dir.fail(&format!("{name} (localstripe) did not start"))
    }

    /// Registers webhook endpoint `id` (`POST /_config/webhooks/<id>`): every event is POSTed
    /// to `url` about a second after it happens, signed with [`STRIPE_WEBHOOK_SECRET`].
    pub async fn set_webhook(&self, id: &str, url: &str) {
        let r = self
            .client
            .post(format!("{}/_config/webhooks/{id}", self.url))
            .form(&[("url", url), ("secret", STRIPE_WEBHOOK_SECRET)])
            .send()
            .await;
        if !matches!(&r, Ok(r) if r.status().is_success()) {
            self.dir
                .fail(&format!("localstripe POST /_config/webhooks/{id}: {r:?}"));
        }
    }

    /// Forgets every object (`DELETE /_config/data`).
    pub async fn reset(&self) {
        let r = self
            .client
            .delete(format!("{}/_config/data", self.url))
            .send()
            .await;
        if !matches!(&r, Ok(r) if r.status().is_success()) {
            self.dir
                .fail(&format!("localstripe DELETE /_config/data: {r:?}"));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

/// Polls `url` until it answers 2xx (true), the process exits, or 20 s pass (false).
async fn answers(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    process: &mut Running,
) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if process.exited().is_some() {
            return false;
        }
        let mut request = client.get(url).timeout(Duration::from_secs(2));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if matches!(request.send().await, Ok(r) if r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    process.kill9();
    false
}

#[cfg(test)]
mod tests {
    use super::sign_stripe_payload;

    #[test]
    fn the_header_is_the_hmac_of_timestamp_dot_payload() {
        // Computed independently: printf '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign_stripe_payload(br#"{"id":"evt_1"}"#, "whsec_test", 1_700_000_000),
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }
}
