//! Name and record rules shared by the three panels' DNS editors.
//!
//! Record names follow zone-file (BIND) semantics in every panel: a name ending in `.` is
//! absolute, anything else is relative to the zone, and `@` or an empty name is the apex. So
//! `www.example.com` without the dot means `www.example.com.example.com`, as it would in a
//! zone file. UNCONFIRMED for Plesk's REST `host` and DirectAdmin's `name`; chosen because it
//! is what the panels write into BIND and it punishes ambiguous clients visibly.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::state::{Record, Zone, clock};

pub(crate) const RECORD_TYPES: [&str; 10] = [
    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "CAA", "PTR", "DS",
];

/// A syntactically valid lower-case host name with at least two labels.
pub(crate) fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_lowercase()))
}

/// Resolve a record name against its zone (BIND semantics, see the module docs).
pub(crate) fn absolute_name(zone: &str, input: &str) -> String {
    let input = input.trim().to_ascii_lowercase();
    if input.is_empty() || input == "@" {
        return zone.to_owned();
    }
    match input.strip_suffix('.') {
        Some(absolute) => absolute.to_owned(),
        None => format!("{input}.{zone}"),
    }
}

/// The zone-file spelling of a name: relative inside the zone, the apex as `zone.`.
pub(crate) fn relative_name(zone: &str, name: &str) -> String {
    if name == zone {
        return format!("{zone}.");
    }
    match name.strip_suffix(&format!(".{zone}")) {
        Some(relative) => relative.to_owned(),
        None => format!("{name}."),
    }
}

/// Check a value for its type and normalise host names (lower case, no trailing dot).
pub(crate) fn normalise_value(rtype: &str, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("A {rtype} record needs a value."));
    }
    match rtype {
        "A" => value
            .parse::<Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("“{value}” is not a valid IPv4 address.")),
        "AAAA" => value
            .parse::<Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("“{value}” is not a valid IPv6 address.")),
        "CNAME" | "NS" | "MX" | "PTR" => {
            let host = value.trim_end_matches('.').to_ascii_lowercase();
            if valid_domain(&host) {
                Ok(host)
            } else {
                Err(format!("“{value}” is not a valid host name."))
            }
        }
        _ => Ok(value.to_owned()),
    }
}

pub(crate) fn check_type(rtype: &str) -> Result<String, String> {
    let upper = rtype.trim().to_ascii_uppercase();
    if RECORD_TYPES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!("The record type “{rtype}” is not supported."))
    }
}

/// RFC 1034 §3.6.2 (and RFC 2181 §10.1): a name with a CNAME holds no other data, not even a
/// second CNAME. BIND refuses to load a zone that breaks this, so every panel's editor refuses
/// the edit that would produce one. Checked on the zone as it would be after the edit. The
/// wording is the simulator's own (UNCONFIRMED per panel); it names the rule like BIND's
/// "CNAME and other data" error.
pub(crate) fn cname_conflict(records: &[Record]) -> Result<(), String> {
    for cname in records.iter().filter(|r| r.rtype == "CNAME") {
        let others = records
            .iter()
            .filter(|r| r.name == cname.name && !std::ptr::eq(*r, cname))
            .count();
        if others > 0 {
            return Err(format!(
                "“{}” has a CNAME record and other data: a name with a CNAME record cannot \
                 hold any other record (RFC 1034 §3.6.2).",
                cname.name
            ));
        }
    }
    Ok(())
}

/// Advance the SOA serial after a change (never below today's first serial).
pub(crate) fn bump_serial(zone: &mut Zone) {
    zone.serial = (zone.serial + 1).max(clock::initial_serial());
}

/// The SOA fields every panel renders: mname, rname, serial, refresh, retry, expire, minimum.
pub(crate) fn soa_fields(zone_name: &str, zone: &Zone) -> [String; 7] {
    [
        format!("{}.", crate::catalog::NAMESERVERS[0]),
        format!("hostmaster.{zone_name}."),
        zone.serial.to_string(),
        "3600".to_owned(),
        "1800".to_owned(),
        "1209600".to_owned(),
        "86400".to_owned(),
    ]
}

