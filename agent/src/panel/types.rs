//! The values that cross the [`super::ControlPanel`] interface, and its error type.

use std::fmt;
use std::str::FromStr;

/// A password or token. `Debug` masks it and there is no `Display`, so it cannot end up in a log
/// line or an error message by accident; [`Secret::expose`] is the one, greppable, way out.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for putting it on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Secrets arriving in the shared wrapper (the agent's configuration, controller commands).
impl From<mpanel_common::secret::Secret<String>> for Secret {
    fn from(value: mpanel_common::secret::Secret<String>) -> Self {
        Self(value.into_inner())
    }
}

pub use mpanel_common::command::{AccountUsage as Usage, Amount, ErrorClass};
pub use mpanel_common::username::PanelKind;

/// The panel kind of the agent's configuration: the wire names, in any case, and the names
/// operators also use for them (`whm`, `da`).
pub fn parse_panel_kind(s: &str) -> Result<PanelKind, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "cpanel" | "whm" => Ok(PanelKind::Cpanel),
        "plesk" => Ok(PanelKind::Plesk),
        "directadmin" | "da" => Ok(PanelKind::Directadmin),
        other => Err(format!(
            "unknown panel kind {other:?} (expected cpanel, plesk or directadmin)"
        )),
    }
}

/// What the controller wants to exist for one hosting service.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub service_id: i64,
    /// The panel's system username; the caller has already applied the panel's naming rules.
    pub username: String,
    pub domain: String,
    pub password: Secret,
    pub package: String,
    pub contact_email: String,
    /// Disk quota override in MB; `None` keeps the package's quota.
    pub quota_mb: Option<u64>,
    /// Shared IP for the account where the panel wants one (DirectAdmin); `None` lets the panel
    /// pick.
    pub ip: Option<String>,
}

impl AccountSpec {
    /// The marker stored on panels that have a free field for it (Plesk `external_id`).
    pub fn owner_marker(&self) -> String {
        owner_marker(self.service_id)
    }
}

/// The ownership marker for `service_id`.
pub fn owner_marker(service_id: i64) -> String {
    format!("mpanel-service-{service_id}")
}

/// An account as the panel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountInfo {
    pub username: String,
    /// Main domain; `None` when the panel reports none (a Plesk customer without a subscription).
    pub domain: Option<String>,
    pub contact_email: Option<String>,
    pub package: Option<String>,
    pub suspended: bool,
    /// The ownership marker the panel stores, on panels that have one (Plesk `external_id`; the
    /// empty string when the field is blank). `None` on panels without such a field.
    pub owner_marker: Option<String>,
    /// The panel's own id where it differs from the username (Plesk client id).
    pub panel_id: Option<String>,
}

/// A hosting package (cPanel package, Plesk service plan, DirectAdmin user package).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    pub name: String,
    pub disk_quota: Option<Amount>,
    pub bandwidth: Option<Amount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
    Srv,
    Caa,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
            Self::Mx => "MX",
            Self::Txt => "TXT",
            Self::Ns => "NS",
            Self::Srv => "SRV",
            Self::Caa => "CAA",
        }
    }

    /// Types where a name normally holds one value, so an upsert replaces instead of adding.
    pub fn single_valued(self) -> bool {
        matches!(self, Self::A | Self::Aaaa | Self::Cname)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "A" => Self::A,
            "AAAA" => Self::Aaaa,
            "CNAME" => Self::Cname,
            "MX" => Self::Mx,
            "TXT" => Self::Txt,
            "NS" => Self::Ns,
            "SRV" => Self::Srv,
            "CAA" => Self::Caa,
            other => return Err(format!("unsupported record type {other:?}")),
        })
    }
}

/// One DNS record. `name` is relative to the zone: `@` (or empty) for the apex, `www`, `_acme`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub record_type: RecordType,
    pub value: String,
    pub ttl: u32,
    /// MX preference (and SRV priority).
    pub priority: Option<u16>,
}

