//! Shared by the double's tests: a double started in-process on a free port, a Stripe-style
//! client (form bodies, a secret key), and a webhook receiver that records what arrives and
//! checks signatures on its own, without the double's signing code.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use mpanel_stripedouble::{DoubleConfig, DoubleHandle};
use serde_json::Value;

pub const KEY: &str = "sk_test_double_suite";
pub const WHSEC: &str = "whsec_suite_secret";

pub struct Harness {
    pub double: DoubleHandle,
    pub base: String,
    pub http: reqwest::Client,
}

pub async fn start() -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let double = mpanel_stripedouble::start(DoubleConfig::default(), listener)
        .await
        .expect("double starts");
    Harness {
        base: double.base_url(),
        double,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
    }
}

/// An answer: status, headers, JSON body.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Harness {
    pub async fn post(&self, path: &str, form: &[(&str, &str)], key: Option<&str>) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .form(form);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        answer(request.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY);
        answer(request.send().await.expect("request")).await
    }

    /// A test-control call (JSON in, JSON out).
    pub async fn control(&self, path: &str, body: Value) -> Answer {
        let request = self.http.post(format!("{}{path}", self.base)).json(&body);
        answer(request.send().await.expect("request")).await
    }

    pub async fn state(&self) -> Value {
        self.http
            .get(format!("{}/__double/state", self.base))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("state JSON")
    }

    pub async fn pending_faults(&self) -> Value {
        let v: Value = self
            .http
            .get(format!("{}/__double/faults", self.base))
            .send()
            .await
            .expect("faults")
            .json()
            .await
            .expect("faults JSON");
        v["pending"].clone()
    }

    pub async fn customer(&self, email: &str) -> String {
        let a = self.post("/v1/customers", &[("email", email)], None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["id"].as_str().expect("id").to_owned()
    }

    /// A one-item payment-mode session for `amount` EUR cents.
    pub async fn session(&self, amount: i64, extra: &[(&str, &str)]) -> Value {
        let amount = amount.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", "eur"),
            ("line_items[0][price_data][unit_amount]", &amount),
            ("line_items[0][price_data][product_data][name]", "Hosting"),
            ("line_items[0][quantity]", "1"),
            (
                "success_url",
                "https://shop.example/ok?session_id={CHECKOUT_SESSION_ID}",
            ),
        ];
        form.extend_from_slice(extra);
        let a = self.post("/v1/checkout/sessions", &form, None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// What the receiver got: the signature header and the raw body.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: Option<String>,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("event JSON")
    }
}

#[derive(Clone)]
struct Inbox {
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<std::sync::atomic::AtomicU16>,
}

pub struct Receiver {
    pub url: String,
    inbox: Inbox,
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    inbox.received.lock().expect("inbox").push(Received {
        signature: headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    });
    StatusCode::from_u16(inbox.answer.load(std::sync::atomic::Ordering::SeqCst))
        .unwrap_or(StatusCode::OK)
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inbox = Inbox {
            received: Arc::default(),
            answer: Arc::new(std::sync::atomic::AtomicU16::new(200)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/stripe/webhook",
            listener.local_addr().expect("addr")
        );
        let app = Router::new()
            .route("/stripe/webhook", post(receive))
            .with_state(inbox.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, inbox }
    }

    pub fn answer_with(&self, status: u16) {
        self.inbox
            .answer
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inbox.received.lock().expect("inbox").clone()
    }

    /// Waits until at least `n` deliveries arrived (5 s at most).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} deliveries arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks a `Stripe-Signature` header the way Stripe's libraries do: split on `,` then on the
/// first `=`, keep `t` and every `v1`, recompute HMAC-SHA256(secret, "{t}.{body}") over the raw
/// body, compare in constant time, and require `t` within 300 s of now.
pub fn signature_is_valid(header: &str, body: &[u8], secret: &str) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    if (now - t).abs() > 300 {
        return false;
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    signatures
        .iter()
        .any(|sig| aws_lc_rs::hmac::verify(&key, &message, sig).is_ok())
}
