//! Hosting-account usernames: which names each control panel accepts ([`validate_username`]),
//! how mpanel derives one from a customer's domain ([`username_for`]), and the database names
//! that follow from it ([`database_prefix`], [`database_name`]).
//!
//! It does not know which names are already taken on a server: the caller asks the panel and
//! retries with the next `attempt`.
//!
//! Sources are the project's panel reference (§1.7, §1.8, §2.6, §3.8). Where a panel's rules are
//! unconfirmed, the rules here are a defensive subset that every panel is expected to accept.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::DomainName;
use crate::string_enum::string_enum;

string_enum! {
    /// The control panel an agent drives on a server.
    pub enum PanelKind: "panel kind" {
        Cpanel => "cpanel",
        Plesk => "plesk",
        Directadmin => "directadmin",
    }
}

impl PanelKind {
    /// The vendor's spelling, for messages shown to people.
    pub const fn product_name(self) -> &'static str {
        match self {
            PanelKind::Cpanel => "cPanel",
            PanelKind::Plesk => "Plesk",
            PanelKind::Directadmin => "DirectAdmin",
        }
    }

    const fn rules(self) -> Rules {
        match self {
            // §1.8: a-z0-9, at most 16, no leading digit or `test`, no trailing `assword`.
            PanelKind::Cpanel => Rules {
                min_len: 1,
                max_len: 16,
                // §1.7/§1.8: with MySQL in use the first 8 characters must be unique, and the
                // database prefix is those 8 plus `_`. A generated name of at most 8 characters
                // makes "unique name" and "unique first 8" the same check, so a free name can
                // never clash with another account's database prefix.
                generated_max_len: 8,
                cpanel_affixes: true,
            },
            // §2.6: Plesk's login rules are UNCONFIRMED, so we use the subset every panel
            // accepts (lowercase, starts with a letter, a-z0-9, at most 16).
            PanelKind::Plesk => Rules {
                min_len: 1,
                max_len: 16,
                generated_max_len: 16,
                cpanel_affixes: false,
            },
            // §3.8 (UNCONFIRMED): ^[a-z][a-z0-9]{2,9}$.
            PanelKind::Directadmin => Rules {
                min_len: 3,
                max_len: 10,
                generated_max_len: 10,
                cpanel_affixes: false,
            },
        }
    }
}

struct Rules {
    min_len: usize,
    max_len: usize,
    generated_max_len: usize,
    /// cPanel refuses names starting with `test` or ending with `assword`.
    cpanel_affixes: bool,
}

/// Generated names are at least this long for every panel. Third-party DirectAdmin modules use
/// `^[a-z][a-z0-9]{3,9}$` (§3.8), so 4 satisfies both that and the stated minimum of 3.
const GENERATED_MIN_LEN: usize = 4;

/// Shared by every panel: system accounts, mail aliases that cPanel refuses (§1.8, from
/// `Cpanel/Validate/Username/Core.pm`, `/etc/aliases`) and the panels' own service users.
/// Aliases with a hyphen, like `mailer-daemon`, cannot be usernames anyway and are left out.
const RESERVED: &[&str] = &[
    "abuse",
    "adm",
    "admin",
    "administrator",
    "all",
    "apache",
    "bin",
    "clamav",
    "cpanel",
    "cpanelhorde",
    "cpanellogin",
    "cpanelphpmyadmin",
    "cpanelphppgadmin",
    "cpanelroundcube",
    "cpanelsolr",
    "daemon",
    "dbus",
    "diradmin",
    "directadmin",
    "dovecot",
    "dovenull",
    "exim",
    "ftp",
    "ftpuser",
    "games",
    "git",
    "halt",
    "help",
    "hostmaster",
    "httpd",
    "info",
    "lp",
    "mail",
    "mailman",
    "mailnull",
    "marketing",
    "memcached",
    "mysql",
    "named",
    "news",
    "nfsnobody",
    "nginx",
    "nobody",
    "noc",
    "nscd",
    "ntp",
    "operator",
    "plesk",
    "popuser",
    "postfix",
    "postgres",
    "postmaster",
    "psaadm",
    "psacln",
    "psaftp",
    "psaserv",
    "redis",
    "root",
    "sales",
    "security",
    "shutdown",
    "spamd",
    "sshd",
    "ssl",
    "support",
    "sync",
    "sys",
    "system",
    "toor",
    "usenet",
    "uucp",
    "virtfs",
    "webmaster",
    "whm",
    "www",
    "wwwdata",
];

