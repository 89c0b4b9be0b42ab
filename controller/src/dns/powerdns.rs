//! A client for PowerDNS Authoritative's HTTP API (v1): create a zone, read it, and bring its
//! default rrsets to the wanted state with one `PATCH`.
//!
//! Idempotence is the point. PowerDNS bumps the SOA serial on every `PATCH` under
//! `SOA-EDIT-API`, even one that changes nothing, so the wanted rrsets are compared with the
//! zone first ([`rrset_changes`], pure) and only the ones that differ are sent; a zone already
//! in shape gets no `PATCH` at all and keeps its serial. Records a customer added beside ours
//! (another MX, a verification TXT) are kept; an SPF TXT is ours to replace, since a name may
//! hold only one (RFC 7208 §3.2).
//!
//! It does not own which servers use PowerDNS or what the default records are: see
//! [`super`] and [`mpanel_common::dns`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use mpanel_common::DomainName;
use mpanel_common::dns::{DefaultRecord, DefaultRecordType};
use mpanel_common::secret::Secret;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::config::PowerDnsConfig;

/// One API call's budget; PowerDNS answers in milliseconds unless its backend is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest piece of an error body echoed into a message (they reach task records and logs).
const MAX_ECHO_CHARS: usize = 300;

/// Why a PowerDNS call failed. [`PowerDnsError::is_retryable`] separates what another attempt
/// can fix (the server unreachable, slow or failing) from what it cannot (the key, the request).
#[derive(Debug, thiserror::Error)]
pub enum PowerDnsError {
    #[error("PowerDNS API at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("PowerDNS API refused the API key (HTTP {status}); check POWERDNS_API_KEY")]
    Unauthorized { status: u16 },
    #[error("PowerDNS API failed on {action} (HTTP {status}): {message}")]
    ServerError {
        action: &'static str,
        status: u16,
        message: String,
    },
    #[error("PowerDNS API rejected {action} (HTTP {status}): {message}")]
    Rejected {
        action: &'static str,
        status: u16,
        message: String,
    },
    #[error("PowerDNS API gave an unreadable answer to {action}: {message}")]
    Protocol {
        action: &'static str,
        message: String,
    },
    #[error("invalid PowerDNS configuration: {0}")]
    Config(String),
}

impl PowerDnsError {
    /// Connection failures, timeouts, 5xx (and 408/429) and garbled answers may pass; a refused
    /// key or a rejected request will be refused again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::ServerError { .. } | Self::Protocol { .. }
        )
    }

    /// The API key was refused (401/403).
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }
}

/// A zone as the API returns it (only the fields used here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Zone {
    /// The API's id, used in URLs: the canonical name for plain host names (`shop.example.`).
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub serial: u64,
    #[serde(default)]
    pub rrsets: Vec<RrSet>,
}

/// An rrset: every record of one name and type. `changetype` is set only in a `PATCH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RrSet {
    /// Canonical, with the trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default)]
    pub ttl: u32,
    #[serde(default)]
    pub records: Vec<RrRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changetype: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RrRecord {
    /// In zone-file presentation form: names with trailing dots, TXT quoted, MX `10 host.`.
    pub content: String,
    #[serde(default)]
    pub disabled: bool,
}

/// The default record set as PowerDNS rrsets: absolute names, one rrset per name and type
/// (in the order the set first names them), every record enabled with `ttl`.
pub fn default_rrsets(domain: &DomainName, records: &[DefaultRecord], ttl: u32) -> Vec<RrSet> {
    let mut rrsets: Vec<RrSet> = Vec::new();
    for record in records {
        let name = absolute_name(record.name, domain);
        let rtype = record.record_type.as_str();
        let content = match record.record_type {
            DefaultRecordType::A | DefaultRecordType::Aaaa => record.value.clone(),
            DefaultRecordType::Mx => format!(
                "{} {}",
                record.priority.unwrap_or(mpanel_common::dns::MX_PRIORITY),
                canonical(&record.value)
            ),
            DefaultRecordType::Txt => quote_txt(&record.value),
            DefaultRecordType::Ns => canonical(&record.value),
        };
        let entry = RrRecord {
            content,
            disabled: false,
        };
        match rrsets
            .iter_mut()
            .find(|r| r.name == name && r.rtype == rtype)
        {
            Some(rrset) => rrset.records.push(entry),
            None => rrsets.push(RrSet {
                name,
                rtype: rtype.to_owned(),
                ttl,
                records: vec![entry],
                changetype: None,
            }),
        }
    }
    rrsets
}

