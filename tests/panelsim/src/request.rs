//! One API request, read fully into memory with its parameters decoded.
//!
//! Panels take parameters from the query string and from the body in several encodings:
//! WHM and DirectAdmin use form bodies (DirectAdmin clients even send them labelled
//! `application/json`), DirectAdmin also accepts a JSON object and multipart uploads, Plesk REST
//! takes JSON and the Plesk XML API takes XML. Parameters are gathered leniently here; each
//! panel module reads what its real counterpart reads.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::reply;

const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// A file part of a multipart body.
#[derive(Debug, Clone)]
pub(crate) struct UploadedFile {
    pub field: String,
    pub filename: Option<String>,
    pub content: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Query parameters, then body parameters, in order.
    pub params: Vec<(String, String)>,
    pub files: Vec<UploadedFile>,
    form_body: bool,
}

impl ApiRequest {
    pub(crate) async fn read(request: axum::extract::Request) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(Body::new(body), BODY_LIMIT)
            .await
            .map_err(|_| {
                reply::text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain; charset=utf-8",
                    "request body too large\n".to_owned(),
                )
            })?;
        let query = parts.uri.query().unwrap_or("").to_owned();
        let mut params = parse_form(query.as_bytes());
        let mut files = Vec::new();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let trimmed = body.trim_ascii_start();
        let mut form_body = false;
        if let Some(boundary) = multipart_boundary(&content_type) {
            for part in parse_multipart(&body, &boundary) {
                match part.filename {
                    Some(_) => files.push(part),
                    None => params.push((
                        part.field,
                        String::from_utf8_lossy(&part.content).into_owned(),
                    )),
                }
            }
        } else if trimmed.starts_with(b"{") {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&body) {
                for (key, value) in map {
                    let value = match value {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    params.push((key, value));
                }
            }
        } else if !trimmed.is_empty() && !trimmed.starts_with(b"<") {
            form_body = true;
            params.extend(parse_form(&body));
        }
        Ok(ApiRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query,
            headers: parts.headers,
            body,
            params,
            files,
            form_body,
        })
    }

    /// The last value of a parameter (body wins over query).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter, trimmed, `None` when absent or blank.
    pub(crate) fn arg(&self, name: &str) -> Option<&str> {
        self.param(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A checkbox-style flag: `1`, `yes`, `on`, `true` (any case).
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.param(name).is_some_and(is_truthy)
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// What scripted faults match against: path, query and a form body.
    pub(crate) fn fault_target(&self) -> String {
        let mut target = format!("{}?{}", self.path, self.query);
        if self.form_body {
            target.push('&');
            target.push_str(&String::from_utf8_lossy(&self.body));
        }
        target
    }

    pub(crate) fn json_body<T: DeserializeOwned>(&self) -> Result<T, String> {
        if self.body.trim_ascii().is_empty() {
            return serde_json::from_str("{}").map_err(|e| e.to_string());
        }
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }
}

pub(crate) fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "yes" | "on" | "true" | "y"
    )
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
pub(crate) fn parse_form(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            (form_decode(key), form_decode(value))
        })
        .collect()
}

fn form_decode(raw: &[u8]) -> String {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    content_type.split(';').map(str::trim).find_map(|piece| {
        let (key, value) = piece.split_once('=')?;
        key.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_owned())
    })
}

/// A small multipart/form-data reader: enough for file uploads of ACME tokens and the like.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<UploadedFile> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut sections = split_on(body, &delimiter).into_iter().skip(1);
    for section in sections.by_ref() {
        if section.starts_with(b"--") {
            break;
        }
        let section = section.strip_prefix(b"\r\n").unwrap_or(section);
        let Some(split) = find(section, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&section[..split]);
        let mut content = &section[split + 4..];
        content = content.strip_suffix(b"\r\n").unwrap_or(content);
        let mut field = None;
        let mut filename = None;
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if !lower.starts_with("content-disposition:") {
                continue;
            }
            for attr in line.split(';').map(str::trim) {
                if let Some(v) = attr.strip_prefix("name=") {
                    field = Some(v.trim_matches('"').to_owned());
                } else if let Some(v) = attr.strip_prefix("filename=") {
                    filename = Some(v.trim_matches('"').to_owned());
                }
            }
        }
        if let Some(field) = field {
            parts.push(UploadedFile {
                field,
                filename,
                content: content.to_vec(),
            });
        }
    }
    parts
}

fn split_on<'a>(haystack: &'a [u8], needle: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = haystack;
    while let Some(i) = find(rest, needle) {
        out.push(&rest[..i]);
        rest = &rest[i + needle.len()..];
    }
    out.push(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encode a value for url-encoded responses (DirectAdmin) and query strings.
pub(crate) fn encode_component(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_plus_and_percent() {
        let parsed = parse_form(b"a=1+2&b=%E2%9C%93&c&list%5B%5D=x");
        assert_eq!(
            parsed,
            vec![
                ("a".into(), "1 2".into()),
                ("b".into(), "\u{2713}".into()),
                ("c".into(), String::new()),
                ("list[]".into(), "x".into())
            ]
        );
    }

    #[test]
    fn multipart_fields_and_files_are_separated() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"dir\"\r\n\r\n/domains/a.test/public_html\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"tok\"\r\nContent-Type: application/octet-stream\r\n\r\nkey.auth\r\n--XyZ--\r\n";
        let parts = parse_multipart(body, "XyZ");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].field, "dir");
        assert_eq!(parts[0].content, b"/domains/a.test/public_html");
        assert_eq!(parts[1].filename.as_deref(), Some("tok"));
        assert_eq!(parts[1].content, b"key.auth");
    }

    #[test]
    fn boundary_is_read_from_content_type() {
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"abc\""),
            Some("abc".to_owned())
        );
        assert_eq!(multipart_boundary("application/json"), None);
    }
}
