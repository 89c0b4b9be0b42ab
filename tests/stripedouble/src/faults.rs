//! Scripted faults (`POST /__double/faults`): for a path and optionally a method, answer the
//! next N matching requests with a 429 (Stripe's rate limiter, before anything else, never
//! saved under an Idempotency-Key) or a 5xx `api_error` (before the endpoint does anything;
//! saved under the key like any 5xx), or do the work and then wait before answering (a client
//! that gives up meanwhile leaves a payment made on Stripe's side that it never recorded).

use axum::http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorType};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FaultSpec {
    /// `/v1/payment_intents`, or a prefix ending in `*` (`/v1/payment_intents*`).
    pub path: String,
    pub method: Option<String>,
    pub status: Option<u16>,
    pub delay_ms: Option<u64>,
    pub times: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Fail(StatusCode),
    Delay(u64),
}

#[derive(Debug, Clone)]
struct Fault {
    path: String,
    method: Option<Method>,
    action: Action,
    remaining: u32,
}

/// When a fault is looked for during a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// First of all: only 429s.
    RateLimiter,
    /// About to run the endpoint: 5xx and delays.
    Endpoint,
    /// About to replay a saved answer: only delays.
    Replay,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pending: Vec<Fault>,
}

impl FaultSpec {
    fn validate(self) -> Result<Fault, String> {
        if !self.path.starts_with('/') {
            return Err("path must start with /".into());
        }
        let method = match self.method.as_deref() {
            None => None,
            Some(m) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("method {m} is not an HTTP method"))?,
            ),
        };
        let action = match (self.status, self.delay_ms) {
            (Some(status), None) if status == 429 || (500..600).contains(&status) => {
                Action::Fail(StatusCode::from_u16(status).map_err(|e| e.to_string())?)
            }
            (Some(status), None) => {
                return Err(format!("status must be 429 or 5xx, not {status}"));
            }
            (None, Some(ms)) if ms <= 600_000 => Action::Delay(ms),
            (None, Some(_)) => return Err("delayMs must be at most 600000".into()),
            _ => return Err("give exactly one of status or delayMs".into()),
        };
        Ok(Fault {
            path: self.path,
            method,
            action,
            remaining: self.times.unwrap_or(1).max(1),
        })
    }
}

impl Faults {
    pub fn add(&mut self, specs: Vec<FaultSpec>) -> Result<(), String> {
        let faults = specs
            .into_iter()
            .map(FaultSpec::validate)
            .collect::<Result<Vec<_>, _>>()?;
        self.pending.extend(faults);
        Ok(())
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Uses up one of the first fault that matches the request and applies at `stage`.
    pub fn take(&mut self, method: &Method, path: &str, stage: Stage) -> Option<Action> {
        let i = self.pending.iter().position(|f| {
            let path_matches = match f.path.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == f.path,
            };
            let applies = match (stage, f.action) {
                (Stage::RateLimiter, Action::Fail(s)) => s == StatusCode::TOO_MANY_REQUESTS,
                (Stage::Endpoint, Action::Fail(s)) => s != StatusCode::TOO_MANY_REQUESTS,
                (Stage::Endpoint | Stage::Replay, Action::Delay(_)) => true,
                _ => false,
            };
            path_matches && applies && f.method.as_ref().is_none_or(|m| m == method)
        })?;
        let fault = &mut self.pending[i];
        fault.remaining -= 1;
        let action = fault.action;
        if fault.remaining == 0 {
            self.pending.remove(i);
        }
        Some(action)
    }

    pub fn json(&self) -> Value {
        Value::Array(
            self.pending
                .iter()
                .map(|f| {
                    let (status, delay) = match f.action {
                        Action::Fail(s) => (Some(s.as_u16()), None),
                        Action::Delay(ms) => (None, Some(ms)),
                    };
                    json!({
                        "path": f.path,
                        "method": f.method.as_ref().map(Method::as_str),
                        "status": status,
                        "delayMs": delay,
                        "times": f.remaining
                    })
                })
                .collect(),
        )
    }
}

/// The error a scripted failure answers with: Stripe's 429 `rate_limit`, or a 5xx `api_error`.
pub(crate) fn failure(status: StatusCode) -> ApiError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        ApiError::new(
            status,
            ErrorType::InvalidRequest,
            "Too many requests hit the API too quickly. We recommend an exponential backoff of \
             your requests.",
        )
        .with_code("rate_limit")
    } else {
        ApiError::new(
            status,
            ErrorType::Api,
            "An unknown error occurred. Please try again later.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, status: Option<u16>, delay: Option<u64>, times: u32) -> FaultSpec {
        FaultSpec {
            path: path.into(),
            method: Some("POST".into()),
            status,
            delay_ms: delay,
            times: Some(times),
        }
    }

    #[test]
    fn faults_are_used_up_and_only_at_their_stage() {
        let mut faults = Faults::default();
        faults
            .add(vec![
                spec("/v1/payment_intents", Some(429), None, 1),
                spec("/v1/refunds*", Some(500), None, 2),
            ])
            .expect("valid");
        let post = Method::POST;
        assert_eq!(
            faults.take(&post, "/v1/payment_intents", Stage::Endpoint),
            None
        );
        assert_eq!(
            faults.take(&Method::GET, "/v1/payment_intents", Stage::RateLimiter),
            None
        );
        assert_eq!(
            faults.take(&post, "/v1/payment_intents", Stage::RateLimiter),
            Some(Action::Fail(StatusCode::TOO_MANY_REQUESTS))
        );
        assert_eq!(
            faults.take(&post, "/v1/payment_intents", Stage::RateLimiter),
            None
        );
        for _ in 0..2 {
            assert_eq!(
                faults.take(&post, "/v1/refunds", Stage::Endpoint),
                Some(Action::Fail(StatusCode::INTERNAL_SERVER_ERROR))
            );
        }
        assert_eq!(faults.take(&post, "/v1/refunds", Stage::Endpoint), None);
    }

    #[test]
    fn a_fault_needs_exactly_one_effect() {
        let mut faults = Faults::default();
        assert!(
            faults
                .add(vec![spec("/v1/x", Some(500), Some(1), 1)])
                .is_err()
        );
        assert!(faults.add(vec![spec("/v1/x", None, None, 1)]).is_err());
        assert!(faults.add(vec![spec("/v1/x", Some(404), None, 1)]).is_err());
    }
}