/// What must change in `zone` for it to hold `wanted`: each wanted rrset merged with what the
/// zone has under that name and type, returned (as a `REPLACE`) only when the merge differs
/// from the zone. Addresses and nameservers are ours alone; other MX records and non-SPF TXT
/// records are kept.
pub fn rrset_changes(zone: &[RrSet], wanted: &[RrSet]) -> Vec<RrSet> {
    let mut changes = Vec::new();
    for want in wanted {
        let current = zone
            .iter()
            .find(|r| same_name(&r.name, &want.name) && r.rtype.eq_ignore_ascii_case(&want.rtype));
        let mut merged = want.clone();
        if let Some(current) = current
            && matches!(want.rtype.as_str(), "MX" | "TXT")
        {
            let ours: BTreeSet<String> = want
                .records
                .iter()
                .map(|r| normalise(&want.rtype, &r.content))
                .collect();
            let replaced = |r: &&RrRecord| {
                ours.contains(&normalise(&want.rtype, &r.content))
                    || (want.rtype == "TXT" && is_spf(&r.content))
            };
            let kept = current.records.iter().filter(|r| !replaced(r));
            merged.records.extend(kept.cloned());
        }
        let unchanged = current.is_some_and(|c| c.ttl == merged.ttl && same_records(c, &merged));
        if !unchanged {
            merged.changetype = Some("REPLACE".to_owned());
            changes.push(merged);
        }
    }
    changes
}

/// The API client for one PowerDNS server (`{api_url}/api/v1/servers/{server_id}`).
#[derive(Debug, Clone)]
pub struct PowerDns {
    http: reqwest::Client,
    base: String,
    api_url: String,
    key: Secret<String>,
}

impl PowerDns {
    pub fn new(config: &PowerDnsConfig) -> Result<Self, PowerDnsError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // The API never redirects; following one would send the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mpanel-controller/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PowerDnsError::Config(format!("cannot build the HTTP client: {e}")))?;
        let api_url = config.api_url.trim_end_matches('/').to_owned();
        Ok(Self {
            http,
            base: format!("{api_url}/api/v1/servers/{}", config.server_id),
            api_url,
            key: config.api_key.clone(),
        })
    }

    /// Creates the zone (Native, `SOA-EDIT-API: DEFAULT`, NS from `nameservers`) or, when it
    /// exists already, reads it. Either way the answer is the zone as it is now.
    pub async fn ensure_zone(
        &self,
        domain: &DomainName,
        nameservers: &[String],
    ) -> Result<Zone, PowerDnsError> {
        let body = serde_json::json!({
            "name": canonical(domain.as_str()),
            "kind": "Native",
            "nameservers": nameservers.iter().map(|n| canonical(n)).collect::<Vec<_>>(),
            "soa_edit_api": "DEFAULT",
        });
        let (status, text) = self
            .call("create zone", Method::POST, "/zones", Some(&body))
            .await?;
        if status.is_success() {
            return parse("create zone", &text);
        }
        if is_conflict(status, &text) {
            return match self.zone(domain).await? {
                Some(zone) => Ok(zone),
                // Deleted between our two calls: the next attempt creates it.
                None => Err(PowerDnsError::ServerError {
                    action: "read zone",
                    status: StatusCode::NOT_FOUND.as_u16(),
                    message: "the zone was reported to exist but is gone".to_owned(),
                }),
            };
        }
        Err(classify("create zone", status, &text))
    }

    /// The zone with all its rrsets, or `None` when PowerDNS has no such zone.
    pub async fn zone(&self, domain: &DomainName) -> Result<Option<Zone>, PowerDnsError> {
        let path = format!("/zones/{}", canonical(domain.as_str()));
        let (status, text) = self.call("read zone", Method::GET, &path, None).await?;
        match status {
            s if s.is_success() => parse("read zone", &text).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(classify("read zone", s, &text)),
        }
    }

    /// Sends `changes` in one `PATCH`; nothing at all when there are none.
    pub async fn patch_rrsets(&self, zone: &Zone, changes: &[RrSet]) -> Result<(), PowerDnsError> {
        if changes.is_empty() {
            return Ok(());
        }
        let path = format!("/zones/{}", zone.id);
        let body = serde_json::json!({ "rrsets": changes });
        let (status, text) = self
            .call("update rrsets", Method::PATCH, &path, Some(&body))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(classify("update rrsets", status, &text))
        }
    }

    /// Creates the zone if needed and brings the wanted rrsets in; returns the zone as it was
    /// before the `PATCH` and the changes sent (empty when it was already in shape).
    pub async fn upsert_zone(
        &self,
        domain: &DomainName,
        nameservers: &[String],
        wanted: &[RrSet],
    ) -> Result<(Zone, Vec<RrSet>), PowerDnsError> {
        let zone = self.ensure_zone(domain, nameservers).await?;
        let changes = rrset_changes(&zone.rrsets, wanted);
        self.patch_rrsets(&zone, &changes).await?;
        Ok((zone, changes))
    }

    /// One API call; any HTTP status is an answer, only transport failures are errors.
    async fn call(
        &self,
        action: &'static str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, String), PowerDnsError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", self.key.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |e: reqwest::Error| PowerDnsError::Unreachable {
            url: self.api_url.clone(),
            // Without the URL: reqwest's message repeats it, and the base is already named.
            message: e.without_url().to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        tracing::debug!(action, status = status.as_u16(), "PowerDNS API call");
        Ok((status, text))
    }
}

