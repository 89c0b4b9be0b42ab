//! The provisioning steps the controller runs in order for a new service: account, DNS, SSL,
//! mailbox, database. Each reads its payload completely before touching the panel, so a bad
//! payload changes nothing.

use std::net::IpAddr;

use mpanel_common::DomainName;
use mpanel_common::dns::{self, DefaultRecordType};
use mpanel_common::username::{self, Username};
use serde_json::{Value, json};
use tracing::debug;

use super::CommandResult;
use super::payload::{Payload, PayloadError};
use crate::acme::{AcmeIssuer, IssueRequest};
use crate::panel::{
    AccountSpec, CertificateBundle, ControlPanel, DatabaseSpec, DnsRecord, MailboxSpec, PanelKind,
    RecordType,
};

/// What panels put on a fresh zone (cPanel, DirectAdmin); re-running with the default changes
/// nothing on a zone the panel made.
const DEFAULT_TTL: u32 = 14_400;

/// The panel's own certificate automation.
const AUTOSSL: &str = "autossl";
/// Issued by this agent from the configured ACME CA.
const ACME: &str = "acme";

fn common_kind(kind: PanelKind) -> username::PanelKind {
    match kind {
        PanelKind::Cpanel => username::PanelKind::Cpanel,
        PanelKind::Plesk => username::PanelKind::Plesk,
        PanelKind::DirectAdmin => username::PanelKind::Directadmin,
    }
}

/// `create_account {serviceId, username, domain, password, package, contactEmail, quotaMb?, ip?}`
/// → `{username, domain, package, created}`. An account of another service is a conflict.
pub(super) async fn create_account(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("create_account", payload)?;
    let service_id = p.integer("serviceId")?;
    if service_id <= 0 {
        return Err(p.invalid("serviceId", "must be a positive integer").into());
    }
    let username = p.string("username")?;
    username::validate_username(common_kind(panel.kind()), username)
        .map_err(|e| p.invalid("username", format_args!("is not usable here: {e}")))?;
    let contact_email = p.string("contactEmail")?;
    if !contact_email.contains('@') {
        return Err(p.invalid("contactEmail", "is not an email address").into());
    }
    let ip = p.opt_string("ip")?;
    if let Some(ip) = ip {
        ip.parse::<IpAddr>()
            .map_err(|_| p.invalid("ip", "is not an IP address"))?;
    }
    let spec = AccountSpec {
        service_id,
        username: username.to_owned(),
        domain: p.domain("domain")?,
        password: p.secret("password")?,
        package: p.string("package")?.to_owned(),
        contact_email: contact_email.to_owned(),
        quota_mb: p.opt_unsigned("quotaMb")?,
        ip: ip.map(str::to_owned),
    };

    // Only to report `created`: ensure_account itself looks again before creating.
    let existed = panel.get_account(&spec.username).await?.is_some();
    let info = panel.ensure_account(&spec).await?;
    debug!(service_id, username = %info.username, created = !existed, "account ensured");
    Ok(json!({
        "username": info.username,
        "domain": info.domain.unwrap_or(spec.domain),
        "package": info.package.unwrap_or(spec.package),
        "created": !existed,
    }))
}

/// The default record set ([`mpanel_common::dns::default_records`]) as this panel's records.
pub(super) fn default_records(
    domain: &DomainName,
    ip: IpAddr,
    nameservers: &[&str],
    ttl: u32,
) -> Vec<DnsRecord> {
    dns::default_records(domain, ip, nameservers)
        .into_iter()
        .map(|r| DnsRecord {
            name: r.name.to_owned(),
            record_type: match r.record_type {
                DefaultRecordType::A => RecordType::A,
                DefaultRecordType::Aaaa => RecordType::Aaaa,
                DefaultRecordType::Mx => RecordType::Mx,
                DefaultRecordType::Txt => RecordType::Txt,
                DefaultRecordType::Ns => RecordType::Ns,
            },
            value: r.value,
            ttl,
            priority: r.priority,
        })
        .collect()
}