impl DnsRecord {
    /// Whether `other` (a record already in the zone) is the one this upsert replaces: same name
    /// and type for single-valued types; same name, type and value for the others, because a
    /// name commonly holds several TXT or MX records and an upsert must not drop the rest.
    /// SPF is the exception among TXT records: a name may hold only one (RFC 7208 §3.2; two
    /// make every check a permerror), so an SPF record replaces the SPF record already there,
    /// such as the one the panel wrote into a fresh zone.
    ///
    /// A CNAME owns its name: a name with a CNAME holds no other data (RFC 1034 §3.6.2, RFC 2181
    /// §10.1; BIND refuses to load a zone that breaks this). So a CNAME is the slot of any record
    /// at its name, and a CNAME upsert replaces every record there, whatever their types.
    pub fn same_slot(&self, other: &DnsRecord) -> bool {
        if !same_name(&self.name, &other.name) {
            return false;
        }
        if self.record_type == RecordType::Cname || other.record_type == RecordType::Cname {
            return true;
        }
        self.record_type == other.record_type
            && (self.record_type.single_valued()
                || same_value(&self.value, &other.value)
                || (self.record_type == RecordType::Txt
                    && is_spf(&self.value)
                    && is_spf(&other.value)))
    }

    /// Whether `other` already says everything this record says.
    pub fn same_content(&self, other: &DnsRecord) -> bool {
        self.same_slot(other)
            && self.record_type == other.record_type
            && same_value(&self.value, &other.value)
            && self.ttl == other.ttl
            && (self.priority.is_none() || self.priority == other.priority)
    }
}

/// Which records a delete removes: every record with this name and type, or only the one with
/// this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecordKey {
    pub name: String,
    pub record_type: RecordType,
    pub value: Option<String>,
}

impl DnsRecordKey {
    pub fn matches(&self, record: &DnsRecord) -> bool {
        same_name(&self.name, &record.name)
            && self.record_type == record.record_type
            && self
                .value
                .as_deref()
                .is_none_or(|v| same_value(v, &record.value))
    }
}

/// Normalises a record name to the relative form (`@` for the apex) whatever the panel returned:
/// `www`, `www.example.com.`, `example.com.`, `@` or an empty string.
pub fn relative_name(name: &str, zone: &str) -> String {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name == "@" || name == zone {
        return "@".to_owned();
    }
    match name.strip_suffix(&format!(".{zone}")) {
        Some(label) => label.to_owned(),
        None => name,
    }
}

/// The fully qualified name (no trailing dot) of a relative record name.
pub fn absolute_name(name: &str, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match relative_name(name, zone).as_str() {
        "@" => zone.to_owned(),
        label => format!("{label}.{zone}"),
    }
}

fn same_name(a: &str, b: &str) -> bool {
    let norm = |n: &str| {
        let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
        if n.is_empty() { "@".to_owned() } else { n }
    };
    norm(a) == norm(b)
}

/// An SPF policy (`v=spf1` alone or followed by terms), quoted or not.
fn is_spf(value: &str) -> bool {
    let v = value.trim().trim_matches('"').trim_start();
    v.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("v=spf1"))
        && v[6..].chars().next().is_none_or(|c| c == ' ')
}

/// Panels quote TXT values and add trailing dots to host names inconsistently.
fn same_value(a: &str, b: &str) -> bool {
    let norm = |v: &str| v.trim().trim_matches('"').trim_end_matches('.').to_owned();
    norm(a).eq_ignore_ascii_case(&norm(b))
}

/// A certificate to install: private key, leaf certificate and the intermediate chain, all PEM.
#[derive(Clone)]
pub struct CertificateBundle {
    pub private_key: Secret,
    pub certificate: String,
    pub chain: String,
}

impl fmt::Debug for CertificateBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateBundle")
            .field("private_key", &self.private_key)
            .field("certificate_len", &self.certificate.len())
            .field("chain_len", &self.chain.len())
            .finish()
    }
}

