//! `/pay/<session>`: a minimal payment page standing in for Stripe's hosted Checkout, so a
//! browser (the demo) can finish a session. Paying charges the chosen test card and redirects
//! to `success_url` with `{CHECKOUT_SESSION_ID}` filled in, as Stripe does on its redirect;
//! cancelling goes to `cancel_url`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::Double;
use crate::cards::TEST_CARDS;
use crate::model::SessionStatus;
use crate::store::PagePayment;

pub(crate) fn routes(double: Arc<Double>) -> Router {
    Router::new()
        .route("/pay/{id}", get(show).post(submit))
        .with_state(double)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn render(double: &Double, id: &str, notice: Option<&str>) -> Response {
    let store = double.lock();
    let Some(session) = store.session(id) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>No such payment page</h1>".to_owned()),
        )
            .into_response();
    };
    if session.status != SessionStatus::Open {
        return Html(format!(
            "<h1>This payment page is {}</h1>",
            session.status.as_str()
        ))
        .into_response();
    }
    let items: String = session
        .line_items
        .iter()
        .map(|i| {
            format!(
                "<li>{} × {} — {} {}</li>",
                i.quantity,
                escape(&i.name),
                i.unit_amount * i.quantity,
                escape(&i.currency)
            )
        })
        .collect();
    let cards: String = TEST_CARDS
        .iter()
        .map(|c| format!("<option value=\"{0}\">{0}</option>", c.ids[0]))
        .collect();
    let notice = notice
        .map(|n| format!("<p role=\"alert\">{}</p>", escape(n)))
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Test payment</title>\
         <h1>Test payment {id}</h1>{notice}<ul>{items}</ul>\
         <p>Total: {total} {currency} (minor units)</p>\
         <form method=\"post\"><select name=\"payment_method\">{cards}</select>\
         <button name=\"action\" value=\"pay\">Pay</button>\
         <button name=\"action\" value=\"cancel\">Cancel</button></form>",
        id = escape(id),
        total = session.amount_total,
        currency = escape(&session.currency),
    ))
    .into_response()
}

async fn show(State(double): State<Arc<Double>>, Path(id): Path<String>) -> Response {
    render(&double, &id, None)
}

#[derive(Debug, Deserialize)]
struct Submission {
    action: String,
    payment_method: Option<String>,
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

async fn submit(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<Submission>,
) -> Response {
    if form.action == "cancel" {
        let cancel = double
            .lock()
            .session(&id)
            .and_then(|s| s.cancel_url.clone());
        return match cancel {
            Some(url) => redirect(&url),
            None => render(&double, &id, Some("Cancelled.")),
        };
    }
    let paid = {
        let mut store = double.lock();
        let result = store.pay_session(
            &id,
            PagePayment {
                paid_now: true,
                payment_method: form
                    .payment_method
                    .unwrap_or_else(|| "pm_card_visa".to_owned()),
                email: None,
                name: None,
            },
        );
        match result {
            Ok(answer) if answer.get("declined").is_some() => Err(answer["declined"]["message"]
                .as_str()
                .unwrap_or("Declined.")
                .to_owned()),
            Ok(_) => Ok(store
                .session(&id)
                .map(|s| s.success_url.replace("{CHECKOUT_SESSION_ID}", &s.id))
                .unwrap_or_default()),
            Err(e) => Err(format!("{e:?}")),
        }
    };
    match paid {
        Ok(url) => redirect(&url),
        Err(message) => render(&double, &id, Some(&message)),
    }
}