/// `ensure_dns {username, domain, ip, nameservers: [..], ttl?}` → `{zoneId, records}`. The
/// records are upserts: running it again changes nothing, and records the customer added
/// beside ours (another TXT, another MX) stay.
pub(super) async fn ensure_dns(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("ensure_dns", payload)?;
    let username = p.string("username")?;
    let domain = p.domain("domain")?;
    let ip: IpAddr = p
        .string("ip")?
        .parse()
        .map_err(|_| p.invalid("ip", "is not an IP address"))?;
    let nameservers = p.string_list("nameservers")?;
    for (i, ns) in nameservers.iter().enumerate() {
        if !ns.is_empty() {
            mpanel_common::DomainName::parse(ns).map_err(|e| {
                p.invalid(
                    &format!("nameservers[{i}]"),
                    format_args!("is not a host name: {e}"),
                )
            })?;
        }
    }
    let ttl = match p.opt_unsigned("ttl")? {
        None => DEFAULT_TTL,
        Some(t) => u32::try_from(t)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| p.invalid("ttl", "must be between 1 and 4294967295"))?,
    };
    let zone = DomainName::parse(&domain)
        .map_err(|e| p.invalid("domain", format_args!("is not a domain name: {e}")))?;
    let records = default_records(&zone, ip, &nameservers, ttl);

    panel
        .ensure_dns_zone(username, &domain, Some(&ip.to_string()))
        .await?;
    for record in &records {
        panel.upsert_dns_record(&domain, record).await?;
    }
    debug!(%domain, records = records.len(), "DNS records ensured");
    let answer: Vec<Value> = records
        .iter()
        .map(|r| json!({ "type": r.record_type.as_str(), "name": r.name, "value": r.value }))
        .collect();
    Ok(json!({ "zoneId": domain, "records": answer }))
}

/// `ssl {username, domain, provider: "autossl"}` → `{provider, status: "requested"}`. The
/// panel issues asynchronously, so success means the request was accepted; asking again only
/// asks again.
///
/// `ssl {username, domain, provider: "acme", ip, names?}` → `{provider, status: "issued",
/// issuer, serial, notBefore, notAfter (Unix ms), names}`: the agent issues from its ACME CA
/// (HTTP-01 through the account's web root) and installs key, certificate and chain through the
/// panel. `names` defaults to the domain and `www.<domain>`; extra names not pointing at `ip`
/// yet are left out (the answer's `names` says what is covered). When the domain itself does
/// not point at `ip` nothing is ordered and the failure is retryable with a message starting
/// `waiting for DNS:`; a CA rate limit is retryable with `retry after Ns` in the message.
pub(super) async fn ssl(
    panel: &dyn ControlPanel,
    acme: Option<&AcmeIssuer>,
    payload: &Value,
) -> CommandResult {
    let p = Payload::new("ssl", payload)?;
    let username = p.string("username")?;
    let domain = p.domain("domain")?;
    let provider = p.string("provider")?;
    if provider.eq_ignore_ascii_case(ACME) {
        return ssl_acme(panel, acme, &p, username, domain).await;
    }
    if !provider.eq_ignore_ascii_case(AUTOSSL) {
        return Err(p
            .invalid(
                "provider",
                format_args!("'{provider}' is not supported; use '{AUTOSSL}' or '{ACME}'"),
            )
            .into());
    }
    panel.start_auto_ssl(username, &domain).await?;
    debug!(%domain, "automatic SSL requested");
    Ok(json!({ "provider": AUTOSSL, "status": "requested" }))
}

async fn ssl_acme(
    panel: &dyn ControlPanel,
    acme: Option<&AcmeIssuer>,
    p: &Payload<'_>,
    username: &str,
    domain: String,
) -> CommandResult {
    let ip: IpAddr = p
        .string("ip")?
        .parse()
        .map_err(|_| p.invalid("ip", "is not an IP address"))?;
    let names = if let Some(requested) = p.opt_string_list("names")? {
        let mut names = Vec::new();
        for (i, raw) in requested.into_iter().enumerate() {
            let name =
                mpanel_common::DomainName::parse(raw.trim_start_matches("*.")).map_err(|e| {
                    p.invalid(
                        &format!("names[{i}]"),
                        format_args!("is not a domain name: {e}"),
                    )
                })?;
            let wildcard = if raw.starts_with("*.") { "*." } else { "" };
            names.push(format!("{wildcard}{}", name.as_str()));
        }
        names
    } else {
        vec![domain.clone(), format!("www.{domain}")]
    };
    let Some(issuer) = acme else {
        return Err(p
            .invalid(
                "provider",
                "is 'acme' but this agent has no [acme] section in its configuration",
            )
            .into());
    };
    let request = IssueRequest {
        username: username.to_owned(),
        domain: domain.clone(),
        ip,
        names,
    };
    let issued = issuer.issue(panel, &request).await?;
    let bundle = CertificateBundle {
        private_key: issued.private_key,
        certificate: issued.certificate_pem,
        chain: issued.chain_pem,
    };
    panel
        .install_certificate(username, &domain, &bundle)
        .await?;
    let facts = issued.facts;
    debug!(%domain, serial = %facts.serial, "ACME certificate installed");
    Ok(json!({
        "provider": ACME,
        "status": "issued",
        "issuer": facts.issuer,
        "serial": facts.serial,
        "notBefore": facts.not_before_ms,
        "notAfter": facts.not_after_ms,
        "names": facts.names,
    }))
}