/// Why a string is not an acceptable username for a panel. Each message reads naturally after
/// "username: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("is empty")]
    Empty,
    #[error("'{input}' contains '{ch}'; only lowercase letters a-z and digits 0-9 are allowed")]
    InvalidCharacter { input: String, ch: char },
    #[error("'{0}' must start with a letter")]
    MustStartWithLetter(String),
    #[error("'{input}' is {len} characters long; {} needs at least {min}", .kind.product_name())]
    TooShort {
        input: String,
        kind: PanelKind,
        len: usize,
        min: usize,
    },
    #[error("'{input}' is {len} characters long; {} allows at most {max}", .kind.product_name())]
    TooLong {
        input: String,
        kind: PanelKind,
        len: usize,
        max: usize,
    },
    #[error("'{0}' starts with 'test', which cPanel refuses")]
    StartsWithTest(String),
    #[error("'{0}' ends with 'assword', which cPanel refuses")]
    EndsWithAssword(String),
    #[error("'{0}' is reserved for the system or the panel")]
    Reserved(String),
}

/// A hosting-account username that passed at least the shape every panel shares
/// (`[a-z][a-z0-9]{0,15}`); [`validate_username`] or [`username_for`] check a specific panel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

/// Deserialising cannot know the panel, so it checks only the shape common to all of them;
/// a name stored for one panel is still re-checkable with [`validate_username`].
impl TryFrom<String> for Username {
    type Error = UsernameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_shape(&s)?;
        check_length(&s, PanelKind::Cpanel, 1, 16)?;
        Ok(Username(s))
    }
}

/// Checks `input` against `kind`'s rules. Uppercase is refused rather than folded: a name that
/// the panel would silently lowercase is a name the caller would later look up wrongly.
pub fn validate_username(kind: PanelKind, input: &str) -> Result<Username, UsernameError> {
    let rules = kind.rules();
    check_shape(input)?;
    check_length(input, kind, rules.min_len, rules.max_len)?;
    if rules.cpanel_affixes {
        if input.starts_with("test") {
            return Err(UsernameError::StartsWithTest(input.to_owned()));
        }
        if input.ends_with("assword") {
            return Err(UsernameError::EndsWithAssword(input.to_owned()));
        }
    }
    if is_reserved(input) {
        return Err(UsernameError::Reserved(input.to_owned()));
    }
    Ok(Username(input.to_owned()))
}

fn check_shape(input: &str) -> Result<(), UsernameError> {
    let Some(first) = input.chars().next() else {
        return Err(UsernameError::Empty);
    };
    if let Some(ch) = input
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
    {
        return Err(UsernameError::InvalidCharacter {
            input: echo(input),
            ch,
        });
    }
    if !first.is_ascii_lowercase() {
        return Err(UsernameError::MustStartWithLetter(input.to_owned()));
    }
    Ok(())
}

fn check_length(input: &str, kind: PanelKind, min: usize, max: usize) -> Result<(), UsernameError> {
    // `check_shape` ran first, so the name is ASCII and bytes are characters.
    let len = input.len();
    if len < min {
        return Err(UsernameError::TooShort {
            input: input.to_owned(),
            kind,
            len,
            min,
        });
    }
    if len > max {
        return Err(UsernameError::TooLong {
            input: echo(input),
            kind,
            len,
            max,
        });
    }
    Ok(())
}

fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// Inputs can be arbitrarily long; error messages quote at most a screenful of them.
fn echo(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The username mpanel proposes for `domain` on a `kind` panel.
///
/// Attempt 0 is the base name: the letters and digits of the domain's labels before the TLD
/// (a leading `www` skipped, `xn--` dropped from IDN labels, the TLD added if that is too short),
/// starting with a letter and cut to the panel's generated length. Attempt `n > 0` is the base
/// cut short plus the decimal digits of `n`. The same inputs always give the same name, every
/// name passes [`validate_username`] for `kind`, and different attempts give different names
/// as long as `n` fits beside one letter of the base (cPanel: up to 9,999,999; DirectAdmin:
/// 999,999,999; Plesk: every `u32`). Past that the suffixes wrap, which no caller retrying
/// against a real server will reach.
pub fn username_for(domain: &DomainName, kind: PanelKind, attempt: u32) -> Username {
    let max_len = kind.rules().generated_max_len;
    let base = base_name(domain, max_len);
    if attempt == 0 {
        return Username(base);
    }
    Username(with_collision_suffix(&base, max_len, attempt))
}

fn base_name(domain: &DomainName, max_len: usize) -> String {
    let labels: Vec<&str> = domain.labels().collect();
    let (tld, host) = match labels.split_last() {
        Some((tld, host)) => (*tld, host),
        None => ("", &[][..]),
    };
    let host = match host {
        ["www", rest @ ..] if !rest.is_empty() => rest,
        _ => host,
    };
    let alnum = |label: &&str| {
        let label = label.strip_prefix("xn--").unwrap_or(label);
        label
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<Vec<_>>()
    };
    let mut name: String = host.iter().flat_map(alnum).collect();
    if name.len() < GENERATED_MIN_LEN {
        name.extend(alnum(&tld));
    }
    // Prefixing keeps the domain recognisable, where dropping characters would not.
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || name.starts_with("test") {
        name.insert(0, 'u');
    }
    name.truncate(max_len);
    while name.len() < GENERATED_MIN_LEN {
        name.push('x');
    }
    if name.ends_with("assword") {
        name.pop();
    }
    if is_reserved(&name) {
        name.insert(0, 'u');
        name.truncate(max_len);
    }
    name
}

/// `base` cut short (and cut back to its last letter) followed by the digits of a suffix
/// number. Because the part before the digits always ends with a letter, the trailing digits
/// of a name identify its suffix number exactly, so distinct numbers give distinct names.
fn with_collision_suffix(base: &str, max_len: usize, attempt: u32) -> String {
    // Keep at least one letter of the base in front of the digits.
    let max_digits = u32::try_from(max_len - 1).unwrap_or(u32::MAX).min(19);
    let largest_suffix = 10u64.pow(max_digits) - 1;

    // If the base itself ends in digits, e.g. `web12`, the suffix 12 would rebuild it (`web` +
    // `12`) and attempt 12 would repeat attempt 0; that one number is skipped.
    let base_digits = base.trim_end_matches(|c: char| c.is_ascii_digit());
    let base_digits = &base[base_digits.len()..];
    let skipped = if base_digits.starts_with('0') {
        None
    } else {
        base_digits
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= largest_suffix)
    };
    let usable = largest_suffix - u64::from(skipped.is_some());
    let wrapped = (u64::from(attempt) - 1) % usable + 1;
    let suffix = match skipped {
        Some(skip) if wrapped >= skip => wrapped + 1,
        _ => wrapped,
    };

    let digits = suffix.to_string();
    let keep = base.len().min(max_len - digits.len());
    let mut name = base[..keep]
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_owned();
    while name.len() + digits.len() < GENERATED_MIN_LEN {
        name.push('x');
    }
    name.push_str(&digits);
    name
}

/// The prefix the panel itself puts on every database and database user of `user`:
/// cPanel the first 8 characters plus `_` (§1.7), DirectAdmin the whole username plus `_`
/// (§3.7), Plesk none.
pub fn database_prefix(kind: PanelKind, user: &Username) -> String {
    match kind {
        PanelKind::Cpanel => format!("{}_", &user.as_str()[..user.as_str().len().min(8)]),
        PanelKind::Directadmin => format!("{user}_"),
        PanelKind::Plesk => String::new(),
    }
}

/// MySQL 5.7 limits user names to 32 characters (MariaDB allows 47); database names share the
/// limit so that the usual "one user per database, same name" setup works everywhere.
const MAX_DATABASE_NAME_LEN: usize = 32;

