//! `Idempotency-Key` on POSTs, as Stripe documents it: the status and body of the first
//! request that ran are saved under its key and replayed for later requests with the same key
//! (`Idempotent-Replayed: true`); the same key on another endpoint or with other parameters is
//! an `idempotency_error`; a request refused before it ran (validation: other 4xx) saves
//! nothing, so it can be retried with the key; while a request runs, another with its key gets
//! 409 `idempotency_key_in_use`. Every POST with a key is counted, replays included.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorType};

/// Stripe's limit on a key's length.
pub(crate) const MAX_KEY_LEN: usize = 255;

#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// `POST /v1/payment_intents`
    pub endpoint: String,
    pub params: Value,
    pub status: StatusCode,
    pub body: Bytes,
    pub request_id: String,
}

#[derive(Debug, Default)]
struct Entry {
    posts: u32,
    in_flight: bool,
    stored: Option<Stored>,
}

#[derive(Debug, Default)]
pub(crate) struct Keys {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug)]
pub(crate) enum Begin {
    /// Run the request; call `finish` afterwards.
    Proceed,
    Replay(Stored),
    Refused(ApiError),
}

/// Whether a response means the endpoint ran (saved) or the request was refused first (not).
pub(crate) fn is_saved(status: StatusCode) -> bool {
    status.is_success() || status == StatusCode::PAYMENT_REQUIRED || status.is_server_error()
}

impl Keys {
    pub fn begin(&mut self, key: &str, endpoint: &str, params: &Value) -> Begin {
        let entry = self.entries.entry(key.to_owned()).or_default();
        entry.posts += 1;
        if let Some(stored) = &entry.stored {
            if stored.endpoint != endpoint {
                let first = stored.endpoint.split_once(' ').map_or("", |(_, p)| p);
                let now = endpoint.split_once(' ').map_or("", |(_, p)| p);
                return Begin::Refused(mismatch(format!(
                    "Keys for idempotent requests can only be used for the same endpoint they \
                     were first used for ('{first}' vs '{now}'). Try using a key other than \
                     '{key}' if you meant to execute a different request."
                )));
            }
            if stored.params != *params {
                return Begin::Refused(mismatch(format!(
                    "Keys for idempotent requests can only be used with the same parameters \
                     they were first used with. Try using a key other than '{key}' if you meant \
                     to execute a different request."
                )));
            }
            return Begin::Replay(stored.clone());
        }
        if entry.in_flight {
            return Begin::Refused(
                ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorType::Idempotency,
                    format!(
                        "There is currently another in-progress request using this Idempotent \
                         Key (that probably means you submitted twice, and the other request is \
                         still going through): {key}. Please try again later."
                    ),
                )
                .with_code("idempotency_key_in_use"),
            );
        }
        entry.in_flight = true;
        Begin::Proceed
    }

    /// Ends the request `begin` let through, saving its answer if it ran.
    pub fn finish(&mut self, key: &str, answer: Option<Stored>) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.in_flight = false;
            if let Some(stored) = answer.filter(|s| is_saved(s.status)) {
                entry.stored = Some(stored);
            }
        }
    }

    /// `{key: {posts, endpoint, status, requestId}}` for the state document.
    pub fn json(&self) -> Value {
        Value::Object(
            self.entries
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        json!({
                            "posts": e.posts,
                            "endpoint": e.stored.as_ref().map(|s| &s.endpoint),
                            "status": e.stored.as_ref().map(|s| s.status.as_u16()),
                            "requestId": e.stored.as_ref().map(|s| &s.request_id),
                        }),
                    )
                })
                .collect(),
        )
    }

    #[cfg(test)]
    pub fn posts(&self, key: &str) -> u32 {
        self.entries.get(key).map_or(0, |e| e.posts)
    }
}

fn mismatch(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorType::Idempotency, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(status: StatusCode, params: Value) -> Stored {
        Stored {
            endpoint: "POST /v1/customers".into(),
            params,
            status,
            body: Bytes::from_static(b"{}"),
            request_id: "req_1".into(),
        }
    }

    #[test]
    fn a_refused_request_saves_nothing_and_frees_the_key() {
        let mut keys = Keys::default();
        let p = json!({"email": "a@example.com"});
        assert!(matches!(
            keys.begin("k", "POST /v1/customers", &p),
            Begin::Proceed
        ));
        keys.finish("k", Some(stored(StatusCode::BAD_REQUEST, p.clone())));
        let other = json!({"email": "b@example.com"});
        assert!(matches!(
            keys.begin("k", "POST /v1/customers", &other),
            Begin::Proceed
        ));
        keys.finish("k", Some(stored(StatusCode::OK, other.clone())));
        assert!(matches!(
            keys.begin("k", "POST /v1/customers", &other),
            Begin::Replay(_)
        ));
        assert!(matches!(
            keys.begin("k", "POST /v1/customers", &p),
            Begin::Refused(_)
        ));
        assert_eq!(keys.posts("k"), 4);
    }

    #[test]
    fn a_key_in_use_is_refused_with_409() {
        let mut keys = Keys::default();
        let p = json!({});
        assert!(matches!(
            keys.begin("k", "POST /v1/customers", &p),
            Begin::Proceed
        ));
        match keys.begin("k", "POST /v1/customers", &p) {
            Begin::Refused(e) => assert_eq!(e.status, StatusCode::CONFLICT),
            other => panic!("expected 409, got {other:?}"),
        }
    }
}