/// A mailbox to create: `local_part@domain`.
#[derive(Debug, Clone)]
pub struct MailboxSpec {
    pub local_part: String,
    pub domain: String,
    pub password: Secret,
    /// Quota in MB; `None` or `Some(0)` means unlimited.
    pub quota_mb: Option<u64>,
}

/// A database and its user, names without the panel prefix.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    pub name: String,
    pub user: String,
    pub password: Secret,
    /// The domain the database belongs to (Plesk attaches databases to a domain).
    pub domain: String,
}

/// The real names of a database and its user, prefix included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub database: String,
    pub user: String,
}

/// One backup archive of an account, as the panel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The panel's name for the archive; what [`super::ControlPanel::delete_backup`] takes.
    pub name: String,
    /// `None` where the panel's list does not say.
    pub size_bytes: Option<u64>,
    /// Unix seconds; `None` where the panel's list does not say.
    pub created_at: Option<i64>,
    /// False while the panel is still writing it.
    pub ready: bool,
}

/// Where the panel is with the most recent restore of an account from one of its archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreState {
    /// The panel knows of no restore of the account.
    None,
    /// Queued or running.
    Running { archive: String },
    /// Finished; the account was recreated from `archive`.
    Finished { archive: String },
    /// The panel gave up; `message` is its reason.
    Failed { archive: String, message: String },
}

/// A failed panel call. Messages come from the panel with every secret of the request scrubbed
/// out; they never carry a password or token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PanelError {
    #[error("{operation}: temporary panel failure: {message}")]
    Retryable {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: {message}")]
    Permanent {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: panel refused the agent's credentials: {message}")]
    Auth {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: conflict: {message}")]
    Conflict {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: not found: {message}")]
    NotFound {
        operation: &'static str,
        message: String,
    },
}

impl PanelError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Retryable { .. } => ErrorClass::Retryable,
            Self::Permanent { .. } => ErrorClass::Permanent,
            Self::Auth { .. } => ErrorClass::Auth,
            Self::Conflict { .. } => ErrorClass::Conflict,
            Self::NotFound { .. } => ErrorClass::NotFound,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    pub fn operation(&self) -> &'static str {
        match self {
            Self::Retryable { operation, .. }
            | Self::Permanent { operation, .. }
            | Self::Auth { operation, .. }
            | Self::Conflict { operation, .. }
            | Self::NotFound { operation, .. } => operation,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Retryable { message, .. }
            | Self::Permanent { message, .. }
            | Self::Auth { message, .. }
            | Self::Conflict { message, .. }
            | Self::NotFound { message, .. } => message,
        }
    }

    pub fn new(class: ErrorClass, operation: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        match class {
            ErrorClass::Retryable => Self::Retryable { operation, message },
            ErrorClass::Permanent => Self::Permanent { operation, message },
            ErrorClass::Auth => Self::Auth { operation, message },
            ErrorClass::Conflict => Self::Conflict { operation, message },
            ErrorClass::NotFound => Self::NotFound { operation, message },
        }
    }

    pub fn retryable(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Retryable, operation, message)
    }

    pub fn permanent(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, operation, message)
    }

    pub fn conflict(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Conflict, operation, message)
    }

    pub fn not_found(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::NotFound, operation, message)
    }
}

