//! Why a command failed, the exit status that says so, and the one line printed on stderr.

use serde_json::Value;

#[derive(Debug)]
pub enum Failure {
    /// Bad usage or configuration: nothing was sent. Exit 2.
    Usage(String),
    /// The API answered with the contract's error body. Exit 1.
    Api {
        code: String,
        message: String,
        field: Option<String>,
    },
    /// The API could not be reached, answered something else, or a watched task failed. Exit 1.
    Runtime(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Api { .. } | Failure::Runtime(_) => 1,
        }
    }

    /// The error line, without the `error: ` prefix: e.g. `domain: 'x' is taken (conflict)`.
    pub fn line(&self) -> String {
        let text = match self {
            Failure::Usage(m) | Failure::Runtime(m) => m.clone(),
            Failure::Api {
                code,
                message,
                field,
                ..
            } => {
                // The API prefixes most messages with their field already.
                match field {
                    Some(f) if !message.starts_with(&format!("{f}:")) => {
                        format!("{f}: {message} ({code})")
                    }
                    _ => format!("{message} ({code})"),
                }
            }
        };
        one_line(&text)
    }

    /// A non-2xx answer (or one carrying an error object): the contract's error body when it is
    /// one, else the status and the start of the body.
    pub fn from_answer(status: u16, body: &Value, raw: &str) -> Failure {
        let error = &body["error"];
        if let Some(code) = error["code"].as_str() {
            return Failure::Api {
                code: code.to_owned(),
                message: error["message"].as_str().unwrap_or("").to_owned(),
                field: error["field"].as_str().map(str::to_owned),
            };
        }
        let excerpt: String = raw.trim().chars().take(200).collect();
        if excerpt.is_empty() {
            Failure::Runtime(format!("the API answered HTTP {status}"))
        } else {
            Failure::Runtime(format!("the API answered HTTP {status}: {excerpt}"))
        }
    }
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's own message is terse ("error sending request for url (…)"); the sources
        // say why (connection refused, timed out, certificate).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let msg = s.to_string();
            if !text.contains(&msg) {
                text.push_str(": ");
                text.push_str(&msg);
            }
            source = s.source();
        }
        Failure::Runtime(text)
    }
}

/// Newlines and runs of spaces folded, so an error is one line whatever its source.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_api_error_names_its_field_once_and_its_code() {
        let body = json!({"error": {"code": "conflict", "message": "domain: example.com is taken", "field": "domain"}});
        let f = Failure::from_answer(409, &body, "");
        assert_eq!(f.line(), "domain: example.com is taken (conflict)");
        assert_eq!(f.exit_code(), 1);
        let body = json!({"error": {"code": "not_found", "message": "service 9 not found", "field": "serviceId"}});
        assert_eq!(
            Failure::from_answer(404, &body, "").line(),
            "serviceId: service 9 not found (not_found)"
        );
    }

    #[test]
    fn other_answers_name_the_status_in_one_line() {
        let f = Failure::from_answer(502, &Value::Null, "<html>\nbad\ngateway</html>");
        assert_eq!(
            f.line(),
            "the API answered HTTP 502: <html> bad gateway</html>"
        );
        assert_eq!(Failure::Usage("x\ny".into()).line(), "x y");
        assert_eq!(Failure::Usage(String::new()).exit_code(), 2);
    }
}