/// The full database (and database user) name for `user`, ready to send to the panel: always
/// prefixed (§1.7: whether UAPI adds the prefix itself is unconfirmed, so we never rely on it),
/// `suffix` reduced to `[a-z0-9_]` and shortened so the result is at most 32 characters.
///
/// Plesk adds no prefix, but its database names are unique per server, not per subscription,
/// so mpanel prefixes `<username>_` itself there to keep customers from colliding.
pub fn database_name(kind: PanelKind, user: &Username, suffix: &str) -> String {
    let prefix = match kind {
        PanelKind::Plesk => format!("{user}_"),
        PanelKind::Cpanel | PanelKind::Directadmin => database_prefix(kind, user),
    };
    let room = MAX_DATABASE_NAME_LEN - prefix.len();
    let cleaned: String = suffix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    let cleaned = cleaned.trim_matches('_');
    let cleaned = cleaned[..cleaned.len().min(room)].trim_end_matches('_');
    let cleaned = if cleaned.is_empty() { "db" } else { cleaned };
    format!("{prefix}{cleaned}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn domain(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    fn name(d: &str, kind: PanelKind, attempt: u32) -> String {
        username_for(&domain(d), kind, attempt).as_str().to_owned()
    }

    #[test]
    fn panel_kind_round_trips_through_str_and_serde() {
        for kind in PanelKind::ALL {
            assert_eq!(kind.as_str().parse::<PanelKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<PanelKind>(&json).unwrap(), kind);
        }
        assert_eq!(
            PanelKind::ALL.map(PanelKind::as_str),
            ["cpanel", "plesk", "directadmin"]
        );
    }

    #[test]
    fn panel_kind_parse_error_names_the_accepted_values() {
        let err = "cPanel".parse::<PanelKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown panel kind 'cPanel'; expected one of: cpanel, plesk, directadmin"
        );
    }

    #[test]
    fn cpanel_accepts_names_within_its_rules() {
        for ok in [
            "a",
            "bob",
            "shop2",
            "abcdefghijklmnop",
            "atest",
            "passwords",
        ] {
            assert!(validate_username(PanelKind::Cpanel, ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn cpanel_refuses_names_against_its_rules() {
        use UsernameError as E;
        let k = PanelKind::Cpanel;
        type Check = fn(&UsernameError) -> bool;
        let cases: &[(&str, &str, Check)] = &[
            ("empty", "", |e| *e == E::Empty),
            ("uppercase", "Bob", |e| {
                matches!(e, E::InvalidCharacter { ch: 'B', .. })
            }),
            ("hyphen", "my-shop", |e| {
                matches!(e, E::InvalidCharacter { ch: '-', .. })
            }),
            ("underscore", "my_shop", |e| {
                matches!(e, E::InvalidCharacter { ch: '_', .. })
            }),
            ("non-ascii", "münchen", |e| {
                matches!(e, E::InvalidCharacter { ch: 'ü', .. })
            }),
            ("leading digit", "1shop", |e| {
                matches!(e, E::MustStartWithLetter(_))
            }),
            ("17 chars", "abcdefghijklmnopq", |e| {
                matches!(e, E::TooLong { max: 16, .. })
            }),
            ("test prefix", "testshop", |e| {
                matches!(e, E::StartsWithTest(_))
            }),
            ("just test", "test", |e| matches!(e, E::StartsWithTest(_))),
            ("assword suffix", "mypassword", |e| {
                matches!(e, E::EndsWithAssword(_))
            }),
            ("reserved root", "root", |e| matches!(e, E::Reserved(_))),
            ("reserved www", "www", |e| matches!(e, E::Reserved(_))),
        ];
        for (why, input, check) in cases {
            let err = validate_username(k, input).unwrap_err();
            assert!(check(&err), "case '{why}': {input:?} refused for {err:?}");
        }
    }

    #[test]
    fn directadmin_enforces_three_to_ten_characters() {
        let k = PanelKind::Directadmin;
        assert!(validate_username(k, "abc").is_ok());
        assert!(validate_username(k, "abcdefghij").is_ok());
        // cPanel-only affixes are not DirectAdmin rules.
        assert!(validate_username(k, "testshop").is_ok());
        assert!(matches!(
            validate_username(k, "ab"),
            Err(UsernameError::TooShort { min: 3, .. })
        ));
        assert!(matches!(
            validate_username(k, "abcdefghijk"),
            Err(UsernameError::TooLong { max: 10, .. })
        ));
        assert!(matches!(
            validate_username(k, "admin"),
            Err(UsernameError::Reserved(_))
        ));
        assert!(matches!(
            validate_username(k, "9abc"),
            Err(UsernameError::MustStartWithLetter(_))
        ));
    }

    #[test]
    fn plesk_uses_the_defensive_subset() {
        let k = PanelKind::Plesk;
        assert!(validate_username(k, "a").is_ok());
        assert!(validate_username(k, "abcdefghijklmnop").is_ok());
        assert!(validate_username(k, "abcdefghijklmnopq").is_err());
        assert!(validate_username(k, "john.doe").is_err());
        assert!(validate_username(k, "root").is_err());
        assert!(validate_username(k, "John").is_err());
    }

    #[test]
    fn username_error_messages_say_why() {
        let msg = |k, s| validate_username(k, s).unwrap_err().to_string();
        assert_eq!(
            msg(PanelKind::Directadmin, "ab"),
            "'ab' is 2 characters long; DirectAdmin needs at least 3"
        );
        assert_eq!(
            msg(PanelKind::Cpanel, "testshop"),
            "'testshop' starts with 'test', which cPanel refuses"
        );
        assert_eq!(
            msg(PanelKind::Cpanel, "root"),
            "'root' is reserved for the system or the panel"
        );
    }

    #[test]
    fn base_name_comes_from_the_labels_before_the_tld() {
        let cases = [
            ("plain", "example.com", PanelKind::Plesk, "example"),
            (
                "cut to 8 on cpanel",
                "example.com",
                PanelKind::Cpanel,
                "example",
            ),
            (
                "long on cpanel",
                "mywonderfulshop.com",
                PanelKind::Cpanel,
                "mywonder",
            ),
            (
                "long on directadmin",
                "mywonderfulshop.com",
                PanelKind::Directadmin,
                "mywonderfu",
            ),
            (
                "long on plesk",
                "mywonderfulshop.com",
                PanelKind::Plesk,
                "mywonderfulshop",
            ),
            ("www skipped", "www.shop.co.uk", PanelKind::Plesk, "shopco"),
            ("hyphens dropped", "my-shop.de", PanelKind::Plesk, "myshop"),
            (
                "digit first gets a letter",
                "1password.com",
                PanelKind::Cpanel,
                "u1passwo",
            ),
            (
                "test prefix gets a letter",
                "testlab.org",
                PanelKind::Cpanel,
                "utestlab",
            ),
            (
                "short name takes the tld",
                "ab.io",
                PanelKind::Plesk,
                "abio",
            ),
            ("still short is padded", "a.b", PanelKind::Plesk, "abxx"),
            (
                "assword ending cut",
                "password.com",
                PanelKind::Cpanel,
                "passwor",
            ),
            (
                "reserved gets a letter",
                "admin.net",
                PanelKind::Cpanel,
                "uadmin",
            ),
            (
                "idn drops xn--",
                "münchen.de",
                PanelKind::Plesk,
                "mnchen3ya",
            ),
            ("www alone is kept", "www.com", PanelKind::Plesk, "wwwcom"),
        ];
        for (why, d, kind, want) in cases {
            assert_eq!(name(d, kind, 0), want, "case '{why}'");
        }
    }

    #[test]
    fn collision_suffix_replaces_the_tail() {
        assert_eq!(
            name("mywonderfulshop.com", PanelKind::Cpanel, 1),
            "mywonde1"
        );
        assert_eq!(
            name("mywonderfulshop.com", PanelKind::Cpanel, 42),
            "mywond42"
        );
        assert_eq!(name("example.com", PanelKind::Plesk, 3), "example3");
        assert_eq!(
            name("example.com", PanelKind::Cpanel, 9_999_999),
            "e9999999"
        );
    }

    #[test]
    fn collision_suffix_never_rebuilds_a_base_that_ends_in_digits() {
        let d = domain("web12.com");
        let base = username_for(&d, PanelKind::Cpanel, 0);
        assert_eq!(base.as_str(), "web12");
        assert_eq!(username_for(&d, PanelKind::Cpanel, 11).as_str(), "web11");
        assert_eq!(username_for(&d, PanelKind::Cpanel, 12).as_str(), "web13");
    }

    #[test]
    fn huge_attempts_stay_within_limits() {
        let d = domain("example.com");
        for kind in PanelKind::ALL {
            for attempt in [u32::MAX, u32::MAX - 1, 1_000_000_000, 10_000_000] {
                let u = username_for(&d, kind, attempt);
                assert!(
                    validate_username(kind, u.as_str()).is_ok(),
                    "{kind} {attempt}: {u}"
                );
            }
        }
    }

    #[test]
    fn generated_names_for_reserved_words_are_valid() {
        for word in RESERVED {
            for tld in ["com", "de"] {
                let d = domain(&format!("{word}.{tld}"));
                for kind in PanelKind::ALL {
                    for attempt in [0, 1, 12] {
                        let u = username_for(&d, kind, attempt);
                        assert!(
                            validate_username(kind, u.as_str()).is_ok(),
                            "{word}.{tld} {kind} {attempt}: {u}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn database_prefix_follows_each_panel() {
        let long = validate_username(PanelKind::Cpanel, "abcdefghijk").unwrap();
        let short = validate_username(PanelKind::Cpanel, "shop").unwrap();
        assert_eq!(database_prefix(PanelKind::Cpanel, &long), "abcdefgh_");
        assert_eq!(database_prefix(PanelKind::Cpanel, &short), "shop_");
        assert_eq!(database_prefix(PanelKind::Directadmin, &short), "shop_");
        assert_eq!(database_prefix(PanelKind::Plesk, &short), "");
    }

    #[test]
    fn database_name_is_prefixed_cleaned_and_at_most_32() {
        let u = validate_username(PanelKind::Cpanel, "abcdefghijk").unwrap();
        assert_eq!(database_name(PanelKind::Cpanel, &u, "wp"), "abcdefgh_wp");
        assert_eq!(
            database_name(PanelKind::Cpanel, &u, "My-Blog DB"),
            "abcdefgh_myblogdb"
        );
        assert_eq!(database_name(PanelKind::Cpanel, &u, "--"), "abcdefgh_db");
        assert_eq!(
            database_name(PanelKind::Directadmin, &u, "wp"),
            "abcdefghijk_wp"
        );
        assert_eq!(database_name(PanelKind::Plesk, &u, "wp"), "abcdefghijk_wp");
        let long = database_name(PanelKind::Plesk, &u, &"x_".repeat(40));
        assert!(long.len() <= 32 && !long.ends_with('_'), "{long}");
    }

    #[test]
    fn username_serde_is_a_plain_checked_string() {
        let u = validate_username(PanelKind::Cpanel, "shop").unwrap();
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"shop\"");
        assert_eq!(serde_json::from_str::<Username>("\"shop\"").unwrap(), u);
        assert!(serde_json::from_str::<Username>("\"Shop\"").is_err());
        assert!(serde_json::from_str::<Username>("\"abcdefghijklmnopq\"").is_err());
    }

    fn valid_domain() -> impl Strategy<Value = DomainName> {
        let label = "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?";
        let idn = prop::sample::select(vec!["", "münchen", "例え", "пример", "www"]);
        (
            prop::collection::vec(label, 0..=3),
            idn,
            "[a-z][a-z0-9]{1,6}",
        )
            .prop_filter_map("not a domain", |(mut labels, idn, tld)| {
                if !idn.is_empty() {
                    labels.insert(0, idn.to_owned());
                }
                labels.push(tld);
                DomainName::parse(&labels.join(".")).ok()
            })
    }

    proptest! {
        #[test]
        fn generated_names_always_validate(d in valid_domain(), attempt in 0u32..1000) {
            for kind in PanelKind::ALL {
                let u = username_for(&d, kind, attempt);
                prop_assert_eq!(validate_username(kind, u.as_str()), Ok(u.clone()));
                prop_assert!(u.as_str().len() <= kind.rules().generated_max_len);
                prop_assert_eq!(username_for(&d, kind, attempt), u);
            }
        }

        #[test]
        fn different_attempts_give_different_names(d in valid_domain()) {
            for kind in PanelKind::ALL {
                let mut seen = HashSet::new();
                for attempt in 0..1000 {
                    let u = username_for(&d, kind, attempt);
                    prop_assert!(seen.insert(u.clone()), "{} attempt {} repeats {}", kind, attempt, u);
                }
            }
        }

        #[test]
        fn database_names_fit_mysql_limits(d in valid_domain(), suffix in ".{0,60}") {
            for kind in PanelKind::ALL {
                let u = username_for(&d, kind, 0);
                let db = database_name(kind, &u, &suffix);
                prop_assert!(db.len() <= 32, "{}", db);
                prop_assert!(db.starts_with(&database_prefix(kind, &u)));
                prop_assert!(db.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            }
        }
    }
}
