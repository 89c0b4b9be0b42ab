//! Email templates: the built-in ones shipped in the binary, each overridable by a file of the
//! same name in `EMAIL_TEMPLATES_DIR`.
//!
//! A message `NAME` has three templates: `NAME.subject.txt`, `NAME.txt` (the plain-text part)
//! and `NAME.html` (the HTML part, auto-escaped). Override files are read on use and reloaded
//! when they change, so an admin edits them without restarting. Undefined variables fail the
//! render when printed (a typo in an override shows up as an error, not as a blank), but may be
//! tested with `{% if %}`.
//!
//! Two filters of our own: `money` prints minor units with their currency, `decline_reason`
//! words a card decline. `templates/README.md` lists every message and its context.

use std::path::PathBuf;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, TemplateSource, UndefinedBehavior};
use mpanel_common::{Currency, Money};

/// The three files of each built-in message, by file name.
macro_rules! built_in {
    ($($name:literal),* $(,)?) => {
        &[$(
            (
                concat!($name, ".subject.txt"),
                include_str!(concat!("../../templates/", $name, ".subject.txt")),
            ),
            (
                concat!($name, ".txt"),
                include_str!(concat!("../../templates/", $name, ".txt")),
            ),
            (
                concat!($name, ".html"),
                include_str!(concat!("../../templates/", $name, ".html")),
            ),
        )*]
    };
}

