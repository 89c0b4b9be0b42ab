//! Email templates: the built-in ones shipped in the binary, each overridable by a file of the
//! same name in `EMAIL_TEMPLATES_DIR`.
//!
//! A message `NAME` has three templates: `NAME.subject.txt`, `NAME.txt` (the plain-text part)
//! and `NAME.html` (the HTML part, auto-escaped). Override files are read on use and reloaded
//! when they change, so an admin edits them without restarting. Undefined variables fail the
//! render when printed (a typo in an override shows up as an error, not as a blank), but may be
//! tested with `{% if %}`.

use std::path::PathBuf;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, TemplateSource, UndefinedBehavior};

/// The built-in templates, by file name.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "welcome.subject.txt",
        include_str!("../../templates/welcome.subject.txt"),
    ),
    ("welcome.txt", include_str!("../../templates/welcome.txt")),
    ("welcome.html", include_str!("../../templates/welcome.html")),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("email template '{0}' does not exist")]
    Unknown(String),
    #[error("email template '{name}': {message}")]
    Render { name: String, message: String },
}

/// One message rendered: what goes into the `Subject:` header and the two alternative parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

// The parts carry credentials: never print them.
impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rendered(***)")
    }
}

/// The template environment. Cheap to share behind an `Arc`.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    /// Built-in templates, overridden by files in `override_dir` when given.
    pub fn new(override_dir: Option<PathBuf>) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // Block tags on their own lines leave no blank lines behind, as in Jinja2 with
        // `trim_blocks` and `lstrip_blocks`.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        // Only `.html` is escaped; the subject and the text part are plain text.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let from_dir = override_dir.map(minijinja::path_loader);
        env.set_loader(move |name| {
            if let Some(load) = &from_dir
                && let Some(source) = load(name)?
            {
                return Ok(Some(source));
            }
            Ok(BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| TemplateSource::from(*text)))
        });
        Self { env }
    }

    /// Renders the subject, text and HTML of message `name` with `context` (any serialisable
    /// value, usually a JSON object).
    pub fn render(
        &self,
        name: &str,
        context: &impl serde::Serialize,
    ) -> Result<Rendered, TemplateError> {
        let ctx = minijinja::Value::from(Serde(context));
        let part = |file: String| -> Result<String, TemplateError> {
            let template = self.env.get_template(&file).map_err(|e| {
                if e.kind() == minijinja::ErrorKind::TemplateNotFound {
                    TemplateError::Unknown(file.clone())
                } else {
                    render_error(&file, &e)
                }
            })?;
            template
                .render(ctx.clone())
                .map_err(|e| render_error(&file, &e))
        };
        let subject = part(format!("{name}.subject.txt"))?;
        Ok(Rendered {
            // A header is one line: keep the first, trimmed.
            subject: subject.lines().next().unwrap_or_default().trim().to_owned(),
            text: part(format!("{name}.txt"))?,
            html: part(format!("{name}.html"))?,
        })
    }
}

/// The error's own line and location only: minijinja's alternate (`{:#}`) form prints the
/// template's variables, which here are credentials.
fn render_error(file: &str, e: &minijinja::Error) -> TemplateError {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if let Some(line) = e.line() {
        message.push_str(&format!(" (line {line})"));
    }
    TemplateError::Render {
        name: file.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn welcome_context() -> serde_json::Value {
        json!({
            "company_name": "Acme <Hosting>",
            "support_email": "help@acme.example",
            "domain": "shop.example",
            "panel_url": "https://web1.acme.example:2083",
            "username": "shopexam",
            "password": "pAnel-pw.1",
            "nameservers": ["ns1.acme.example", "ns2.acme.example"],
            "mailbox": {"address": "admin@shop.example", "password": "mAil-pw.2"},
            "database": {"name": "shopexam_main", "user": "shopexam_main", "host": "localhost", "password": "dB-pw.3"},
        })
    }

    #[test]
    fn the_built_in_welcome_carries_every_credential_in_both_parts() {
        let r = Templates::new(None)
            .render("welcome", &welcome_context())
            .unwrap();
        assert_eq!(r.subject, "Your hosting for shop.example is ready");
        // minijinja escapes `/` too (`&#x2f;`), which browsers read back as `/`.
        let html = r.html.replace("&#x2f;", "/");
        for part in [&r.text, &html] {
            for needle in [
                "https://web1.acme.example:2083",
                "shopexam",
                "pAnel-pw.1",
                "ns1.acme.example",
                "ns2.acme.example",
                "admin@shop.example",
                "mAil-pw.2",
                "shopexam_main",
                "dB-pw.3",
                "Getting started",
                "help@acme.example",
            ] {
                assert!(part.contains(needle), "{needle} missing from:\n{part}");
            }
        }
        // The HTML part is escaped, the text part is not.
        assert!(r.html.contains("Acme &lt;Hosting&gt;"));
        assert!(r.text.contains("Acme <Hosting>"));
    }

    #[test]
    fn sections_without_data_are_left_out() {
        let mut ctx = welcome_context();
        ctx["mailbox"] = serde_json::Value::Null;
        ctx["database"] = serde_json::Value::Null;
        ctx["support_email"] = serde_json::Value::Null;
        let r = Templates::new(None).render("welcome", &ctx).unwrap();
        for part in [&r.text, &r.html] {
            assert!(!part.contains("Mailbox") && !part.contains("Database"));
            assert!(!part.contains("Questions?"));
            assert!(part.contains("pAnel-pw.1"));
        }
    }

    #[test]
    fn a_file_in_the_override_directory_replaces_only_its_own_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("welcome.html"),
            "<p>{{ company_name }} says hi to {{ username }}</p>",
        )
        .unwrap();
        let r = Templates::new(Some(dir.path().to_owned()))
            .render("welcome", &welcome_context())
            .unwrap();
        assert_eq!(r.html, "<p>Acme &lt;Hosting&gt; says hi to shopexam</p>");
        assert!(r.text.contains("pAnel-pw.1"), "text falls back to built-in");
        assert_eq!(r.subject, "Your hosting for shop.example is ready");
    }

    #[test]
    fn a_typo_in_an_override_is_an_error_naming_the_file_without_the_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("welcome.txt"), "{{ pasword }}").unwrap();
        let err = Templates::new(Some(dir.path().to_owned()))
            .render("welcome", &welcome_context())
            .unwrap_err()
            .to_string();
        assert!(err.contains("welcome.txt"), "{err}");
        for secret in ["pAnel-pw.1", "mAil-pw.2", "dB-pw.3"] {
            assert!(!err.contains(secret), "{err}");
        }
    }

    #[test]
    fn an_unknown_message_is_reported_as_such() {
        let err = Templates::new(None).render("nope", &json!({})).unwrap_err();
        assert!(matches!(err, TemplateError::Unknown(_)), "{err}");
    }
}
