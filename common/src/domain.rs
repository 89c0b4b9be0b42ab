//! Customer domain names: [`DomainName`] is the only way a host name enters mpanel.
//!
//! Parsing normalises (trim, lowercase, one trailing dot dropped, IDN → punycode via UTS-46),
//! refuses what IDNA2008 disallows (RFC 5892: symbols, emoji, punctuation, the contextual rules),
//! and then checks the DNS host-name rules, so everything downstream (panels, DNS zones, ACME,
//! the username generator) can treat the string as plain LDH ASCII. A name that is valid but may
//! be built to pass for another (UTS-39: mixed scripts in one label, or a whole label of look-alike
//! letters) is accepted with [`DomainName::warnings`]. It does not check that the domain is
//! registered, resolvable or under a public suffix: that needs I/O or data this crate does not
//! carry.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use icu_properties::CodePointMapData;
use icu_properties::props::{GeneralCategory, HangulSyllableType, Script};
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Serialize};
use unicode_script::UnicodeScript;
use unicode_security::MixedScript;

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
    #[error("'{input}' contains '{ch}' (U+{code:04X}), which IDNA2008 does not allow {rule}", code = u32::from(*ch))]
    Idna2008 {
        input: String,
        ch: char,
        /// Why, read after "does not allow": "in a domain name", or the contextual rule.
        rule: &'static str,
    },
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
        for label in name.split('.') {
            check_idna2008(&unicode_label(label), trimmed)?;
        }
        Ok(DomainName(name.to_owned()))
    }

    /// What a person should look at before trusting this name (UTS-39), label by label; empty
    /// for plain ASCII names. The name is valid either way: these are for showing, not refusing.
    pub fn warnings(&self) -> Vec<DomainWarning> {
        self.labels()
            .filter(|label| label.starts_with("xn--"))
            .filter_map(|label| label_warning(&unicode_label(label)))
            .collect()
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

/// Why an accepted name may pass for another one (UTS-39, "Unicode Security Mechanisms").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainWarning {
    /// Letters of several scripts in one label, as in a Cyrillic `а` inside a Latin word: no
    /// language writes a word that way, spoofers do.
    #[error("label '{label}' mixes scripts ({}); it may be made to look like another name", .scripts.join(", "))]
    MixedScript {
        label: String,
        scripts: Vec<&'static str>,
    },
    /// A label written wholly in one non-Latin script whose letters all look like Latin ones
    /// (Cyrillic `аррӏе` for `apple`).
    #[error("label '{label}' ({script}) looks like the Latin '{looks_like}'")]
    WholeScriptConfusable {
        label: String,
        script: &'static str,
        looks_like: String,
    },
}

impl DomainWarning {
    /// A stable machine-readable name for the warning.
    pub fn code(&self) -> &'static str {
        match self {
            DomainWarning::MixedScript { .. } => "mixed_script",
            DomainWarning::WholeScriptConfusable { .. } => "whole_script_confusable",
        }
    }
}

/// The Unicode form of one ASCII label (`xn--…` decoded); other labels come back unchanged.
/// Only called on labels UTS-46 accepted, so a decoding failure cannot happen; the ASCII label
/// is then what gets checked, which is the safe direction.
fn unicode_label(label: &str) -> String {
    label
        .strip_prefix("xn--")
        .and_then(idna::punycode::decode_to_string)
        .unwrap_or_else(|| label.to_owned())
}

/// UTS-39 mixed-script detection on one Unicode label, then whole-script confusables.
fn label_warning(label: &str) -> Option<DomainWarning> {
    let scripts = scripts_of(label);
    if !label.is_single_script() {
        return Some(DomainWarning::MixedScript {
            label: label.to_owned(),
            scripts,
        });
    }
    // The skeleton maps every look-alike to one prototype; a non-Latin label whose skeleton is
    // plain LDH ASCII can be read as a Latin name.
    let looks_like: String = unicode_security::skeleton(label).collect();
    let latin_look_alike = looks_like
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    match scripts.as_slice() {
        [script] if *script != "Latin" && latin_look_alike => {
            Some(DomainWarning::WholeScriptConfusable {
                label: label.to_owned(),
                script,
                looks_like,
            })
        }
        _ => None,
    }
}