/// `create_mailbox {username, domain, localPart, password, quotaMb?}` →
/// `{defaultEmail, quotaMb}`. A mailbox that already exists is the one an earlier attempt made.
pub(super) async fn create_mailbox(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("create_mailbox", payload)?;
    let username = p.string("username")?;
    let domain = p.domain("domain")?;
    let local_part = p.string("localPart")?.to_ascii_lowercase();
    if !valid_local_part(&local_part) {
        return Err(p
            .invalid(
                "localPart",
                "may hold only letters, digits, '.', '_', '-' and '+', and not start or end with '.'",
            )
            .into());
    }
    let spec = MailboxSpec {
        local_part,
        domain,
        password: p.secret("password")?,
        quota_mb: p.opt_unsigned("quotaMb")?,
    };
    panel.create_mailbox(username, &spec).await?;
    let address = format!("{}@{}", spec.local_part, spec.domain);
    debug!(%address, "mailbox ensured");
    Ok(json!({ "defaultEmail": address, "quotaMb": spec.quota_mb }))
}

/// The conservative subset of RFC 5322 dot-atoms every panel accepts.
fn valid_local_part(local: &str) -> bool {
    (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// `create_database {username, kind, domain, nameSuffix?, password}` →
/// `{databasesCreated: [name], databaseUser, host}`. The database and its user share the name
/// [`username::database_name`] gives; the driver strips or keeps the panel's prefix as that
/// panel's API wants and answers with the real names.
pub(super) async fn create_database(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("create_database", payload)?;
    let user = Username::try_from(p.string("username")?.to_owned())
        .map_err(|e| p.invalid("username", format_args!("is not a panel username: {e}")))?;
    let kind: username::PanelKind = p
        .string("kind")?
        .parse()
        .map_err(|e| p.invalid("kind", format_args!("is not usable: {e}")))?;
    if PanelKind::from(kind) != panel.kind() {
        return Err(kind_mismatch(&p, kind, panel.kind()).into());
    }
    let suffix = p.opt_string("nameSuffix")?.unwrap_or("main");
    let name = username::database_name(kind, &user, suffix);
    let spec = DatabaseSpec {
        name: name.clone(),
        user: name,
        password: p.secret("password")?,
        domain: p.domain("domain")?,
    };
    let info = panel.create_database(user.as_str(), &spec).await?;
    debug!(database = %info.database, "database ensured");
    Ok(json!({
        "databasesCreated": [info.database],
        "databaseUser": info.user,
        "host": "localhost",
    }))
}

fn kind_mismatch(p: &Payload<'_>, asked: username::PanelKind, actual: PanelKind) -> PayloadError {
    p.invalid(
        "kind",
        format_args!("is '{asked}' but this agent drives {actual}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(records: &[DnsRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {} {} {:?}", r.record_type, r.name, r.value, r.priority))
            .collect()
    }

    #[test]
    fn default_records_cover_site_mail_spf_and_nameservers() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let records = default_records(
            &DomainName::parse("shop.example").unwrap(),
            ip,
            &["NS1.host.example.", "", "ns2.host.example"],
            300,
        );
        assert_eq!(
            shown(&records),
            [
                "A @ 192.0.2.7 None",
                "A www 192.0.2.7 None",
                "A mail 192.0.2.7 None",
                "MX @ mail.shop.example Some(10)",
                "TXT @ v=spf1 a mx ~all None",
                "NS @ ns1.host.example None",
                "NS @ ns2.host.example None",
            ]
        );
        assert!(records.iter().all(|r| r.ttl == 300));
    }

    #[test]
    fn an_ipv6_address_gets_aaaa_records() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let records = default_records(&DomainName::parse("shop.example").unwrap(), ip, &[], 300);
        assert_eq!(records[0].record_type, RecordType::Aaaa);
        assert_eq!(records.len(), 5);
    }

    #[test]
    fn local_parts() {
        assert!(valid_local_part("admin"));
        assert!(valid_local_part("first.last+tag"));
        assert!(!valid_local_part("a@b"));
        assert!(!valid_local_part(".admin"));
        assert!(!valid_local_part("a..b"));
        assert!(!valid_local_part("with space"));
    }
}
