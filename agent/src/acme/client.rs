//! The HTTP client instant-acme talks through: reqwest (already the agent's client), trusting
//! the configured CA bundle when there is one, and remembering the `Retry-After` of the last
//! refused request. instant-acme turns a refusal into a `Problem` without its headers, so this
//! is where a rate limit's retry time survives.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::body::{Body as _, Bytes};
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};

/// A whole ACME request, connection included; the CA answering slower than this is retryable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub(super) struct AcmeHttp {
    client: reqwest::Client,
    last_retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl AcmeHttp {
    /// `ca_bundle_pem`: extra roots for a private or test CA (pebble); the system roots stay.
    pub(super) fn new(ca_bundle_pem: Option<&[u8]>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the CA bundle is not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("the CA bundle holds no certificate".to_owned());
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            last_retry_after: Arc::new(Mutex::new(None)),
        })
    }

    /// The `Retry-After` of the most recent refused request, forgotten once read.
    pub(super) fn take_retry_after(&self) -> Option<SystemTime> {
        self.last_retry_after
            .lock()
            .map(|mut slot| slot.take())
            .unwrap_or(None)
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(now + Duration::from_secs(secs));
    }
    httpdate(value)
}

/// `Fri, 31 Dec 1999 23:59:59 GMT` (IMF-fixdate, the only form servers may send; it is an
/// RFC 2822 date with the obsolete `GMT` zone).
fn httpdate(value: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
        .ok()
        .map(SystemTime::from)
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let client = self.client.clone();
        let last_retry_after = Arc::clone(&self.last_retry_after);
        Box::pin(async move {
            let (parts, mut body) = req.into_parts();
            // instant-acme's request bodies are one in-memory frame (or none).
            let mut bytes_out = Vec::new();
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                let Ok(frame) = frame;
                if let Ok(data) = frame.into_data() {
                    bytes_out.extend_from_slice(&data);
                }
            }
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(bytes_out)
                .send()
                .await
                .map_err(|e| Error::Other(Box::new(e)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| Error::Other(Box::new(e)))?;
            if status.is_client_error() || status.is_server_error() {
                let retry_after = headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                if let Ok(mut slot) = last_retry_after.lock() {
                    *slot = retry_after;
                }
            }
            let mut builder = hyper::Response::builder().status(status);
            if let Some(h) = builder.headers_mut() {
                *h = headers;
            }
            let response = builder
                .body(BodyWrapper::from(bytes.to_vec()))
                .map_err(Error::Http)?;
            Ok(BytesResponse::from(response))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse_retry_after("Thu, 29 Feb 2024 23:59:59 GMT", now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Sun, 31 Nov 1994 08:49:37 GMT", now),
            None
        );
    }
}