/// Parses the size strings panels report: `"10M"`, `"1.5G"`, `"512"` (MB unless a unit says
/// otherwise, which is what cPanel and DirectAdmin mean), `"unlimited"`, `"*unknown*"`.
/// Returns bytes. `default_unit` is the multiplier for a bare number.
pub fn parse_size(text: &str, default_unit: u64) -> Option<Amount> {
    let t = text.trim();
    if t.is_empty() || t.starts_with('*') {
        return None;
    }
    if t.eq_ignore_ascii_case("unlimited") || t == "-1" {
        return Some(Amount::Unlimited);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match unit.trim().to_ascii_uppercase().trim_end_matches("IB") {
        "" => default_unit,
        "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        "T" | "TB" => 1 << 40,
        _ => return None,
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    Some(Amount::Value((number * multiplier as f64).round() as u64))
}

/// Sizes given in MB.
pub const MB: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let spec = MailboxSpec {
            local_part: "info".into(),
            domain: "example.com".into(),
            password: s,
            quota_mb: None,
        };
        assert!(!format!("{spec:?}").contains("hunter2"));
    }

    #[test]
    fn panel_kinds_parse_with_their_aliases() {
        assert_eq!(parse_panel_kind("WHM"), Ok(PanelKind::Cpanel));
        assert_eq!(parse_panel_kind("da"), Ok(PanelKind::Directadmin));
        assert_eq!(parse_panel_kind("plesk"), Ok(PanelKind::Plesk));
        assert!(
            parse_panel_kind("ispconfig")
                .unwrap_err()
                .contains("expected cpanel")
        );
    }

    #[test]
    fn sizes_with_units_parse_to_bytes() {
        assert_eq!(parse_size("10M", MB), Some(Amount::Value(10 * MB)));
        assert_eq!(parse_size("150000M", MB), Some(Amount::Value(150_000 * MB)));
        assert_eq!(parse_size("1.5G", MB), Some(Amount::Value(1536 * MB)));
        assert_eq!(parse_size("512", MB), Some(Amount::Value(512 * MB)));
        assert_eq!(parse_size("unlimited", MB), Some(Amount::Unlimited));
        assert_eq!(parse_size("*unknown*", MB), None);
        assert_eq!(parse_size("2048", 1), Some(Amount::Value(2048)));
    }

    #[test]
    fn record_names_normalise_to_relative_form() {
        assert_eq!(relative_name("www.example.com.", "example.com"), "www");
        assert_eq!(relative_name("example.com.", "example.com"), "@");
        assert_eq!(relative_name("", "example.com"), "@");
        assert_eq!(relative_name("www", "example.com"), "www");
        assert_eq!(absolute_name("@", "example.com"), "example.com");
        assert_eq!(absolute_name("www", "example.com"), "www.example.com");
    }

    #[test]
    fn upsert_replaces_single_valued_and_keeps_other_txt_records() {
        let a = |v: &str| DnsRecord {
            name: "www".into(),
            record_type: RecordType::A,
            value: v.into(),
            ttl: 300,
            priority: None,
        };
        assert!(a("1.1.1.1").same_slot(&a("2.2.2.2")));
        let txt = |v: &str| DnsRecord {
            record_type: RecordType::Txt,
            ..a(v)
        };
        assert!(!txt("v=spf1 -all").same_slot(&txt("google-site-verification=x")));
        assert!(txt("v=spf1 -all").same_slot(&txt("\"v=spf1 -all\"")));
        assert!(txt("v=spf1 a mx ~all").same_slot(&txt("\"v=spf1 +a +mx ~all\"")));
        assert!(!txt("v=spf1 a mx ~all").same_content(&txt("v=spf1 +a +mx ~all")));
        assert!(!txt("v=spf10").same_slot(&txt("v=spf1 -all")));
    }

    #[test]
    fn a_cname_is_the_slot_of_every_record_at_its_name() {
        let record = |name: &str, record_type, value: &str| DnsRecord {
            name: name.into(),
            record_type,
            value: value.into(),
            ttl: 300,
            priority: None,
        };
        let www_cname = record("www", RecordType::Cname, "example.com");
        let www_a = record("www", RecordType::A, "192.0.2.10");
        assert!(www_a.same_slot(&www_cname));
        assert!(www_cname.same_slot(&www_a));
        assert!(www_cname.same_slot(&record("www", RecordType::Txt, "x")));
        assert!(!www_a.same_content(&record("www", RecordType::Cname, "192.0.2.10")));
        assert!(!www_a.same_slot(&record("mail", RecordType::Cname, "example.com")));
        assert!(!www_a.same_slot(&record("www", RecordType::Txt, "x")));
    }
}
