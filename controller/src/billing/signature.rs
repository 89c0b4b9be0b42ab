//! Stripe webhook signatures: checking the `Stripe-Signature` header of a delivery against the
//! endpoint secrets, and producing such a header for tests and benchmarks.
//!
//! The rules are those of Stripe's official libraries: the header is `t=<unix seconds>` plus one
//! or more `v1=<hex>` (several while a secret is being rolled), the signature is the lowercase
//! hex HMAC-SHA256 of `"{t}."` followed by the raw body, keyed with the whole `whsec_…` string,
//! and any `v1` matching under any configured secret, compared in constant time, is enough. The
//! timestamp must lie within the tolerance on either side of now, which bounds replays.
//!
//! It does not own what happens to an event once verified (deduplication, processing), nor
//! reading the header from a request.

use std::fmt;

use aws_lc_rs::{constant_time, hmac};
use mpanel_common::Secret;

/// The tolerance of Stripe's official libraries, in seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a delivery's signature was refused. Each is answered with HTTP 400; the messages name no
/// secret and echo nothing of the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no Stripe-Signature header")]
    MissingHeader,
    #[error("the Stripe-Signature header is invalid: {0}")]
    InvalidHeader(&'static str),
    #[error("the Stripe-Signature timestamp is outside the tolerance")]
    TimestampOutsideTolerance,
    #[error("no signature in the Stripe-Signature header matches the body")]
    NoMatchingSignature,
}

impl SignatureError {
    /// A stable code for API error bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader => "signature_missing",
            Self::InvalidHeader(_) => "signature_invalid",
            Self::TimestampOutsideTolerance => "signature_timestamp",
            Self::NoMatchingSignature => "signature_mismatch",
        }
    }
}

/// `STRIPE_WEBHOOK_SECRET` held no secret once split on commas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("STRIPE_WEBHOOK_SECRET holds no secret (expected whsec_… values separated by commas)")]
pub struct NoWebhookSecret;

/// The endpoint secrets a delivery may be signed with. More than one while a secret is being
/// rolled: Stripe signs with the old and the new one for a while, and either is accepted.
#[derive(Clone)]
pub struct WebhookSecrets(Vec<Secret<String>>);

impl WebhookSecrets {
    /// Parses a comma-separated list (`STRIPE_WEBHOOK_SECRET`): items are trimmed and empty
    /// ones skipped; at least one must remain.
    pub fn parse(list: &str) -> Result<Self, NoWebhookSecret> {
        let secrets: Vec<Secret<String>> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Secret::new(s.to_owned()))
            .collect();
        if secrets.is_empty() {
            Err(NoWebhookSecret)
        } else {
            Ok(Self(secrets))
        }
    }

    /// [`WebhookSecrets::parse`] of a configured value.
    pub fn from_secret(list: &Secret<String>) -> Result<Self, NoWebhookSecret> {
        Self::parse(list.expose())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("count", &self.0.len())
            .finish()
    }
}

/// Checks a delivery: `header` is the `Stripe-Signature` value, `body` the request body exactly
/// as received. Answers the signed timestamp `t`.
///
/// The signature is checked before the timestamp, as Stripe's libraries do, so a request that
/// is not signed by us learns nothing about the clock.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &WebhookSecrets,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let header = match header.map(str::trim) {
        None | Some("") => return Err(SignatureError::MissingHeader),
        Some(h) => h,
    };
    let parsed = parse_header(header)?;
    let matched = secrets.0.iter().any(|secret| {
        let expected = expected_signature(secret.expose().as_bytes(), parsed.timestamp, body);
        parsed.signatures.iter().any(|given| {
            // Lengths are public (always 64 for a real signature); the contents are compared in
            // constant time.
            constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes()).is_ok()
        })
    });
    if !matched {
        return Err(SignatureError::NoMatchingSignature);
    }
    let age = i128::from(now_secs) - i128::from(parsed.timestamp);
    if age.abs() > i128::from(tolerance_secs) {
        return Err(SignatureError::TimestampOutsideTolerance);
    }
    Ok(parsed.timestamp)
}

