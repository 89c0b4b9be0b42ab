//! Customer domain names: [`DomainName`] is the only way a host name enters mpanel.
//!
//! Parsing normalises (trim, lowercase, one trailing dot dropped, IDN → punycode via UTS-46) and
//! then checks the DNS host-name rules, so everything downstream (panels, DNS zones, ACME, the
//! username generator) can treat the string as plain LDH ASCII. It does not check that the domain
//! is registered, resolvable or under a public suffix: that needs I/O or data this crate does not
//! carry.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Serialize};

/// RFC 1035 limits, counted on the ASCII (punycode) form without the root dot.
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Inputs are echoed in error messages, which reach logs and API responses; a cap stops a
/// megabyte of junk from being copied into each of them.
const MAX_ECHO_CHARS: usize = 80;

/// Why a string is not an acceptable domain name. Each message reads naturally after
/// "domain: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("is empty")]
    Empty,
    // The input itself is not echoed: control characters in a log line are an injection risk.
    #[error("contains a control character")]
    ControlCharacter,
    #[error("'{0}' contains whitespace")]
    Whitespace(String),
    #[error("'{0}' is a URL; give only the domain name, without 'http://' or similar")]
    Scheme(String),
    #[error("'{0}' contains '@'; give a domain name, not an email address")]
    AtSign(String),
    #[error("'{0}' is an IP address, not a domain name")]
    IpAddress(String),
    #[error("'{0}' contains '/'; give only the domain name, without a path")]
    Path(String),
    #[error("'{0}' contains ':'; give only the domain name, without a port")]
    Port(String),
    #[error("'{0}' is a wildcard; give one concrete domain name")]
    Wildcard(String),
    #[error("'{0}' contains '_', which is not allowed in a host name")]
    Underscore(String),
    #[error("'{input}' contains '{ch}', which is not allowed in a domain name")]
    InvalidCharacter { input: String, ch: char },
    #[error("'{0}' starts with a dot")]
    LeadingDot(String),
    #[error("'{0}' ends with more than one dot")]
    TrailingDots(String),
    #[error("'{0}' has an empty label (two dots in a row)")]
    EmptyLabel(String),
    #[error("'{0}' is not a valid internationalised domain name (rejected by UTS-46)")]
    Idna(String),
    #[error("label '{label}' is {len} characters long; the limit is 63")]
    LabelTooLong { label: String, len: usize },
    #[error("label '{0}' starts with a hyphen")]
    LabelStartsWithHyphen(String),
    #[error("label '{0}' ends with a hyphen")]
    LabelEndsWithHyphen(String),
    #[error("is {0} characters long in ASCII form; the limit is 253")]
    TooLong(usize),
    #[error("'{0}' has only one label; a domain name needs at least two, like example.com")]
    SingleLabel(String),
    #[error("top-level domain '{0}' is all digits")]
    NumericTld(String),
}

/// A validated, normalised domain name: lowercase ASCII, punycode for IDNs, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    /// Normalises and validates `input`; see the module docs for what is and is not checked.
    pub fn parse(input: &str) -> Result<DomainName, DomainError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(DomainError::Empty);
        }
        // ASCII-only lowercasing: full Unicode case mapping is UTS-46's job, and doing it twice
        // with different tables could change what UTS-46 sees.
        let lowered = trimmed.to_ascii_lowercase();
        check_before_idna(&lowered)?;

        let ascii = Uts46::new()
            .to_ascii(
                lowered.as_bytes(),
                AsciiDenyList::STD3,
                // Leading/trailing hyphens are checked below with a clearer message; UTS-46's
                // stricter "--" in positions 3-4 rule would also refuse real registered names.
                Hyphens::Allow,
                DnsLength::Ignore,
            )
            .map_err(|_| DomainError::Idna(echo(trimmed)))?;

        // Stripped after UTS-46 so that a trailing ideographic full stop counts as the one
        // allowed root dot, just like an ASCII one.
        let name = ascii.strip_suffix('.').unwrap_or(&ascii);
        check_ascii_form(name, trimmed)?;
        Ok(DomainName(name.to_owned()))
    }

    /// The normalised ASCII form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Labels from left to right, e.g. `["www", "example", "com"]`.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// The Unicode form for showing to people (never for talking to a panel or DNS).
    pub fn to_unicode(&self) -> String {
        // Every label already passed UTS-46 in `parse`, so decoding cannot fail; if it ever
        // did, the ASCII form is still a correct, if less friendly, thing to show.
        match idna::domain_to_unicode(&self.0) {
            (unicode, Ok(())) => unicode,
            (_, Err(_)) => self.0.clone(),
        }
    }
}

