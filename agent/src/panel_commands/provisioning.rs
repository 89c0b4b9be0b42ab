//! The provisioning steps the controller runs in order for a new service: account, DNS,
//! certificate, mailbox, database. Each checks what its panel needs of the request before
//! touching the panel, so a request the panel cannot take changes nothing.

use std::net::IpAddr;

use mpanel_common::DomainName;
use mpanel_common::command::{
    AccountCreated, Certificate, CertificateDone, CertificateProvider, CreateAccount,
    CreateDatabase, CreateMailbox, DatabaseCreated, DnsEnsured, DnsRecordSummary, EnsureDns,
    IssuedCertificate, MailboxCreated, Reply,
};
use mpanel_common::dns::{self, DefaultRecordType};
use mpanel_common::username::{self, Username};
use tracing::debug;

use super::{CommandError, CommandResult, invalid};
use crate::acme::{AcmeIssuer, IssueRequest};
use crate::panel::{
    AccountSpec, CertificateBundle, ControlPanel, DatabaseSpec, DnsRecord, MailboxSpec, PanelKind,
    RecordType,
};

/// What panels put on a fresh zone (cPanel, DirectAdmin); re-running with the default changes
/// nothing on a zone the panel made.
const DEFAULT_TTL: u32 = 14_400;

/// Creates the service's account, or finds the one an earlier attempt made. An account of
/// another service is a conflict.
pub(super) async fn create_account(panel: &dyn ControlPanel, c: CreateAccount) -> CommandResult {
    username::validate_username(panel.kind(), &c.username).map_err(|e| {
        invalid(
            "create_account",
            "username",
            format_args!("is not usable here: {e}"),
        )
    })?;
    let spec = AccountSpec {
        service_id: c.service_id.get(),
        username: c.username,
        domain: c.domain.as_str().to_owned(),
        password: c.password.into(),
        package: c.package,
        contact_email: c.contact_email,
        quota_mb: c.quota_mb,
        ip: c.ip.map(|ip| ip.to_string()),
    };

    // Only to report `created`: ensure_account itself looks again before creating.
    let existed = panel.get_account(&spec.username).await?.is_some();
    let info = panel.ensure_account(&spec).await?;
    debug!(service_id = spec.service_id, username = %info.username, created = !existed, "account ensured");
    Ok(Reply::AccountCreated(AccountCreated {
        username: info.username,
        domain: info.domain.unwrap_or(spec.domain),
        package: info.package.unwrap_or(spec.package),
        created: !existed,
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

/// The default records of the domain, as upserts: running it again changes nothing, and
/// records the customer added beside ours (another TXT, another MX) stay.
pub(super) async fn ensure_dns(panel: &dyn ControlPanel, c: EnsureDns) -> CommandResult {
    let nameservers: Vec<&str> = c.nameservers.iter().map(DomainName::as_str).collect();
    let records = default_records(&c.domain, c.ip, &nameservers, c.ttl.unwrap_or(DEFAULT_TTL));
    let domain = c.domain.as_str();
    panel
        .ensure_dns_zone(&c.username, domain, Some(&c.ip.to_string()))
        .await?;
    panel
        .upsert_dns_records(&c.username, domain, &records)
        .await?;
    debug!(%domain, records = records.len(), "DNS records ensured");
    Ok(Reply::DnsEnsured(DnsEnsured {
        zone_id: domain.to_owned(),
        records: records
            .into_iter()
            .map(|r| DnsRecordSummary {
                record_type: r.record_type.as_str().to_owned(),
                name: r.name,
                value: r.value,
            })
            .collect(),
    }))
}

/// AutoSSL: the panel issues asynchronously, so success means the request was accepted; asking
/// again only asks again.
///
/// ACME: the agent issues from its CA (HTTP-01 through the account's web root) and installs
/// key, certificate and chain through the panel. Names default to the domain and
/// `www.<domain>`; extra names not pointing at the IP yet are left out (the answer says what is
/// covered). When the domain itself does not point at the IP nothing is ordered and the
/// command waits for DNS; a CA rate limit is retryable with `retry after Ns` in the message.
pub(super) async fn certificate(
    panel: &dyn ControlPanel,
    acme: Option<&AcmeIssuer>,
    c: Certificate,
) -> CommandResult {
    let domain = c.domain.as_str().to_owned();
    let order = match c.provider {
        CertificateProvider::AutoSsl => {
            panel.start_auto_ssl(&c.username, &domain).await?;
            debug!(%domain, "automatic SSL requested");
            return Ok(Reply::Certificate(CertificateDone::AutoSslRequested));
        }
        CertificateProvider::Acme(order) => order,
    };
    let Some(issuer) = acme else {
        return Err(invalid(
            "ssl",
            "provider",
            "is 'acme' but this agent has no [acme] section in its configuration",
        ));
    };
    let names = if order.names.is_empty() {
        vec![domain.clone(), format!("www.{domain}")]
    } else {
        order.names
    };
    let request = IssueRequest {
        username: c.username.clone(),
        domain: domain.clone(),
        ip: order.ip,
        names,
    };
    let issued = issuer.issue(panel, &request).await?;
    let bundle = CertificateBundle {
        private_key: issued.private_key,
        certificate: issued.certificate_pem,
        chain: issued.chain_pem,
    };
    panel
        .install_certificate(&c.username, &domain, &bundle)
        .await?;
    let facts = issued.facts;
    debug!(%domain, serial = %facts.serial, "ACME certificate installed");
    Ok(Reply::Certificate(CertificateDone::AcmeIssued(
        IssuedCertificate {
            issuer: facts.issuer,
            serial: facts.serial,
            not_before_ms: facts.not_before_ms,
            not_after_ms: facts.not_after_ms,
            names: facts.names,
        },
    )))
}

/// A mailbox that already exists is the one an earlier attempt made.
pub(super) async fn create_mailbox(panel: &dyn ControlPanel, c: CreateMailbox) -> CommandResult {
    let local_part = c.local_part.to_ascii_lowercase();
    if !valid_local_part(&local_part) {
        return Err(invalid(
            "create_mailbox",
            "local_part",
            "may hold only letters, digits, '.', '_', '-' and '+', and not start or end with '.'",
        ));
    }
    let spec = MailboxSpec {
        local_part,
        domain: c.domain.as_str().to_owned(),
        password: c.password.into(),
        quota_mb: c.quota_mb,
    };
    panel.create_mailbox(&c.username, &spec).await?;
    let address = format!("{}@{}", spec.local_part, spec.domain);
    debug!(%address, "mailbox ensured");
    Ok(Reply::MailboxCreated(MailboxCreated {
        address,
        quota_mb: spec.quota_mb,
    }))
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

/// The database and its user share the name [`username::database_name`] gives; the driver
/// strips or keeps the panel's prefix as that panel's API wants and answers with the real names.
pub(super) async fn create_database(panel: &dyn ControlPanel, c: CreateDatabase) -> CommandResult {
    let user = Username::try_from(c.username).map_err(|e| {
        invalid(
            "create_database",
            "username",
            format_args!("is not a panel username: {e}"),
        )
    })?;
    if c.kind != panel.kind() {
        return Err(kind_mismatch(c.kind, panel.kind()));
    }
    let suffix = c.name_suffix.as_deref().unwrap_or("main");
    let name = username::database_name(c.kind, &user, suffix);
    let spec = DatabaseSpec {
        name: name.clone(),
        user: name,
        password: c.password.into(),
        domain: c.domain.as_str().to_owned(),
    };
    let info = panel.create_database(user.as_str(), &spec).await?;
    debug!(database = %info.database, "database ensured");
    Ok(Reply::DatabaseCreated(DatabaseCreated {
        databases: vec![info.database],
        user: info.user,
        host: "localhost".to_owned(),
    }))
}

fn kind_mismatch(asked: PanelKind, actual: PanelKind) -> CommandError {
    invalid(
        "create_database",
        "panel_kind",
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