/// `409 Conflict`, or a 422 saying the zone already exists (older versions).
fn is_conflict(status: StatusCode, body: &str) -> bool {
    status == StatusCode::CONFLICT
        || (status == StatusCode::UNPROCESSABLE_ENTITY
            && (body.contains("Conflict") || body.contains("already exists")))
}

fn classify(action: &'static str, status: StatusCode, body: &str) -> PowerDnsError {
    let message = error_message(body);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => PowerDnsError::Unauthorized {
            status: status.as_u16(),
        },
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::TOO_MANY_REQUESTS =>
        {
            PowerDnsError::ServerError {
                action,
                status: s.as_u16(),
                message,
            }
        }
        s => PowerDnsError::Rejected {
            action,
            status: s.as_u16(),
            message,
        },
    }
}

/// The API's `{"error": "..."}`, or the start of whatever else it sent.
fn error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct ApiError {
        error: String,
    }
    let message = serde_json::from_str::<ApiError>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| body.trim().to_owned());
    let mut echoed: String = message.chars().take(MAX_ECHO_CHARS).collect();
    if echoed.len() < message.len() {
        echoed.push('…');
    }
    if echoed.is_empty() {
        "no details given".to_owned()
    } else {
        echoed
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    action: &'static str,
    text: &str,
) -> Result<T, PowerDnsError> {
    serde_json::from_str(text).map_err(|e| PowerDnsError::Protocol {
        action,
        message: e.to_string(),
    })
}

/// `@` → `shop.example.`, `www` → `www.shop.example.`.
fn absolute_name(relative: &str, domain: &DomainName) -> String {
    match relative {
        "@" | "" => canonical(domain.as_str()),
        name => canonical(&format!("{name}.{domain}")),
    }
}

/// Lowercase with exactly one trailing dot.
fn canonical(name: &str) -> String {
    format!(
        "{}.",
        name.trim().trim_end_matches('.').to_ascii_lowercase()
    )
}