/// The value as it appears in a zone file (host names get their trailing dot back).
pub(crate) fn zone_file_value(record: &Record) -> String {
    match record.rtype.as_str() {
        "CNAME" | "NS" | "PTR" => format!("{}.", record.value),
        "MX" => format!("{} {}.", record.priority.unwrap_or(10), record.value),
        "TXT" => format!("\"{}\"", record.value.replace('"', "\\\"")),
        _ => record.value.clone(),
    }
}

/// A BIND zone file for the zone (DirectAdmin's non-JSON `CMD_API_DNS_CONTROL` answer).
pub(crate) fn zone_file(zone_name: &str, zone: &Zone) -> String {
    let soa = soa_fields(zone_name, zone);
    let mut out = format!(
        "$TTL 14400\n{zone_name}.\t14400\tIN\tSOA\t{} {} (\n\t\t\t\t\t\t{}\n\t\t\t\t\t\t{}\n\t\t\t\t\t\t{}\n\t\t\t\t\t\t{}\n\t\t\t\t\t\t{} )\n\n",
        soa[0], soa[1], soa[2], soa[3], soa[4], soa[5], soa[6]
    );
    for record in &zone.records {
        out.push_str(&format!(
            "{}\t{}\tIN\t{}\t{}\n",
            relative_name(zone_name, &record.name),
            record.ttl,
            record.rtype,
            zone_file_value(record)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_zone_file_semantics() {
        assert_eq!(absolute_name("example.com", "www"), "www.example.com");
        assert_eq!(absolute_name("example.com", "@"), "example.com");
        assert_eq!(absolute_name("example.com", ""), "example.com");
        assert_eq!(
            absolute_name("example.com", "WWW.Example.com."),
            "www.example.com"
        );
        assert_eq!(
            absolute_name("example.com", "www.example.com"),
            "www.example.com.example.com"
        );
        assert_eq!(relative_name("example.com", "www.example.com"), "www");
        assert_eq!(relative_name("example.com", "example.com"), "example.com.");
    }

    #[test]
    fn a_cname_beside_other_data_is_refused() {
        let record = |name: &str, rtype: &str, value: &str| Record {
            id: 0,
            name: name.to_owned(),
            rtype: rtype.to_owned(),
            value: value.to_owned(),
            ttl: 300,
            priority: None,
        };
        let cname = record("www.example.com", "CNAME", "example.com");
        let a = record("www.example.com", "A", "192.0.2.10");
        let apex = record("example.com", "A", "192.0.2.10");
        assert!(cname_conflict(&[cname.clone(), apex.clone()]).is_ok());
        assert!(cname_conflict(&[a.clone(), apex]).is_ok());
        let err = cname_conflict(&[cname.clone(), a]).unwrap_err();
        assert!(err.contains("www.example.com"), "{err}");
        assert!(cname_conflict(&[cname.clone(), cname]).is_err());
    }

    #[test]
    fn domains_and_values_are_checked() {
        assert!(valid_domain("example.com"));
        assert!(valid_domain("a-b.example.co.uk"));
        assert!(!valid_domain("Example.com"));
        assert!(!valid_domain("localhost"));
        assert!(!valid_domain("-a.com"));
        assert!(!valid_domain("exa mple.com"));
        assert_eq!(normalise_value("A", " 10.0.0.1 ").unwrap(), "10.0.0.1");
        assert!(normalise_value("A", "10.0.0").is_err());
        assert_eq!(
            normalise_value("CNAME", "Target.Example.com.").unwrap(),
            "target.example.com"
        );
        assert!(check_type("spf").is_err());
        assert_eq!(check_type("txt").unwrap(), "TXT");
    }
}
