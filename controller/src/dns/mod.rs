//! DNS zones the controller writes itself, for servers whose `dns_provider` is `powerdns`: the
//! provisioning DNS step calls [`ensure_powerdns_zone`] instead of asking the agent.
//!
//! It owns the translation from a server and a domain to a PowerDNS zone with the default
//! records, and the step data recorded for it. It does not own the default record set
//! ([`mpanel_common::dns`], shared with the agent) nor zones on a panel's own DNS (the agent's
//! `ensure_dns`).

pub mod powerdns;

use std::net::IpAddr;

use mpanel_common::DomainName;
use mpanel_common::dns::{DefaultRecord, default_records};
use serde_json::{Value, json};

use crate::config::Config;
use crate::store::Server;
pub use powerdns::{PowerDns, PowerDnsError};

/// Why the controller could not put a zone on its DNS provider.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(
        "server {server} has dns_provider 'powerdns' but the controller has no PowerDNS: \
         set POWERDNS_API_URL and POWERDNS_API_KEY"
    )]
    NotConfigured { server: String },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    PowerDns(#[from] PowerDnsError),
}

impl DnsError {
    /// Only PowerDNS being unreachable or failing is worth another attempt; configuration and
    /// bad input stay wrong until someone changes them.
    pub fn is_retryable(&self) -> bool {
        match self {
            DnsError::PowerDns(e) => e.is_retryable(),
            DnsError::NotConfigured { .. } | DnsError::Invalid { .. } => false,
        }
    }
}

/// Creates (or finds) `domain`'s zone on PowerDNS and upserts the default records for
/// `server`; running it again changes nothing. Answers the DNS step's data:
/// `{zone_id, records: <count>, record_list: [{type, name, value}], provider: "powerdns"}`.
pub async fn ensure_powerdns_zone(
    config: &Config,
    server: &Server,
    domain: &str,
) -> Result<Value, DnsError> {
    let Some(pdns_config) = &config.powerdns else {
        return Err(DnsError::NotConfigured {
            server: server.hostname.clone(),
        });
    };
    let domain = DomainName::parse(domain).map_err(|e| DnsError::Invalid {
        field: "domain",
        message: e.to_string(),
    })?;
    let ip: IpAddr = server
        .ip_address
        .trim()
        .parse()
        .map_err(|_| DnsError::Invalid {
            field: "server ip_address",
            message: format!("'{}' is not an IP address", server.ip_address),
        })?;
    let mut nameservers = Vec::new();
    for ns in [&server.nameserver1, &server.nameserver2] {
        if ns.trim().is_empty() {
            continue;
        }
        let name = DomainName::parse(ns).map_err(|e| DnsError::Invalid {
            field: "server nameserver",
            message: e.to_string(),
        })?;
        nameservers.push(name.as_str().to_owned());
    }
    let ns_refs: Vec<&str> = nameservers.iter().map(String::as_str).collect();
    let records = default_records(&domain, ip, &ns_refs);
    let wanted = powerdns::default_rrsets(&domain, &records, config.dns_default_ttl);

    let client = PowerDns::new(pdns_config)?;
    let (zone, changes) = client.upsert_zone(&domain, &nameservers, &wanted).await?;
    tracing::info!(
        server = %server.hostname,
        changed_rrsets = changes.len(),
        "PowerDNS zone ensured"
    );
    tracing::debug!(%domain, zone_id = %zone.id, "PowerDNS zone ensured");
    Ok(json!({
        "zone_id": zone.id,
        "records": records.len(),
        "record_list": records_summary(&records),
        "provider": "powerdns",
    }))
}

/// The records as the DNS step records them, the same on every provider.
pub fn records_summary(records: &[DefaultRecord]) -> Value {
    records
        .iter()
        .map(|r| json!({ "type": r.record_type.as_str(), "name": r.name, "value": r.value }))
        .collect()
}
