//! The records every new site's zone starts with, whoever serves the zone: the panel's own DNS
//! (through the agent's driver) or PowerDNS (from the controller). Both sides build the set
//! here, so the two providers cannot drift apart. Only the set is decided here; how a provider
//! names, quotes or stores a record, and what TTL it uses, is the caller's business.

use std::fmt;
use std::net::IpAddr;

use crate::DomainName;

/// Preference of the default MX record.
pub const MX_PRIORITY: u16 = 10;
/// Mail for the domain may come from the site's address and its MX, and nowhere else (softfail).
pub const SPF_POLICY: &str = "v=spf1 a mx ~all";

/// The record types the default set uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultRecordType {
    A,
    Aaaa,
    Mx,
    Txt,
    Ns,
}

impl DefaultRecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Mx => "MX",
            Self::Txt => "TXT",
            Self::Ns => "NS",
        }
    }
}

impl fmt::Display for DefaultRecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of the default set, in the relative, unquoted form panels use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRecord {
    /// Relative to the zone: `@` for the apex, `www`, `mail`.
    pub name: &'static str,
    pub record_type: DefaultRecordType,
    /// An address, a host name (lowercase, without the trailing dot) or, for TXT, the unquoted
    /// text.
    pub value: String,
    /// MX preference; `None` for the other types.
    pub priority: Option<u16>,
}

/// The records every new site gets: the site, `www` and `mail` on the server's address (A, or
/// AAAA for an IPv6 address), mail for the domain at `mail.<domain>`, an SPF record allowing
/// exactly those, and one NS per nameserver. Nameservers are normalised (trimmed, lowercased,
/// trailing dot dropped); empty ones are skipped, so a server with only one nameserver works.
pub fn default_records(
    domain: &DomainName,
    ip: IpAddr,
    nameservers: &[&str],
) -> Vec<DefaultRecord> {
    let address = match ip {
        IpAddr::V4(_) => DefaultRecordType::A,
        IpAddr::V6(_) => DefaultRecordType::Aaaa,
    };
    let mut records: Vec<DefaultRecord> = ["@", "www", "mail"]
        .into_iter()
        .map(|name| DefaultRecord {
            name,
            record_type: address,
            value: ip.to_string(),
            priority: None,
        })
        .collect();
    records.push(DefaultRecord {
        name: "@",
        record_type: DefaultRecordType::Mx,
        value: format!("mail.{domain}"),
        priority: Some(MX_PRIORITY),
    });
    records.push(DefaultRecord {
        name: "@",
        record_type: DefaultRecordType::Txt,
        value: SPF_POLICY.to_owned(),
        priority: None,
    });
    records.extend(
        nameservers
            .iter()
            .map(|ns| ns.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|ns| !ns.is_empty())
            .map(|ns| DefaultRecord {
                name: "@",
                record_type: DefaultRecordType::Ns,
                value: ns,
                priority: None,
            }),
    );
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(records: &[DefaultRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {} {} {:?}", r.record_type, r.name, r.value, r.priority))
            .collect()
    }

    #[test]
    fn default_records_cover_site_mail_spf_and_nameservers() {
        let domain = DomainName::parse("Shop.Example").unwrap();
        let records = default_records(
            &domain,
            "192.0.2.7".parse().unwrap(),
            &["NS1.host.example.", "", " ns2.host.example "],
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
    }

    #[test]
    fn an_ipv6_address_gets_aaaa_records_and_no_nameservers_no_ns() {
        let domain = DomainName::parse("shop.example").unwrap();
        let records = default_records(&domain, "2001:db8::1".parse().unwrap(), &[]);
        assert_eq!(records.len(), 5);
        assert!(
            records[..3]
                .iter()
                .all(|r| r.record_type == DefaultRecordType::Aaaa && r.value == "2001:db8::1")
        );
    }
}