/// The scripts of a label's letters, in order of appearance; Common and Inherited (digits,
/// hyphen, combining marks) belong to every script and are left out.
fn scripts_of(label: &str) -> Vec<&'static str> {
    let mut scripts = Vec::new();
    for c in label.chars() {
        let script = c.script();
        if matches!(
            script,
            unicode_script::Script::Common | unicode_script::Script::Inherited
        ) {
            continue;
        }
        if !scripts.contains(&script.full_name()) {
            scripts.push(script.full_name());
        }
    }
    scripts
}

/// IDNA2008's derived property (RFC 5892 section 3) and its contextual rules (appendix A) on
/// one label in Unicode form. UTS-46 has already refused what it disallows and mapped the rest
/// (case, width, compatibility forms), so its output is stable under NFKC case folding and
/// free of default-ignorable, white-space and noncharacter code points, and its joiner checks
/// are the CONTEXTJ rules; what it still lets through and IDNA2008 does not is mostly symbols
/// (`☃`, emoji), punctuation and a few exceptions.
fn check_idna2008(label: &str, original: &str) -> Result<(), DomainError> {
    let chars: Vec<char> = label.chars().collect();
    for (i, &ch) in chars.iter().enumerate() {
        if ch.is_ascii() {
            continue;
        }
        let verdict = special_case(&chars, i).unwrap_or_else(|| {
            if protocol_valid(ch) {
                Ok(())
            } else {
                Err("in a domain name")
            }
        });
        verdict.map_err(|rule| DomainError::Idna2008 {
            input: echo(original),
            ch,
            rule,
        })?;
    }
    Ok(())
}

/// The verdict on `chars[i]` when it is one of RFC 5892's exceptions (section 2.6), a CONTEXTO
/// character (appendix A) or a joiner; `None` when the general rule decides. `Err` holds the
/// rule broken, read after "does not allow".
fn special_case(chars: &[char], i: usize) -> Option<Result<(), &'static str>> {
    let script = |c: char| CodePointMapData::<Script>::new().get(c);
    let require = |ok: bool, rule: &'static str| Some(if ok { Ok(()) } else { Err(rule) });
    let any = |range: std::ops::RangeInclusive<char>| chars.iter().any(|c| range.contains(c));
    let before = i.checked_sub(1).map(|j| chars[j]);
    let after = chars.get(i + 1).copied();
    match chars[i] {
        '\u{df}' | '\u{3c2}' | '\u{6fd}' | '\u{6fe}' | '\u{f0b}' | '\u{3007}' => Some(Ok(())),
        '\u{640}' | '\u{7fa}' | '\u{302e}' | '\u{302f}' | '\u{3031}'..='\u{3035}' | '\u{303b}' => {
            Some(Err("in a domain name"))
        }
        // MIDDLE DOT: Catalan "l·l" only.
        '\u{b7}' => require(
            before == Some('l') && after == Some('l'),
            "except between two 'l'",
        ),
        // GREEK LOWER NUMERAL SIGN
        '\u{375}' => require(
            after.map(script) == Some(Script::Greek),
            "except before a Greek letter",
        ),
        // HEBREW GERESH, GERSHAYIM
        '\u{5f3}' | '\u{5f4}' => require(
            before.map(script) == Some(Script::Hebrew),
            "except after a Hebrew letter",
        ),
        // KATAKANA MIDDLE DOT
        '\u{30fb}' => require(
            chars
                .iter()
                .any(|&c| matches!(script(c), Script::Hiragana | Script::Katakana | Script::Han)),
            "except in a label with Hiragana, Katakana or Han",
        ),
        '\u{660}'..='\u{669}' => require(
            !any('\u{6f0}'..='\u{6f9}'),
            "with extended Arabic-Indic digits in one label",
        ),
        '\u{6f0}'..='\u{6f9}' => require(
            !any('\u{660}'..='\u{669}'),
            "with Arabic-Indic digits in one label",
        ),
        // CONTEXTJ: UTS-46 applies the joiner rules itself.
        '\u{200c}' | '\u{200d}' => Some(Ok(())),
        _ => None,
    }
}