/// Checks that need the raw text: UTS-46 would either map these characters away or fail with
/// a message too vague to help the person who typed them.
fn check_before_idna(s: &str) -> Result<(), DomainError> {
    if s.chars().any(char::is_control) {
        return Err(DomainError::ControlCharacter);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(DomainError::Whitespace(echo(s)));
    }
    if s.contains("://") {
        return Err(DomainError::Scheme(echo(s)));
    }
    if s.contains('@') {
        return Err(DomainError::AtSign(echo(s)));
    }
    if looks_like_ip(s) {
        return Err(DomainError::IpAddress(echo(s)));
    }
    if s.contains('/') {
        return Err(DomainError::Path(echo(s)));
    }
    if s.contains(':') {
        return Err(DomainError::Port(echo(s)));
    }
    if s.contains('*') {
        return Err(DomainError::Wildcard(echo(s)));
    }
    if s.contains('_') {
        return Err(DomainError::Underscore(echo(s)));
    }
    if let Some(ch) = s
        .chars()
        .find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(DomainError::InvalidCharacter { input: echo(s), ch });
    }
    if s.starts_with('.') {
        return Err(DomainError::LeadingDot(echo(s)));
    }
    if s.ends_with("..") {
        return Err(DomainError::TrailingDots(echo(s)));
    }
    if s.contains("..") {
        return Err(DomainError::EmptyLabel(echo(s)));
    }
    Ok(())
}

/// The host-name rules, applied to UTS-46 output (which may contain dots that were full-width
/// or ideographic in the input, hence the repeated dot checks).
fn check_ascii_form(name: &str, original: &str) -> Result<(), DomainError> {
    if name.is_empty() {
        return Err(DomainError::Empty);
    }
    if name.starts_with('.') {
        return Err(DomainError::LeadingDot(echo(original)));
    }
    if name.ends_with('.') || name.contains("..") {
        return Err(DomainError::EmptyLabel(echo(original)));
    }
    // Full-width digits map to ASCII digits, so an IP address can appear only now.
    if looks_like_ip(name) {
        return Err(DomainError::IpAddress(echo(original)));
    }
    for label in name.split('.') {
        if let Some(ch) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(DomainError::InvalidCharacter {
                input: echo(original),
                ch,
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DomainError::LabelTooLong {
                label: echo(label),
                len: label.len(),
            });
        }
        if label.starts_with('-') {
            return Err(DomainError::LabelStartsWithHyphen(echo(label)));
        }
        if label.ends_with('-') {
            return Err(DomainError::LabelEndsWithHyphen(echo(label)));
        }
    }
    if name.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong(name.len()));
    }
    let Some((_, tld)) = name.rsplit_once('.') else {
        return Err(DomainError::SingleLabel(echo(original)));
    };
    // An all-numeric TLD would make the name indistinguishable from (part of) an IPv4 address
    // to resolvers; no real TLD is numeric.
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::NumericTld(echo(tld)));
    }
    Ok(())
}