/// The built-in templates, by file name. What each message's context holds is listed in
/// `templates/README.md`.
const BUILT_IN: &[(&str, &str)] = built_in![
    "welcome",
    "invoice",
    "payment_receipt",
    "payment_failed",
    "payment_action_required",
    "order_failed",
    "dispute_opened",
    "service_suspended",
    "service_terminated",
    "ssl_expiring",
    "over_quota",
    "account_verify",
    "password_reset",
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
        env.add_filter("money", money);
        env.add_filter("decline_reason", decline_reason);
        env.add_filter("size", size);
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

/// `{{ 1999|money("eur") }}` → `19.99 EUR`: an amount in minor units, printed with its
/// currency's decimals. Contexts carry integers, never preformatted amounts.
fn money(amount: i64, currency: &str) -> Result<String, minijinja::Error> {
    let currency = Currency::parse(currency)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    // From the fields: a refund or credit may be negative, and `Display` prints the sign.
    Ok(Money {
        amount_minor: amount,
        currency,
    }
    .to_string())
}

/// `{{ 1572864|size }}` → `1.5 MiB`: a size in bytes in binary units, one decimal above KiB.
/// Contexts carry bytes, never preformatted sizes.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `{{ decline_code|decline_reason }}`: Stripe's `decline_code` (or the error `code`, such as
/// `expired_card`) in words a customer understands, completing "We could not collect …: ".
/// Codes that suggest fraud (`lost_card`, `stolen_card`, `fraudulent`, `pickup_card`) read as a
/// plain decline, as Stripe advises; unknown or missing codes too.
fn decline_reason(code: Option<&str>) -> &'static str {
    match code.unwrap_or_default() {
        "insufficient_funds" => "the card has insufficient funds",
        "expired_card" => "the card has expired",
        "incorrect_cvc" | "invalid_cvc" => "the card's security code (CVC) was not accepted",
        "incorrect_number" | "invalid_number" => "the card number was not accepted",
        "invalid_expiry_month" | "invalid_expiry_year" => "the card's expiry date was not accepted",
        "card_velocity_exceeded" | "withdrawal_count_limit_exceeded" => {
            "the card's spending limit has been reached"
        }
        "authentication_required" => "your bank asks you to confirm the payment yourself",
        "card_not_supported" => "the card does not support this kind of payment",
        "currency_not_supported" => "the card does not support payments in this currency",
        "processing_error" | "try_again_later" | "issuer_not_available" => {
            "your bank could not process the payment just now"
        }
        _ => "your bank declined the payment",
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

    /// The HTML as a reader sees it: tags dropped, runs of whitespace made one space.
    fn visible(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Renders `name` and checks every needle lands in the text and the HTML part: in the
    /// markup (a link's address) or in what a reader sees. minijinja's `&#x2f;` is read back
    /// as `/`, as browsers do.
    fn render_with(name: &str, ctx: &serde_json::Value, needles: &[&str]) -> Rendered {
        let r = Templates::new(None).render(name, ctx).unwrap();
        let html = r.html.replace("&#x2f;", "/");
        let seen = visible(&html);
        for (part, body, shown) in [("text", &r.text, &r.text), ("html", &html, &seen)] {
            for needle in needles {
                assert!(
                    body.contains(needle) || shown.contains(needle),
                    "{name}: {needle:?} missing from the {part} part:\n{body}"
                );
            }
        }
        r
    }

    fn invoice_context() -> serde_json::Value {
        json!({
            "company_name": "Acme Hosting",
            "support_email": "help@acme.example",
            "customer_name": "Zoë Müller",
            "invoice_number": "INV-2026-000123",
            "currency": "EUR",
            "period_start": "2026-03-01",
            "period_end": "2026-03-31",
            "lines": [
                {"description": "Web hosting Business, shop.example", "amount": 1250},
                {"description": "Extra mailbox <5 GB>", "amount": 300},
            ],
            "tax": 310,
            "tax_label": "VAT 20%",
            "total": 1860,
            "due_on": "2026-03-15",
            "pay_url": "https://pay.acme.example/i/123",
            "card_last4": "4242",
            "charge_on": "2026-03-14",
        })
    }

    #[test]
    fn the_invoice_lists_lines_total_due_date_card_and_pay_link_in_both_parts() {
        let r = render_with(
            "invoice",
            &invoice_context(),
            &[
                "INV-2026-000123",
                "Zoë Müller",
                "2026-03-01 to 2026-03-31",
                "Web hosting Business, shop.example",
                "12.50 EUR",
                "3.00 EUR",
                "VAT 20%",
                "3.10 EUR",
                "18.60 EUR",
                "2026-03-15",
                "card ending 4242",
                "on 2026-03-14",
                "https://pay.acme.example/i/123",
                "help@acme.example",
            ],
        );
        assert_eq!(
            r.subject,
            "Invoice INV-2026-000123 from Acme Hosting: 18.60 EUR due 2026-03-15"
        );
        assert!(r.html.contains("Extra mailbox &lt;5 GB&gt;"), "{}", r.html);
        assert!(r.text.contains("Extra mailbox <5 GB>"));
        // No document in the context: nothing claims a PDF is attached.
        assert!(!r.text.contains("attached"));
    }

    #[test]
    fn an_invoice_without_card_or_pay_link_asks_to_pay_by_the_due_date() {
        let mut ctx = invoice_context();
        let map = ctx.as_object_mut().unwrap();
        for key in [
            "card_last4",
            "charge_on",
            "pay_url",
            "period_start",
            "period_end",
            "tax",
            "tax_label",
            "customer_name",
        ] {
            map.remove(key);
        }
        map.insert("support_email".into(), serde_json::Value::Null);
        let r = render_with("invoice", &ctx, &["Please pay by 2026-03-15", "18.60 EUR"]);
        for part in [&r.text, &r.html] {
            assert!(!part.contains("card ending"), "{part}");
            assert!(!part.contains("Pay now"), "{part}");
            assert!(!part.contains("VAT") && !part.contains("Tax"), "{part}");
            assert!(!part.contains("Questions?"), "{part}");
            assert!(part.contains("Hello,"), "{part}");
        }
    }

    #[test]
    fn a_card_charge_without_its_own_date_is_announced_for_the_due_date() {
        let mut ctx = invoice_context();
        ctx.as_object_mut().unwrap().remove("charge_on");
        ctx.as_object_mut().unwrap().remove("pay_url");
        let r = render_with("invoice", &ctx, &["card ending 4242 on 2026-03-15"]);
        assert!(!r.text.contains("Please pay by"), "{}", r.text);
    }

    #[test]
    fn an_invoice_with_its_document_says_the_pdf_is_attached() {
        let mut ctx = invoice_context();
        ctx["invoice_document"] = json!({"number": "INV-2026-000123"});
        render_with("invoice", &ctx, &["attached as a PDF"]);
    }

    #[test]
    fn the_receipt_names_amount_invoice_and_method() {
        let ctx = json!({
            "company_name": "Acme Hosting",
            "support_email": "help@acme.example",
            "invoice_number": "INV-2026-000124",
            "amount": 1860,
            "currency": "eur",
            "method": "Visa ending 4242",
            "paid_on": "2026-03-14",
        });
        let r = render_with(
            "payment_receipt",
            &ctx,
            &[
                "INV-2026-000124",
                "18.60 EUR",
                "Visa ending 4242",
                "2026-03-14",
            ],
        );
        assert_eq!(r.subject, "Payment received for invoice INV-2026-000124");
        let bare = json!({"company_name": "A", "support_email": null,
                          "invoice_number": "INV-1", "amount": 5, "currency": "USD"});
        let r = render_with("payment_receipt", &bare, &["0.05 USD", "INV-1"]);
        assert!(!r.text.contains("Method") && !r.html.contains("Method"));
    }

    fn failed_context() -> serde_json::Value {
        json!({
            "company_name": "Acme Hosting",
            "support_email": "help@acme.example",
            "invoice_number": "INV-2026-000125",
            "amount": 999,
            "currency": "USD",
            "attempt": 2,
            "decline_code": "insufficient_funds",
            "next_retry_on": "2026-03-20",
            "update_card_url": "https://acme.example/billing/card",
            "pay_url": "https://pay.acme.example/i/125",
            "service_name": "shop.example",
        })
    }

    #[test]
    fn a_failed_payment_gives_attempt_reason_in_words_next_retry_and_links() {
        let r = render_with(
            "payment_failed",
            &failed_context(),
            &[
                "INV-2026-000125",
                "9.99 USD",
                "attempt 2",
                "the card has insufficient funds",
                "try again on 2026-03-20",
                "https://acme.example/billing/card",
                "https://pay.acme.example/i/125",
                "shop.example",
            ],
        );
        assert_eq!(
            r.subject,
            "Payment of 9.99 USD for invoice INV-2026-000125 failed"
        );
        assert!(!r.text.contains("final notice"));
        assert!(
            !r.text.contains("insufficient_funds"),
            "the raw code stays out"
        );
    }

    #[test]
    fn a_failed_payment_without_a_next_retry_is_the_final_notice() {
        let mut ctx = failed_context();
        let map = ctx.as_object_mut().unwrap();
        for key in [
            "next_retry_on",
            "decline_code",
            "update_card_url",
            "service_name",
        ] {
            map.remove(key);
        }
        map.insert("suspend_on".into(), json!("2026-03-27"));
        let r = render_with(
            "payment_failed",
            &ctx,
            &[
                "final notice",
                "suspended on 2026-03-27",
                "your bank declined the payment",
                "https://pay.acme.example/i/125",
            ],
        );
        assert!(r.subject.starts_with("Final notice: "), "{}", r.subject);
        assert!(!r.text.contains("try again on") && !r.text.contains("Update your card"));
        // Neither link: the customer is told how to pay all the same.
        ctx.as_object_mut().unwrap().remove("pay_url");
        render_with("payment_failed", &ctx, &["Reply to this message"]);
    }

    #[test]
    fn decline_codes_that_hint_at_fraud_read_as_a_plain_decline() {
        for code in [
            "stolen_card",
            "lost_card",
            "fraudulent",
            "do_not_honor",
            "made_up",
        ] {
            assert_eq!(decline_reason(Some(code)), "your bank declined the payment");
        }
        assert_eq!(decline_reason(Some("expired_card")), "the card has expired");
        assert_eq!(decline_reason(None), "your bank declined the payment");
    }

    #[test]
    fn action_required_links_to_the_payment_page() {
        let ctx = json!({
            "company_name": "Acme Hosting",
            "support_email": null,
            "invoice_number": "INV-2026-000126",
            "amount": 4900,
            "currency": "GBP",
            "pay_url": "https://pay.acme.example/i/126",
            "due_on": "2026-04-01",
        });
        let r = render_with(
            "payment_action_required",
            &ctx,
            &[
                "INV-2026-000126",
                "49.00 GBP",
                "https://pay.acme.example/i/126",
                "2026-04-01",
                "Nothing has been charged",
            ],
        );
        assert!(r.subject.contains("INV-2026-000126"));
        // The link is the point of the message: without it the render fails.
        let mut ctx = ctx;
        ctx.as_object_mut().unwrap().remove("pay_url");
        assert!(
            Templates::new(None)
                .render("payment_action_required", &ctx)
                .is_err()
        );
    }

    #[test]
    fn a_failed_order_says_nothing_was_charged_or_created() {
        let ctx = json!({
            "company_name": "Acme Hosting",
            "support_email": "help@acme.example",
            "product_name": "Business hosting",
            "domain": "shop.example",
            "amount": 2400,
            "currency": "EUR",
            "order_url": "https://acme.example/order/business",
        });
        let r = render_with(
            "order_failed",
            &ctx,
            &[
                "Business hosting",
                "shop.example",
                "24.00 EUR",
                "Nothing was charged and no service was created",
                "https://acme.example/order/business",
            ],
        );
        assert_eq!(
            r.subject,
            "Your order for Business hosting could not be completed"
        );
        let mut ctx = ctx;
        ctx.as_object_mut().unwrap().remove("order_url");
        ctx.as_object_mut().unwrap().remove("domain");
        let r = render_with("order_failed", &ctx, &["Nothing was charged"]);
        assert!(!r.text.contains("try again") && !r.text.contains("()"));
    }

    #[test]
    fn a_dispute_tells_support_the_invoice_amount_reason_and_service() {
        let ctx = json!({
            "company_name": "Acme Hosting",
            "support_email": "help@acme.example",
            "dispute_id": "dp_1Qx",
            "invoice_number": "INV-2026-000127",
            "amount": 1860,
            "currency": "EUR",
            "reason": "product_not_received",
            "customer_name": "Zoë Müller",
            "customer_email": "zoe@example.org",
            "service_name": "shop.example (Business hosting)",
            "evidence_due_on": "2026-04-10",
        });
        let r = render_with(
            "dispute_opened",
            &ctx,
            &[
                "dp_1Qx",
                "INV-2026-000127",
                "18.60 EUR",
                "product not received",
                "Zoë Müller",
                "zoe@example.org",
                "shop.example (Business hosting)",
                "2026-04-10",
            ],
        );
        assert_eq!(
            r.subject,
            "Dispute opened: 18.60 EUR on invoice INV-2026-000127"
        );
        assert!(
            r.text.contains("Customer:  Zoë Müller <zoe@example.org>\n"),
            "{}",
            r.text
        );
        let mut ctx = ctx;
        for key in ["customer_name", "service_name", "evidence_due_on"] {
            ctx.as_object_mut().unwrap().remove(key);
        }
        let r = render_with("dispute_opened", &ctx, &["zoe@example.org"]);
        assert!(!r.text.contains("Service:") && !r.text.contains("Evidence due"));
    }

    #[test]
    fn a_bad_currency_fails_the_render_instead_of_printing_a_wrong_amount() {
        let mut ctx = invoice_context();
        ctx["currency"] = json!("EURO");
        let err = Templates::new(None).render("invoice", &ctx).unwrap_err();
        assert!(err.to_string().contains("EURO"), "{err}");
    }

    fn ssl_context(auto_renew: bool, renewal_failed: bool) -> serde_json::Value {
        json!({
            "company_name": "Acme Hosting",
            "support_email": "help@acme.example",
            "customer_name": "Zoë",
            "domain": "shop.example",
            "expires_on": "2026-12-24",
            "days_left": 21,
            "auto_renew": auto_renew,
            "renewal_failed": renewal_failed,
        })
    }

    #[test]
    fn an_expiring_certificate_says_when_and_why_it_is_not_renewed() {
        let off = render_with(
            "ssl_expiring",
            &ssl_context(false, false),
            &["shop.example", "2026-12-24", "in 21 days", "switched off"],
        );
        assert!(off.subject.contains("shop.example"), "{}", off.subject);
        assert!(!off.text.contains("could not"), "{}", off.text);
        let failing = render_with(
            "ssl_expiring",
            &ssl_context(true, true),
            &["shop.example", "could not", "DNS"],
        );
        assert!(!failing.text.contains("switched off"), "{}", failing.text);
    }

    #[test]
    fn every_built_in_message_has_its_three_files() {
        for (name, _) in BUILT_IN {
            let stem = name
                .strip_suffix(".subject.txt")
                .or_else(|| name.strip_suffix(".txt"))
                .or_else(|| name.strip_suffix(".html"))
                .unwrap();
            for suffix in [".subject.txt", ".txt", ".html"] {
                let file = format!("{stem}{suffix}");
                assert!(BUILT_IN.iter().any(|(n, _)| *n == file), "{file}");
            }
        }
        assert_eq!(BUILT_IN.len(), 13 * 3);
    }

    #[test]
    fn account_links_are_in_both_parts() {
        for name in ["account_verify", "password_reset"] {
            let ctx = json!({
                "company_name": "Acme Hosting",
                "support_email": null,
                "customer_name": "Zoë",
                "link": "https://portal.example/verify/abc_DEF-123",
                "expires_in": "48 hours",
            });
            let r = render_with(
                name,
                &ctx,
                &["https://portal.example/verify/abc_DEF-123", "48 hours"],
            );
            let html = r.html.replace("&#x2f;", "/");
            assert!(
                html.contains("href=\"https://portal.example/verify/abc_DEF-123\""),
                "{html}"
            );
        }
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(2000 * 1024 * 1024), "2.0 GiB");
        assert_eq!(size(1024 * 1024 * 1024 * 1024 * 3), "3.0 TiB");
    }

    #[test]
    fn the_over_quota_notice_names_the_service_and_what_is_over() {
        let ctx = json!({
            "company_name": "Acme Hosting",
            "support_email": null,
            "service_id": 7,
            "domain": "shop.example",
            "username": "shopexam",
            "server": "web1.example.net",
            "since": "2026-12-01 15:47 UTC",
            "disk_used": 2_000u64 * 1024 * 1024,
            "disk_limit": 1_024u64 * 1024 * 1024,
            "disk_over": true,
            "bandwidth_used": 5u64 * 1024 * 1024,
            "bandwidth_limit": null,
            "bandwidth_over": false,
        });
        let r = render_with(
            "over_quota",
            &ctx,
            &[
                "shop.example",
                "shopexam",
                "web1.example.net",
                "2026-12-01 15:47 UTC",
                "2.0 GiB used of 1.0 GiB",
                "5.0 MiB used, no limit",
                "/api/services/7/usage",
            ],
        );
        assert_eq!(r.subject, "Over quota: shop.example");
        assert!(
            r.text.contains("Disk: 2.0 GiB used of 1.0 GiB (OVER)"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("no limit (OVER)"), "{}", r.text);
        let mut ctx = ctx;
        ctx["disk_used"] = json!(null);
        let r = Templates::new(None).render("over_quota", &ctx).unwrap();
        assert!(
            !r.text.contains("Disk:"),
            "an unreported use is left out: {}",
            r.text
        );
    }
}