/// RFC 5892's general rule for a code point that is no exception: letters, digits and marks
/// (LetterDigits) are PVALID unless they sit in a block of symbols (IgnorableBlocks) or are
/// conjoining Hangul jamo (OldHangulJamo); everything else, symbols and punctuation above all,
/// is DISALLOWED.
fn protocol_valid(ch: char) -> bool {
    let ignorable_block = matches!(
        u32::from(ch),
        // Combining Diacritical Marks for Symbols, Musical Symbols, Ancient Greek Musical Notation.
        0x20D0..=0x20FF | 0x1D100..=0x1D1FF | 0x1D200..=0x1D24F
    );
    let old_hangul_jamo = matches!(
        CodePointMapData::<HangulSyllableType>::new().get(ch),
        HangulSyllableType::LeadingJamo
            | HangulSyllableType::VowelJamo
            | HangulSyllableType::TrailingJamo
    );
    let letter_digit = matches!(
        CodePointMapData::<GeneralCategory>::new().get(ch),
        GeneralCategory::LowercaseLetter
            | GeneralCategory::UppercaseLetter
            | GeneralCategory::OtherLetter
            | GeneralCategory::DecimalNumber
            | GeneralCategory::ModifierLetter
            | GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
    );
    letter_digit && !ignorable_block && !old_hangul_jamo
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
    fn idna2008_refuses_symbols_and_emoji_that_uts46_lets_through() {
        for (input, ch) in [
            ("☃.example", '☃'),
            ("xn--n3h.example", '☃'),
            ("i❤.example", '❤'),
            ("pizza🍕.example", '🍕'),
            ("a·b.example", '\u{b7}'),
            ("x€.example", '€'),
            ("check✓.example", '✓'),
            ("\u{30fb}abc.example", '\u{30fb}'),
            ("a\u{20dd}.example", '\u{20dd}'),
            ("\u{1100}x.example", '\u{1100}'),
        ] {
            match DomainName::parse(input) {
                Err(DomainError::Idna2008 { ch: got, .. }) => assert_eq!(got, ch, "{input}"),
                other => panic!("{input:?}: expected an IDNA2008 refusal, got {other:?}"),
            }
        }
        let message = DomainName::parse("☃.example").unwrap_err().to_string();
        assert!(message.contains("U+2603"), "{message}");
    }

    #[test]
    fn idna2008_contextual_characters_pass_in_their_context() {
        for input in ["col·lecció.cat", "faß.example", "ς.example", "カ・カ.jp"] {
            let d =
                DomainName::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert!(d.as_str().starts_with("xn--"), "{input}: {d}");
            assert_eq!(d.to_unicode(), input);
        }
    }

    #[test]
    fn mixed_script_labels_are_flagged_and_single_script_ones_are_not() {
        // Cyrillic U+0430 in place of the Latin 'a'.
        let spoof = DomainName::parse("p\u{0430}ypal.com").unwrap();
        let warnings = spoof.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].code(), "mixed_script");
        assert!(
            matches!(&warnings[0], DomainWarning::MixedScript { scripts, .. }
                if scripts.as_slice() == ["Latin", "Cyrillic"]),
            "{warnings:?}"
        );
        assert!(warnings[0].to_string().contains("Latin, Cyrillic"));
        for fine in [
            "example.com",
            "münchen.de",
            "пример.рф",
            "例え.jp",
            "カ・カ.jp",
        ] {
            let d = DomainName::parse(fine).unwrap();
            assert!(d.warnings().is_empty(), "{fine}: {:?}", d.warnings());
        }
    }

    #[test]
    fn whole_script_look_alikes_of_latin_names_are_flagged() {
        // All Cyrillic: а р р ӏ е.
        let d = DomainName::parse("\u{0430}\u{0440}\u{0440}\u{04cf}\u{0435}.com").unwrap();
        let warnings = d.warnings();
        assert!(
            matches!(
                warnings.as_slice(),
                [DomainWarning::WholeScriptConfusable {
                    script: "Cyrillic",
                    ..
                }]
            ),
            "{warnings:?}"
        );
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
