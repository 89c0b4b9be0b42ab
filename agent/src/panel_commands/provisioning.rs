//! The provisioning steps the controller runs in order for a new service: account, DNS, SSL,
//! mailbox, database. Each reads its payload completely before touching the panel, so a bad
//! payload changes nothing.

use std::net::IpAddr;

use mpanel_common::username::{self, Username};
use serde_json::{Value, json};
use tracing::debug;

use super::CommandResult;
use super::payload::{Payload, PayloadError};
use crate::panel::{
    AccountSpec, ControlPanel, DatabaseSpec, DnsRecord, MailboxSpec, PanelKind, RecordType,
};

/// What panels put on a fresh zone (cPanel, DirectAdmin); re-running with the default changes
/// nothing on a zone the panel made.
const DEFAULT_TTL: u32 = 14_400;
/// Preference of the default MX record.
const MX_PRIORITY: u16 = 10;
const SPF: &str = "v=spf1 a mx ~all";

/// The only certificate source this agent can start so far; ACME issuance is separate work.
const AUTOSSL: &str = "autossl";

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

/// The records every new site gets: the site, `www` and `mail` on the server's address, mail
/// for the domain at `mail.<domain>`, an SPF record allowing exactly those, and the servers
/// that are authoritative for the zone.
pub(super) fn default_records(
    domain: &str,
    ip: IpAddr,
    nameservers: &[&str],
    ttl: u32,
) -> Vec<DnsRecord> {
    let record = |name: &str, record_type, value: String, priority| DnsRecord {
        name: name.to_owned(),
        record_type,
        value,
        ttl,
        priority,
    };
    let address = match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::Aaaa,
    };
    let mut records: Vec<DnsRecord> = ["@", "www", "mail"]
        .into_iter()
        .map(|name| record(name, address, ip.to_string(), None))
        .collect();
    records.push(record(
        "@",
        RecordType::Mx,
        format!("mail.{domain}"),
        Some(MX_PRIORITY),
    ));
    records.push(record("@", RecordType::Txt, SPF.to_owned(), None));
    records.extend(
        nameservers
            .iter()
            .map(|ns| ns.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|ns| !ns.is_empty())
            .map(|ns| record("@", RecordType::Ns, ns, None)),
    );
    records
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
    let records = default_records(&domain, ip, &nameservers, ttl);

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
pub(super) async fn ssl(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("ssl", payload)?;
    let username = p.string("username")?;
    let domain = p.domain("domain")?;
    let provider = p.string("provider")?;
    if !provider.eq_ignore_ascii_case(AUTOSSL) {
        return Err(p
            .invalid(
                "provider",
                format_args!("'{provider}' is not supported; this agent supports only '{AUTOSSL}'"),
            )
            .into());
    }
    panel.start_auto_ssl(username, &domain).await?;
    debug!(%domain, "automatic SSL requested");
    Ok(json!({ "provider": AUTOSSL, "status": "requested" }))
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
            "shop.example",
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
        let records = default_records("shop.example", ip, &[], 300);
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
