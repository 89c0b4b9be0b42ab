//! Reading a command's camelCase JSON payload field by field, so every rejection names the field
//! (`create_account: payload.domain is required`) and none repeats a secret's value.

use serde_json::Value;

use crate::panel::Secret;

/// Why a payload was refused. Always a permanent failure: the same payload fails the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PayloadError(pub(crate) String);

/// One command's payload. Absent and `null` fields are the same thing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Payload<'a> {
    command: &'static str,
    value: &'a Value,
}

impl<'a> Payload<'a> {
    pub(crate) fn new(command: &'static str, value: &'a Value) -> Result<Self, PayloadError> {
        if value.is_object() {
            Ok(Self { command, value })
        } else {
            Err(PayloadError(format!(
                "{command}: the payload must be a JSON object"
            )))
        }
    }

    /// An error about `field`; `problem` reads after "payload.<field> ".
    pub(crate) fn invalid(&self, field: &str, problem: impl std::fmt::Display) -> PayloadError {
        PayloadError(format!("{}: payload.{field} {problem}", self.command))
    }

    fn field(&self, field: &str) -> Option<&'a Value> {
        self.value.get(field).filter(|v| !v.is_null())
    }

    /// A required, non-blank string, trimmed.
    pub(crate) fn string(&self, field: &str) -> Result<&'a str, PayloadError> {
        self.opt_string(field)?
            .ok_or_else(|| self.invalid(field, "is required"))
    }

    /// An optional string; blank counts as absent.
    pub(crate) fn opt_string(&self, field: &str) -> Result<Option<&'a str>, PayloadError> {
        match self.field(field) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                Ok((!s.is_empty()).then_some(s))
            }
            Some(_) => Err(self.invalid(field, "must be a string")),
        }
    }

    /// A required password, exactly as sent (no trimming: spaces may be part of it). Messages
    /// never quote it.
    pub(crate) fn secret(&self, field: &str) -> Result<Secret, PayloadError> {
        match self.field(field) {
            None => Err(self.invalid(field, "is required")),
            Some(Value::String(s)) if s.is_empty() => Err(self.invalid(field, "is empty")),
            Some(Value::String(s)) => Ok(Secret::new(s.as_str())),
            Some(_) => Err(self.invalid(field, "must be a string")),
        }
    }

    /// A required integer.
    pub(crate) fn integer(&self, field: &str) -> Result<i64, PayloadError> {
        match self.field(field) {
            None => Err(self.invalid(field, "is required")),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| self.invalid(field, "must be an integer")),
        }
    }

    /// An optional non-negative integer.
    pub(crate) fn opt_unsigned(&self, field: &str) -> Result<Option<u64>, PayloadError> {
        match self.field(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.invalid(field, "must be a non-negative integer")),
        }
    }

    /// A required list of strings, each trimmed; blank entries are kept (the caller decides).
    pub(crate) fn string_list(&self, field: &str) -> Result<Vec<&'a str>, PayloadError> {
        match self.field(field) {
            None => Err(self.invalid(field, "is required")),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.trim()),
                    Value::Null => Ok(""),
                    _ => Err(self.invalid(&format!("{field}[{i}]"), "must be a string")),
                })
                .collect(),
            Some(_) => Err(self.invalid(field, "must be a list of strings")),
        }
    }

    /// An optional list of strings, as [`Self::string_list`].
    pub(crate) fn opt_string_list(
        &self,
        field: &str,
    ) -> Result<Option<Vec<&'a str>>, PayloadError> {
        match self.field(field) {
            None => Ok(None),
            Some(_) => self.string_list(field).map(Some),
        }
    }

    /// A required domain name, normalised (lowercase, punycode, no trailing dot).
    pub(crate) fn domain(&self, field: &str) -> Result<String, PayloadError> {
        let raw = self.string(field)?;
        mpanel_common::DomainName::parse(raw)
            .map(|d| d.as_str().to_owned())
            .map_err(|e| self.invalid(field, format_args!("is not a domain name: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_blank_and_mistyped_fields_are_named() {
        let v = json!({"a": "  ", "b": 5, "c": null, "pw": "x"});
        let p = Payload::new("cmd", &v).unwrap();
        assert_eq!(p.string("a").unwrap_err().0, "cmd: payload.a is required");
        assert_eq!(
            p.string("b").unwrap_err().0,
            "cmd: payload.b must be a string"
        );
        assert_eq!(p.opt_string("c").unwrap(), None);
        assert_eq!(p.integer("b").unwrap(), 5);
        assert!(p.integer("zz").unwrap_err().0.contains("payload.zz"));
        assert_eq!(p.secret("pw").unwrap().expose(), "x");
    }

    #[test]
    fn secret_errors_never_quote_the_value() {
        let v = json!({"password": 12345678});
        let p = Payload::new("cmd", &v).unwrap();
        let err = p.secret("password").unwrap_err().0;
        assert!(!err.contains("12345678"), "{err}");
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_refused() {
        assert!(Payload::new("cmd", &Value::Null).is_err());
        assert!(Payload::new("cmd", &json!([1])).is_err());
    }

    #[test]
    fn domains_are_normalised_and_checked() {
        let v = json!({"domain": "Example.COM.", "bad": "http://x.example"});
        let p = Payload::new("cmd", &v).unwrap();
        assert_eq!(p.domain("domain").unwrap(), "example.com");
        assert!(
            p.domain("bad")
                .unwrap_err()
                .0
                .starts_with("cmd: payload.bad is not a domain name")
        );
    }

    #[test]
    fn string_lists_name_the_bad_entry() {
        let v = json!({"ns": ["a", null, 3]});
        let p = Payload::new("cmd", &v).unwrap();
        assert_eq!(
            p.string_list("ns").unwrap_err().0,
            "cmd: payload.ns[2] must be a string"
        );
    }
}