/// A TXT value in presentation form: quoted, with `"` and `\` escaped, split into the
/// 255-byte character-strings DNS requires.
fn quote_txt(text: &str) -> String {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut bytes = 0;
    for ch in text.chars() {
        if bytes + ch.len_utf8() > 255 {
            pieces.push(std::mem::take(&mut piece));
            bytes = 0;
        }
        bytes += ch.len_utf8();
        if matches!(ch, '"' | '\\') {
            piece.push('\\');
        }
        piece.push(ch);
    }
    pieces.push(piece);
    pieces
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_spf(content: &str) -> bool {
    let text = content.trim().trim_start_matches('"').to_ascii_lowercase();
    text == "v=spf1" || text.starts_with("v=spf1 ") || text.starts_with("v=spf1\"")
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Record content in a form two spellings of the same record share: addresses parsed, names
/// lowercased; TXT is compared as written.
fn normalise(rtype: &str, content: &str) -> String {
    let content = content.trim();
    match rtype {
        "A" | "AAAA" => content
            .parse::<IpAddr>()
            .map_or_else(|_| content.to_owned(), |ip| ip.to_string()),
        "TXT" => content.to_owned(),
        _ => content.to_ascii_lowercase(),
    }
}

fn same_records(a: &RrSet, b: &RrSet) -> bool {
    let set = |r: &RrSet| -> BTreeSet<(String, bool)> {
        r.records
            .iter()
            .map(|x| (normalise(&r.rtype, &x.content), x.disabled))
            .collect()
    };
    a.records.len() == b.records.len() && set(a) == set(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpanel_common::dns::default_records;

    fn wanted() -> Vec<RrSet> {
        let domain = DomainName::parse("shop.example").unwrap();
        let records = default_records(
            &domain,
            "192.0.2.7".parse().unwrap(),
            &["ns1.host.example", "ns2.host.example"],
        );
        default_rrsets(&domain, &records, 3600)
    }

    fn shown(rrsets: &[RrSet]) -> Vec<String> {
        rrsets
            .iter()
            .map(|r| {
                let contents: Vec<&str> = r.records.iter().map(|x| x.content.as_str()).collect();
                format!("{} {} {}", r.name, r.rtype, contents.join(" | "))
            })
            .collect()
    }

    #[test]
    fn default_rrsets_are_canonical_quoted_and_grouped() {
        assert_eq!(
            shown(&wanted()),
            [
                "shop.example. A 192.0.2.7",
                "www.shop.example. A 192.0.2.7",
                "mail.shop.example. A 192.0.2.7",
                "shop.example. MX 10 mail.shop.example.",
                "shop.example. TXT \"v=spf1 a mx ~all\"",
                "shop.example. NS ns1.host.example. | ns2.host.example.",
            ]
        );
        assert!(wanted().iter().all(|r| r.ttl == 3600));
    }

    #[test]
    fn a_zone_already_in_shape_needs_no_change() {
        let mut zone = wanted();
        // The API answers in its own order and spelling.
        zone.reverse();
        zone[0].records.reverse();
        zone[0].records[0].content = zone[0].records[0].content.to_ascii_uppercase();
        assert!(rrset_changes(&zone, &wanted()).is_empty());
    }

    #[test]
    fn missing_or_different_rrsets_are_replaced() {
        let mut zone = wanted();
        zone.retain(|r| r.rtype != "MX");
        zone[0].records[0].content = "192.0.2.99".into();
        zone[1].ttl = 60;
        let changes = rrset_changes(&zone, &wanted());
        assert_eq!(
            shown(&changes),
            [
                "shop.example. A 192.0.2.7",
                "www.shop.example. A 192.0.2.7",
                "shop.example. MX 10 mail.shop.example.",
            ]
        );
        assert!(
            changes
                .iter()
                .all(|c| c.changetype.as_deref() == Some("REPLACE"))
        );
    }

    #[test]
    fn customer_mx_and_txt_records_are_kept_but_an_old_spf_is_replaced() {
        let mut zone = wanted();
        let txt = zone.iter_mut().find(|r| r.rtype == "TXT").unwrap();
        txt.records = vec![
            RrRecord {
                content: "\"v=spf1 -all\"".into(),
                disabled: false,
            },
            RrRecord {
                content: "\"google-site-verification=abc\"".into(),
                disabled: false,
            },
        ];
        let mx = zone.iter_mut().find(|r| r.rtype == "MX").unwrap();
        mx.records.push(RrRecord {
            content: "20 backup.mx.example.".into(),
            disabled: false,
        });
        let changes = rrset_changes(&zone, &wanted());
        assert_eq!(
            shown(&changes),
            ["shop.example. TXT \"v=spf1 a mx ~all\" | \"google-site-verification=abc\""]
        );
        // Applied, the zone is stable.
        let mut after = zone.clone();
        after.retain(|r| r.rtype != "TXT");
        after.extend(changes);
        assert!(rrset_changes(&after, &wanted()).is_empty());
    }

    #[test]
    fn long_txt_values_are_split_and_quotes_escaped() {
        assert_eq!(quote_txt("say \"hi\""), "\"say \\\"hi\\\"\"");
        let long = "x".repeat(300);
        let quoted = quote_txt(&long);
        assert_eq!(
            quoted,
            format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45))
        );
    }

    #[test]
    fn errors_are_classified_retryable_or_permanent() {
        let auth = classify("read zone", StatusCode::UNAUTHORIZED, "Unauthorized");
        assert!(auth.is_auth() && !auth.is_retryable());
        let bad = classify(
            "update rrsets",
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error": "Record www./MX 'garbage': Parsing record content"}"#,
        );
        assert!(!bad.is_retryable());
        assert!(bad.to_string().contains("Parsing record content"), "{bad}");
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            assert!(classify("read zone", status, "").is_retryable());
        }
        assert!(is_conflict(StatusCode::CONFLICT, "Conflict"));
        assert!(is_conflict(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error": "Domain 'shop.example.' already exists"}"#
        ));
        assert!(!is_conflict(StatusCode::UNPROCESSABLE_ENTITY, "{}"));
    }
}