/// A full `Stripe-Signature` value for `body` signed with `secret` at `t`, as Stripe sends it.
pub fn sign(body: &[u8], secret: &str, t: i64) -> String {
    format!(
        "t={t},v1={}",
        expected_signature(secret.as_bytes(), t, body)
    )
}

struct ParsedHeader<'a> {
    timestamp: i64,
    signatures: Vec<&'a str>,
}

/// Splits on `,`, then each item on its first `=`; keeps `t` and every `v1`, ignores other
/// schemes (`v0` is Stripe's test-mode scheme and not a signature we accept).
fn parse_header(header: &str) -> Result<ParsedHeader<'_>, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(SignatureError::InvalidHeader("an item has no '='"));
        };
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::InvalidHeader("more than one timestamp"));
                }
                let t = value.trim().parse::<i64>().map_err(|_| {
                    SignatureError::InvalidHeader("the timestamp is not an integer")
                })?;
                timestamp = Some(t);
            }
            "v1" => signatures.push(value.trim()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::InvalidHeader("no timestamp"))?;
    if signatures.is_empty() {
        return Err(SignatureError::InvalidHeader("no v1 signature"));
    }
    Ok(ParsedHeader {
        timestamp,
        signatures,
    })
}

/// Lowercase hex of HMAC-SHA256(secret, "{t}." + body).
fn expected_signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(t.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    hex::encode(context.sign().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_700_000_000;

    fn secrets(list: &str) -> WebhookSecrets {
        WebhookSecrets::parse(list).unwrap()
    }

    fn check(
        header: Option<&str>,
        body: &[u8],
        list: &str,
        now: i64,
    ) -> Result<i64, SignatureError> {
        verify(header, body, &secrets(list), now, DEFAULT_TOLERANCE_SECS)
    }

    #[test]
    fn signature_matches_a_vector_computed_with_openssl() {
        // printf '%s' '1700000000.{"id":"evt_1","type":"payment_intent.succeeded"}' \
        //   | openssl dgst -sha256 -hmac 'whsec_test_secret'
        let expected = "22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31";
        assert_eq!(sign(BODY, SECRET, NOW), format!("t={NOW},v1={expected}"));
        let header = format!("t={NOW},v1={expected}");
        assert_eq!(check(Some(&header), BODY, SECRET, NOW), Ok(NOW));
    }

    #[test]
    fn a_header_signed_with_the_secret_is_accepted() {
        let header = sign(BODY, SECRET, NOW - 10);
        assert_eq!(check(Some(&header), BODY, SECRET, NOW), Ok(NOW - 10));
    }

    #[test]
    fn no_header_or_an_empty_one_is_missing() {
        assert_eq!(
            check(None, BODY, SECRET, NOW),
            Err(SignatureError::MissingHeader)
        );
        assert_eq!(
            check(Some("  "), BODY, SECRET, NOW),
            Err(SignatureError::MissingHeader)
        );
        assert_eq!(SignatureError::MissingHeader.code(), "signature_missing");
    }

    #[test]
    fn malformed_headers_are_invalid() {
        let good = sign(BODY, SECRET, NOW);
        let v1 = good.split_once(",v1=").unwrap().1;
        for header in [
            "garbage".to_owned(),
            format!("v1={v1}"),
            format!("t=abc,v1={v1}"),
            format!("t={NOW}"),
            format!("t={NOW},v0={v1}"),
            format!("t={NOW},t={NOW},v1={v1}"),
        ] {
            let err = check(Some(&header), BODY, SECRET, NOW).unwrap_err();
            assert!(
                matches!(err, SignatureError::InvalidHeader(_)),
                "{header}: {err:?}"
            );
            assert_eq!(err.code(), "signature_invalid");
        }
    }

    #[test]
    fn other_schemes_are_ignored_beside_a_matching_v1() {
        let good = sign(BODY, SECRET, NOW);
        let header =
            format!("{good},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_eq!(check(Some(&header), BODY, SECRET, NOW), Ok(NOW));
    }

    #[test]
    fn a_signature_made_with_another_secret_does_not_match() {
        let header = sign(BODY, "whsec_someone_else", NOW);
        let err = check(Some(&header), BODY, SECRET, NOW).unwrap_err();
        assert_eq!(err, SignatureError::NoMatchingSignature);
        assert_eq!(err.code(), "signature_mismatch");
    }

    #[test]
    fn one_changed_byte_of_the_body_does_not_match() {
        let header = sign(BODY, SECRET, NOW);
        let mut body = BODY.to_vec();
        let last = body.len() - 2;
        body[last] ^= 0x01;
        assert_eq!(
            check(Some(&header), &body, SECRET, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn an_uppercase_signature_does_not_match() {
        // Stripe sends lowercase and its libraries compare the strings.
        let header = sign(BODY, SECRET, NOW)
            .to_uppercase()
            .replace("T=", "t=")
            .replace("V1=", "v1=");
        assert_eq!(
            check(Some(&header), BODY, SECRET, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamps_more_than_the_tolerance_away_are_refused_both_ways() {
        for t in [NOW - 301, NOW + 301] {
            let header = sign(BODY, SECRET, t);
            let err = check(Some(&header), BODY, SECRET, NOW).unwrap_err();
            assert_eq!(err, SignatureError::TimestampOutsideTolerance, "t = {t}");
            assert_eq!(err.code(), "signature_timestamp");
        }
        for t in [NOW - 300, NOW + 300] {
            let header = sign(BODY, SECRET, t);
            assert_eq!(check(Some(&header), BODY, SECRET, NOW), Ok(t));
        }
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let header = sign(BODY, SECRET, i64::MIN);
        assert_eq!(
            verify(
                Some(&header),
                BODY,
                &secrets(SECRET),
                i64::MAX,
                DEFAULT_TOLERANCE_SECS
            ),
            Err(SignatureError::TimestampOutsideTolerance)
        );
    }

    #[test]
    fn the_second_of_two_v1_signatures_may_be_the_one_that_matches() {
        let wrong = sign(BODY, "whsec_old", NOW);
        let wrong_v1 = wrong.split_once(",v1=").unwrap().1;
        let right = sign(BODY, SECRET, NOW);
        let right_v1 = right.split_once(",v1=").unwrap().1;
        let header = format!("t={NOW},v1={wrong_v1},v1={right_v1}");
        assert_eq!(check(Some(&header), BODY, SECRET, NOW), Ok(NOW));
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let list = " whsec_old , ,whsec_new ";
        assert_eq!(secrets(list).len(), 2);
        for secret in ["whsec_old", "whsec_new"] {
            let header = sign(BODY, secret, NOW);
            assert_eq!(check(Some(&header), BODY, list, NOW), Ok(NOW), "{secret}");
        }
        let header = sign(BODY, "whsec_other", NOW);
        assert_eq!(
            check(Some(&header), BODY, list, NOW),
            Err(SignatureError::NoMatchingSignature)
        );
    }

    #[test]
    fn a_list_without_any_secret_is_refused() {
        assert_eq!(WebhookSecrets::parse("").unwrap_err(), NoWebhookSecret);
        assert_eq!(WebhookSecrets::parse(" , ,").unwrap_err(), NoWebhookSecret);
    }

    #[test]
    fn debug_shows_no_secret() {
        let debug = format!("{:?}", secrets("whsec_old,whsec_new"));
        assert!(!debug.contains("whsec"), "{debug}");
        assert!(debug.contains('2'), "{debug}");
    }
}
