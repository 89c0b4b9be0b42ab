//! Field formats that several routes read or write the same way: free text shown to people,
//! customer domains, panel package names, and RFC 3339 times. Each refusal is a 400 naming the
//! field.

use mpanel_common::{DomainName, DomainWarning};

use super::error::{ApiError, ApiResult};

/// Free text that is shown to people: trimmed, 1 to `max` characters, no control characters.
pub(super) fn text(field: &str, raw: &str, max: usize) -> ApiResult<String> {
    let value = raw.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            "invalid_text",
            format!("must be 1 to {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "invalid_text",
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// The domain of an order or request, canonical; 400 `invalid_domain` naming `domain`.
pub(super) fn domain(raw: &str) -> ApiResult<DomainName> {
    DomainName::parse(raw).map_err(|e| ApiError::invalid("domain", "invalid_domain", e))
}

/// A domain's UTS-39 warnings as the order's answer lists them: like an error body's `error`,
/// `{"code","message","field"}`, but nothing was refused.
pub(super) fn domain_warnings(domain: &DomainName) -> Vec<Warning> {
    domain
        .warnings()
        .iter()
        .map(|w: &DomainWarning| Warning {
            code: w.code(),
            message: format!("domain: {w}"),
            field: "domain",
        })
        .collect()
}

/// Something an admin should see about an accepted input, shaped like an error's body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct Warning {
    #[schema(value_type = String)]
    code: &'static str,
    message: String,
    #[schema(value_type = String)]
    field: &'static str,
}

const MAX_PACKAGE_CHARS: usize = 64;

/// A panel package (plan) name. It travels to the panel inside form fields and query strings
/// (`plan=` on cPanel, `package=` on DirectAdmin) and into Plesk's JSON, so only what all three
/// accept in their package names is let through: ASCII letters, digits, space, `_`, `-` and `.`,
/// starting with a letter or digit. Anything else (`&`, `=`, `/`, quotes) could change the
/// request it is put into.
pub(super) fn package_name(field: &str, raw: &str) -> ApiResult<String> {
    let value = raw.trim();
    let bad = |why: String| ApiError::invalid(field, "invalid_package", why);
    if value.is_empty() || value.chars().count() > MAX_PACKAGE_CHARS {
        return Err(bad(format!("must be 1 to {MAX_PACKAGE_CHARS} characters")));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(bad(format!(
            "'{}' must start with a letter or digit",
            value.chars().take(40).collect::<String>()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.')))
    {
        return Err(bad(format!(
            "contains '{}'; a package name may hold letters, digits, space, '_', '-' and '.'",
            c.escape_debug()
        )));
    }
    Ok(value.to_owned())
}

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub(crate) fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A calendar date (`YYYY-MM-DD`) from a request, as the Unix milliseconds of its UTC midnight.
pub(super) fn date_ms(field: &str, raw: &str) -> ApiResult<i64> {
    mpanel_common::billing::parse_date(raw)
        .map(mpanel_common::billing::date_to_ms)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                "invalid_date",
                format!(
                    "'{}' is not a date such as 2027-01-31",
                    raw.chars().take(40).collect::<String>()
                ),
            )
        })
}

/// An instant from a request: an RFC 3339 date-time (`2027-01-31T12:00:00Z`) or a calendar date
/// (its UTC midnight), as Unix milliseconds.
pub(super) fn instant_ms(field: &str, raw: &str) -> ApiResult<i64> {
    if let Ok(t) = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
    {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| ApiError::invalid(field, "invalid_time", "is out of range"));
    }
    date_ms(field, raw).map_err(|_| {
        ApiError::invalid(
            field,
            "invalid_time",
            format!(
                "'{}' is not a time such as 2027-01-31T12:00:00Z or a date such as 2027-01-31",
                raw.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// A calendar date as `YYYY-MM-DD` from the Unix milliseconds of its UTC midnight.
pub(crate) fn date(ms: i64) -> String {
    mpanel_common::billing::format_date(mpanel_common::billing::ms_to_date(ms))
}

/// A deliverable-looking address (see [`crate::web::credentials::email_address`]), or a 400
/// naming `email`. Lower-cased, so the unique index catches the same address typed twice.
pub(super) fn email(raw: &str) -> ApiResult<String> {
    crate::web::credentials::email_address(raw)
        .map_err(|why| ApiError::invalid("email", "invalid_email", why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_take_what_panels_take() {
        for good in [
            "default",
            "Sample - Hosting",
            "gold_2.0",
            "Unlimited",
            "9to5",
        ] {
            assert_eq!(package_name("packages.cpanel", good).unwrap(), good);
        }
        assert_eq!(package_name("p", "  starter ").unwrap(), "starter");
        for bad in [
            "",
            "default&plan=x",
            "a=b",
            "../etc",
            "x/y",
            "-rf",
            "\"quoted\"",
            "tab\there",
            "pläne",
            &"x".repeat(65),
        ] {
            let e = package_name("packages.cpanel", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("packages.cpanel"), "{bad}");
            assert_eq!(e.code, "invalid_package", "{bad}");
        }
    }
}