/// True for `1.2.3.4`, `1.2.3.4.`, `::1`, `[::1]`, and either family followed by a port.
fn looks_like_ip(s: &str) -> bool {
    let host = if let Some(rest) = s.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if s.matches(':').count() == 1 {
        // `host:port`; a bare IPv6 address has at least two colons.
        s.split(':').next().unwrap_or(s)
    } else {
        s
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.parse::<IpAddr>().is_ok()
}

/// The input as it may be quoted in an error message: shortened, and with invisible characters
/// (zero-width joiners, direction marks) escaped so the message shows what was really typed.
fn echo(s: &str) -> String {
    let mut shown: String = s
        .chars()
        .take(MAX_ECHO_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().nth(MAX_ECHO_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for DomainName {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainName::parse(s)
    }
}

impl TryFrom<String> for DomainName {
    type Error = DomainError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        DomainName::parse(&s)
    }
}

impl TryFrom<&str> for DomainName {
    type Error = DomainError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        DomainName::parse(s)
    }
}

impl From<DomainName> for String {
    fn from(d: DomainName) -> String {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(input: &str) -> String {
        match DomainName::parse(input) {
            Ok(d) => d.as_str().to_owned(),
            Err(e) => panic!("{input:?} should parse, got: domain: {e}"),
        }
    }

    #[test]
    fn accepts_and_normalises_good_names() {
        let label63 = "a".repeat(63);
        // 4 labels of 63 plus 3 dots = 255; trim the last to reach exactly 253.
        let name253 = format!("{l}.{l}.{l}.{}", "b".repeat(61), l = label63);
        assert_eq!(name253.len(), 253);
        let cases: Vec<(&str, String, &str)> = vec![
            ("plain", "example.com".into(), "example.com"),
            ("uppercase", "EXAMPLE.COM".into(), "example.com"),
            ("mixed case", "ExAmPlE.CoM".into(), "example.com"),
            (
                "surrounding whitespace",
                "  example.com\n".into(),
                "example.com",
            ),
            ("one trailing dot", "example.com.".into(), "example.com"),
            (
                "subdomain",
                "www.shop.example.co.uk".into(),
                "www.shop.example.co.uk",
            ),
            ("hyphen inside", "my-site.example".into(), "my-site.example"),
            ("double hyphen inside", "ab--cd.com".into(), "ab--cd.com"),
            ("digit-first label", "1password.com".into(), "1password.com"),
            (
                "all-digit non-tld label",
                "123.example.com".into(),
                "123.example.com",
            ),
            ("single-letter labels", "a.b.c".into(), "a.b.c"),
            ("alphanumeric tld", "example.a1".into(), "example.a1"),
            ("idn german", "münchen.de".into(), "xn--mnchen-3ya.de"),
            ("idn uppercase", "MÜNCHEN.DE".into(), "xn--mnchen-3ya.de"),
            ("idn japanese", "例え.jp".into(), "xn--r8jz45g.jp"),
            ("idn tld", "пример.рф".into(), "xn--e1afmkfd.xn--p1ai"),
            (
                "punycode already",
                "xn--mnchen-3ya.de".into(),
                "xn--mnchen-3ya.de",
            ),
            (
                "punycode uppercase",
                "XN--MNCHEN-3YA.DE".into(),
                "xn--mnchen-3ya.de",
            ),
            ("ideographic full stop", "例え。jp".into(), "xn--r8jz45g.jp"),
            (
                "full-width letters",
                "ｅｘａｍｐｌｅ.com".into(),
                "example.com",
            ),
            ("63-char label", format!("{label63}.com"), ""),
            ("253 chars total", name253, ""),
        ];
        for (why, input, want) in cases {
            let got = parsed(&input);
            let want = if want.is_empty() {
                input.as_str()
            } else {
                want
            };
            assert_eq!(got, want, "case '{why}'");
        }
    }

    /// One named case per kind of bad input. The variant is checked too, so that a case
    /// rejected for the wrong reason (e.g. by UTS-46 instead of our own rule) is noticed.
    #[test]
    fn rejects_each_kind_of_bad_input_with_its_reason() {
        use DomainError as E;
        let long_label = format!("{}.com", "a".repeat(64));
        let too_long = vec!["a".repeat(63); 4].join(".");
        type Check = fn(&DomainError) -> bool;
        let cases: Vec<(&str, String, Check)> = vec![
            ("empty", "".into(), |e| *e == E::Empty),
            ("only whitespace", " \t ".into(), |e| *e == E::Empty),
            ("space inside", "exa mple.com".into(), |e| {
                matches!(e, E::Whitespace(_))
            }),
            ("no-break space inside", "exa\u{a0}mple.com".into(), |e| {
                matches!(e, E::Whitespace(_))
            }),
            (
                "ideographic space inside",
                "例え\u{3000}.jp".into(),
                |e| matches!(e, E::Whitespace(_)),
            ),
            ("tab inside", "exa\tmple.com".into(), |e| {
                *e == E::ControlCharacter
            }),
            ("newline inside", "example.com\nevil.com".into(), |e| {
                *e == E::ControlCharacter
            }),
            ("nul byte", "example\0.com".into(), |e| {
                *e == E::ControlCharacter
            }),
            ("del character", "example\u{7f}.com".into(), |e| {
                *e == E::ControlCharacter
            }),
            ("ipv4", "1.2.3.4".into(), |e| matches!(e, E::IpAddress(_))),
            ("ipv4 with trailing dot", "10.0.0.1.".into(), |e| {
                matches!(e, E::IpAddress(_))
            }),
            ("ipv4 with port", "1.2.3.4:80".into(), |e| {
                matches!(e, E::IpAddress(_))
            }),
            ("ipv6 loopback", "::1".into(), |e| {
                matches!(e, E::IpAddress(_))
            }),
            ("ipv6 full", "2001:db8::1".into(), |e| {
                matches!(e, E::IpAddress(_))
            }),
            ("bracketed ipv6", "[2001:db8::1]".into(), |e| {
                matches!(e, E::IpAddress(_))
            }),
            ("bracketed ipv6 with port", "[::1]:443".into(), |e| {
                matches!(e, E::IpAddress(_))
            }),
            ("bracketed ipv4", "[1.2.3.4]".into(), |e| {
                matches!(e, E::IpAddress(_))
            }),
            ("full-width ipv4", "１.２.３.４".into(), |e| {
                matches!(e, E::IpAddress(_))
            }),
            ("wildcard label", "*.example.com".into(), |e| {
                matches!(e, E::Wildcard(_))
            }),
            ("wildcard inside", "a.*.com".into(), |e| {
                matches!(e, E::Wildcard(_))
            }),
            ("path", "example.com/wp-admin".into(), |e| {
                matches!(e, E::Path(_))
            }),
            ("trailing slash", "example.com/".into(), |e| {
                matches!(e, E::Path(_))
            }),
            ("port", "example.com:8080".into(), |e| {
                matches!(e, E::Port(_))
            }),
            ("http scheme", "http://example.com".into(), |e| {
                matches!(e, E::Scheme(_))
            }),
            ("https url with path", "https://example.com/x".into(), |e| {
                matches!(e, E::Scheme(_))
            }),
            ("email address", "user@example.com".into(), |e| {
                matches!(e, E::AtSign(_))
            }),
            (
                "credentials in url form",
                "user:pw@example.com".into(),
                |e| matches!(e, E::AtSign(_)),
            ),
            ("underscore label", "_dmarc.example.com".into(), |e| {
                matches!(e, E::Underscore(_))
            }),
            ("underscore inside", "my_site.com".into(), |e| {
                matches!(e, E::Underscore(_))
            }),
            ("exclamation mark", "exa!mple.com".into(), |e| {
                matches!(e, E::InvalidCharacter { ch: '!', .. })
            }),
            ("query string", "example.com?a=1".into(), |e| {
                matches!(e, E::InvalidCharacter { ch: '?', .. })
            }),
            ("fragment", "example.com#top".into(), |e| {
                matches!(e, E::InvalidCharacter { ch: '#', .. })
            }),
            ("percent encoding", "ex%41mple.com".into(), |e| {
                matches!(e, E::InvalidCharacter { ch: '%', .. })
            }),
            ("comma", "example,com".into(), |e| {
                matches!(e, E::InvalidCharacter { ch: ',', .. })
            }),
            ("backslash", "example.com\\x".into(), |e| {
                matches!(e, E::InvalidCharacter { ch: '\\', .. })
            }),
            ("quote", "\"example.com\"".into(), |e| {
                matches!(e, E::InvalidCharacter { ch: '"', .. })
            }),
            ("brackets around a name", "[example.com]".into(), |e| {
                matches!(e, E::InvalidCharacter { ch: '[', .. })
            }),
            ("full-width underscore", "my＿site.com".into(), |e| {
                matches!(e, E::Idna(_))
            }),
            ("leading dot", ".example.com".into(), |e| {
                matches!(e, E::LeadingDot(_))
            }),
            ("only a dot", ".".into(), |e| matches!(e, E::LeadingDot(_))),
            ("two trailing dots", "example.com..".into(), |e| {
                matches!(e, E::TrailingDots(_))
            }),
            ("empty label", "example..com".into(), |e| {
                matches!(e, E::EmptyLabel(_))
            }),
            (
                "empty label via ideographic dots",
                "例え。。jp".into(),
                |e| matches!(e, E::EmptyLabel(_)),
            ),
            ("single label", "localhost".into(), |e| {
                matches!(e, E::SingleLabel(_))
            }),
            ("single label with dot", "localhost.".into(), |e| {
                matches!(e, E::SingleLabel(_))
            }),
            ("numeric tld", "example.123".into(), |e| {
                matches!(e, E::NumericTld(_))
            }),
            ("three numbers", "1.2.3".into(), |e| {
                matches!(e, E::NumericTld(_))
            }),
            ("ipv4 with leading zeros", "01.02.03.04".into(), |e| {
                matches!(e, E::NumericTld(_))
            }),
            ("label starts with hyphen", "-example.com".into(), |e| {
                matches!(e, E::LabelStartsWithHyphen(_))
            }),
            ("label ends with hyphen", "a-.com".into(), |e| {
                *e == E::LabelEndsWithHyphen("a-".into())
            }),
            ("tld ends with hyphen", "example.com-".into(), |e| {
                matches!(e, E::LabelEndsWithHyphen(_))
            }),
            ("label of one hyphen", "-.com".into(), |e| {
                matches!(e, E::LabelStartsWithHyphen(_))
            }),
            ("label over 63 chars", long_label, |e| {
                matches!(e, E::LabelTooLong { len: 64, .. })
            }),
            ("name over 253 chars", too_long, |e| *e == E::TooLong(255)),
            ("invalid punycode", "xn--ab-.com".into(), |e| {
                matches!(e, E::LabelEndsWithHyphen(_) | E::Idna(_))
            }),
            ("malformed punycode", "xn--a.com".into(), |e| {
                matches!(e, E::Idna(_))
            }),
            ("zero-width joiner", "a\u{200d}b.com".into(), |e| {
                matches!(e, E::Idna(_))
            }),
            ("leading combining mark", "\u{301}a.com".into(), |e| {
                matches!(e, E::Idna(_))
            }),
            ("replacement character", "ex\u{fffd}mple.com".into(), |e| {
                matches!(e, E::Idna(_))
            }),
            ("bidi rule violation", "a\u{5d0}.com".into(), |e| {
                matches!(e, E::Idna(_))
            }),
        ];
        assert!(cases.len() >= 35);
        for (why, input, check) in cases {
            match DomainName::parse(&input) {
                Ok(d) => panic!("case '{why}': {input:?} was accepted as {d}"),
                Err(e) => assert!(check(&e), "case '{why}': {input:?} rejected for: {e:?}"),
            }
        }
    }

    #[test]
    fn error_messages_say_why() {
        let msg = |s: &str| DomainName::parse(s).map(|_| ()).unwrap_err().to_string();
        assert_eq!(msg("a-.com"), "label 'a-' ends with a hyphen");
        assert_eq!(
            msg("1.2.3.4"),
            "'1.2.3.4' is an IP address, not a domain name"
        );
        assert_eq!(msg("example.123"), "top-level domain '123' is all digits");
        assert_eq!(msg(""), "is empty");
    }

    #[test]
    fn error_messages_cap_echoed_input() {
        let input = format!("{} x.com", "a".repeat(1000));
        let msg = DomainName::parse(&input)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 200, "message too long: {} bytes", msg.len());
    }

    #[test]
    fn control_characters_are_not_echoed() {
        let msg = DomainName::parse("a\u{1b}[31m.com")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(!msg.contains('\u{1b}'));
    }

    #[test]
    fn invisible_characters_are_escaped_in_messages() {
        let msg = DomainName::parse("a\u{200d}b.com")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("a\\u{200d}b.com"), "{msg}");
    }

    #[test]
    fn serde_is_a_plain_string_validated_on_deserialize() {
        let d = DomainName::parse("Example.COM.").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"example.com\"");
        let back: DomainName = serde_json::from_str("\"MÜNCHEN.de\"").unwrap();
        assert_eq!(back.as_str(), "xn--mnchen-3ya.de");
        let err = serde_json::from_str::<DomainName>("\"1.2.3.4\"").unwrap_err();
        assert!(err.to_string().contains("IP address"), "{err}");
    }

    #[test]
    fn from_str_display_and_as_ref_agree() {
        let d: DomainName = "WWW.Example.com".parse().unwrap();
        assert_eq!(d.to_string(), "www.example.com");
        assert_eq!(d.as_ref(), "www.example.com");
        assert_eq!(d.labels().collect::<Vec<_>>(), ["www", "example", "com"]);
    }

    #[test]
    fn to_unicode_shows_the_idn_form() {
        let d = DomainName::parse("xn--mnchen-3ya.de").unwrap();
        assert_eq!(d.to_unicode(), "münchen.de");
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
            .prop_filter("punycode prefix", |l| !l.starts_with("xn--"))
    }

    fn valid_domain() -> impl Strategy<Value = String> {
        (prop::collection::vec(label(), 1..=3), "[a-z][a-z0-9]{1,10}").prop_map(
            |(mut labels, tld)| {
                labels.push(tld);
                labels.join(".")
            },
        )
    }

    /// Mostly-valid names with odd characters spliced in, so that some are accepted and the
    /// normalisation paths (case, IDN, dots) are exercised by the idempotency property.
    fn messy_domain() -> impl Strategy<Value = String> {
        (valid_domain(), any::<usize>(), "[A-Zäöü例。．. -]{0,3}").prop_map(|(d, at, junk)| {
            let chars: Vec<char> = d.chars().collect();
            let at = at % (chars.len() + 1);
            let mut s: String = chars[..at].iter().collect();
            s.push_str(&junk);
            s.extend(&chars[at..]);
            s
        })
    }

    proptest! {
        #[test]
        fn random_valid_label_sequences_are_accepted_unchanged(d in valid_domain()) {
            prop_assert_eq!(DomainName::parse(&d).map(String::from), Ok(d.clone()));
            prop_assert_eq!(DomainName::parse(&d.to_uppercase()).map(String::from), Ok(d));
        }

        #[test]
        fn accepted_output_is_idempotent_lowercase_ascii_and_short(s in messy_domain()) {
            if let Ok(d) = DomainName::parse(&s) {
                let out = d.as_str();
                prop_assert!(out.len() <= 253);
                prop_assert!(out.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit() || b == b'-' || b == b'.'), "{}", out);
                prop_assert_eq!(DomainName::parse(out), Ok(d.clone()));
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            if let Ok(d) = DomainName::parse(&s) {
                let again = DomainName::parse(d.as_str());
                prop_assert_eq!(again, Ok(d));
            }
        }

        #[test]
        fn arbitrary_domain_like_strings_never_panic(s in "[a-z0-9.:/\\[\\]@*_ -]{0,40}") {
            let _ = DomainName::parse(&s);
        }
    }
}
