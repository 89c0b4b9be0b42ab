//! A client for the few Stripe API calls the controller makes: customers, Checkout Sessions,
//! off-session PaymentIntents, PaymentMethods and refunds, plus the objects webhook events carry.
//!
//! Written over `reqwest` rather than a Stripe SDK crate, which would bring a second HTTP stack
//! and a long compile for about eight endpoints. It behaves like Stripe's official libraries:
//! form bodies in Stripe's bracket notation, a pinned `Stripe-Version`, an `Idempotency-Key` on
//! every POST, and automatic retries of network failures, 409, 429 and 5xx answers (as told by
//! `Stripe-Should-Retry` when Stripe sends it) with the same key, so a retried charge is never
//! made twice. The secret key goes only into the `Authorization` header: not into errors,
//! `Debug` or logs.
//!
//! It does not own what the controller does with a payment (invoices, fulfilment), nor webhook
//! signatures ([`super::signature`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use mpanel_common::{Currency, Secret};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::config::StripeConfig;

/// The API version sent with every request, so that Stripe's answers keep the shapes decoded
/// here whatever the account's default version is. 2022-11-15 is the first version in which a
/// PaymentIntent names its `latest_charge` (instead of listing `charges`) and `charge.refunded`
/// no longer lists the refunds (we compare `amount_refunded`), both of which this module relies
/// on. It is older than 2023-08-16, which turned `automatic_payment_methods` on by default:
/// under that default a `confirm=true` PaymentIntent may need a `return_url` or
/// `automatic_payment_methods[allow_redirects]=never`, parameters the off-session charge would
/// then have to send and that the test double localstripe does not know.
pub const STRIPE_API_VERSION: &str = "2022-11-15";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_NETWORK_RETRIES: u32 = 3;
const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between two attempts, whatever the base delay and attempt number.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Stripe keeps idempotency keys of up to 255 characters.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest piece of an error message kept (they reach task records and logs).
const MAX_MESSAGE_CHARS: usize = 300;
/// `list_payment_intents` asks for Stripe's largest page.
const LIST_LIMIT: &str = "100";

/// Why a Stripe call failed. [`StripeError::code`] gives a stable code for API answers and
/// records; [`StripeError::is_decline`] separates "the customer's card said no" from faults.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// The card was declined (HTTP 402 `card_error`, or localstripe's `invalid_request_error`
    /// with code `card_declined`). Other `card_error` codes (`incorrect_cvc`,
    /// `processing_error`…) land here too, with that code as `decline_code` when Stripe gives
    /// none: to the caller each means the charge did not happen and the customer must act.
    #[error("the card was declined: {message}")]
    CardDeclined {
        decline_code: Option<String>,
        payment_intent: Option<String>,
        message: String,
    },
    /// An off-session charge needs the customer to authenticate (3-D Secure): bring them back
    /// on-session with a payment link.
    #[error("the card requires the customer to authenticate: {message}")]
    AuthenticationRequired {
        payment_intent: Option<String>,
        message: String,
    },
    #[error("the card has expired: {message}")]
    ExpiredCard {
        payment_intent: Option<String>,
        message: String,
    },
    /// HTTP 429, still after the retries.
    #[error("Stripe is rate-limiting the requests")]
    RateLimited,
    /// A 4xx other than the above: the request itself is wrong (`code`/`param` say how), or
    /// the object does not exist (404 `resource_missing`).
    #[error("Stripe rejected the request (HTTP {status}): {message}")]
    InvalidRequest {
        status: u16,
        code: Option<String>,
        param: Option<String>,
        message: String,
    },
    /// The idempotency key was reused with other parameters, or is not a key Stripe accepts.
    #[error("idempotency key refused: {message}")]
    Idempotency { message: String },
    /// The secret key was refused (401) or lacks the permission (403).
    #[error("Stripe refused the API key; check STRIPE_SECRET_KEY")]
    Authentication,
    /// A 5xx, still after the retries.
    #[error("Stripe failed (HTTP {status}): {message}")]
    Api { status: u16, message: String },
    /// Stripe could not be reached or did not answer in time, still after the retries.
    #[error("Stripe is unreachable: {0}")]
    Network(String),
    /// Stripe answered something that is not the expected JSON.
    #[error("Stripe's answer could not be read: {0}")]
    Decode(String),
    /// The HTTP client could not be set up (TLS initialisation, an unusable API base URL).
    #[error("the Stripe client cannot be set up: {0}")]
    Config(String),
}

impl StripeError {
    /// A stable code for API error bodies and records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::CardDeclined { .. } => "card_declined",
            Self::AuthenticationRequired { .. } => "authentication_required",
            Self::ExpiredCard { .. } => "expired_card",
            Self::RateLimited => "rate_limited",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Idempotency { .. } => "idempotency_error",
            Self::Authentication => "stripe_auth",
            Self::Api { .. } => "api_error",
            Self::Network(_) => "network_error",
            Self::Decode(_) => "decode_error",
            Self::Config(_) => "stripe_config",
        }
    }

    /// The PaymentIntent a card error belongs to, when Stripe named one.
    pub fn payment_intent_id(&self) -> Option<&str> {
        match self {
            Self::CardDeclined { payment_intent, .. }
            | Self::AuthenticationRequired { payment_intent, .. }
            | Self::ExpiredCard { payment_intent, .. } => payment_intent.as_deref(),
            _ => None,
        }
    }

    /// Stripe or the network failed in a way the same request (same key) may get past later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::Api { .. } | Self::Network(_)
        )
    }

    /// The card could not be charged for a reason the customer must fix (another card,
    /// authentication); retrying the same call will not help.
    pub fn is_decline(&self) -> bool {
        matches!(
            self,
            Self::CardDeclined { .. }
                | Self::AuthenticationRequired { .. }
                | Self::ExpiredCard { .. }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// `POST /v1/customers`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewCustomer {
    pub email: String,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// `POST /v1/checkout/sessions` in `payment` mode for one line of `amount_minor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckoutSession {
    /// An existing Stripe customer (`cus_…`). When set, `customer_email` is not sent (Stripe
    /// refuses both).
    pub customer: Option<String>,
    /// Prefills the email when there is no customer yet.
    pub customer_email: Option<String>,
    pub amount_minor: i64,
    pub currency: Currency,
    pub product_name: String,
    /// May contain `{CHECKOUT_SESSION_ID}`, which Stripe fills in.
    pub success_url: String,
    pub cancel_url: String,
    pub metadata: BTreeMap<String, String>,
    pub client_reference_id: Option<String>,
    /// Saves the card for later off-session charges
    /// (`payment_intent_data[setup_future_usage]=off_session`). Without a `customer` this
    /// also sends `customer_creation=always`, since a saved card needs a customer and Checkout
    /// creates none for a one-off payment by default.
    pub save_card_for_off_session: bool,
    /// Metadata of the PaymentIntent the session creates (`payment_intent_data[metadata]`).
    pub payment_intent_metadata: BTreeMap<String, String>,
}

/// `POST /v1/payment_intents` with `off_session=true&confirm=true`: charges a saved card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffSessionCharge {
    pub amount_minor: i64,
    pub currency: Currency,
    pub customer: String,
    pub payment_method: String,
    pub metadata: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// Objects (only the fields the controller uses; lenient where Stripe may omit or null them)

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
}

/// `open` while the customer may still pay, then `complete` or `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutSessionStatus {
    Open,
    Complete,
    Expired,
    /// A status newer than this client.
    #[serde(other)]
    Other,
}

/// Whether the money of a completed session has arrived: delayed payment methods complete the
/// session `unpaid` and settle later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutPaymentStatus {
    Paid,
    #[default]
    Unpaid,
    NoPaymentRequired,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct CustomerDetails {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub status: Option<CheckoutSessionStatus>,
    #[serde(default)]
    pub payment_status: CheckoutPaymentStatus,
    #[serde(default, deserialize_with = "expandable_id")]
    pub customer: Option<String>,
    #[serde(default)]
    pub customer_details: Option<CustomerDetails>,
    #[serde(default)]
    pub amount_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<Currency>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_intent: Option<String>,
    /// The page to send the customer to; null once the session is complete or expired.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    #[serde(other)]
    Other,
}

/// Why the last attempt to pay a PaymentIntent failed (the `error` shape, in short).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct PaymentError {
    #[serde(rename = "type", default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: PaymentIntentStatus,
    pub amount: i64,
    pub currency: Currency,
    #[serde(default, deserialize_with = "expandable_id")]
    pub customer: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_method: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub latest_charge: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub last_payment_error: Option<PaymentError>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Charge {
    pub id: String,
    pub amount: i64,
    /// Partial refunds add up here; `charge.refunded` fires for each.
    #[serde(default)]
    pub amount_refunded: i64,
    /// True only once the whole amount is refunded.
    #[serde(default)]
    pub refunded: bool,
    pub currency: Currency,
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_intent: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dispute {
    pub id: String,
    #[serde(default, deserialize_with = "expandable_id")]
    pub charge: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_intent: Option<String>,
    pub amount: i64,
    pub currency: Currency,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Card {
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub last4: String,
    #[serde(default)]
    pub exp_month: u32,
    #[serde(default)]
    pub exp_year: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentMethod {
    pub id: String,
    /// Set for card payment methods only.
    #[serde(default)]
    pub card: Option<Card>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub customer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    /// `pending`, `succeeded`, `failed`, `canceled` (`requires_action` for some methods).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_intent: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub charge: Option<String>,
}

/// A webhook event. `data.object` stays JSON: decode it with [`Event::object`] into the type
/// its `event_type` names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub created: i64,
    pub data: EventData,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

impl Event {
    /// `data.object` as `T` (a [`CheckoutSession`] for `checkout.session.completed`…).
    pub fn object<T: DeserializeOwned>(&self) -> Result<T, StripeError> {
        T::deserialize(&self.data.object)
            .map_err(|e| StripeError::Decode(format!("{} object: {e}", self.event_type)))
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    /// More objects exist beyond this page.
    #[serde(default)]
    pub has_more: bool,
}

/// An id field that Stripe may send as the id string or, when expanded, as the object itself.
fn expandable_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IdOrObject {
        Id(String),
        Object { id: String },
    }
    Ok(
        Option::<IdOrObject>::deserialize(deserializer)?.map(|value| match value {
            IdOrObject::Id(id) | IdOrObject::Object { id } => id,
        }),
    )
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// The client

/// The Stripe API client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    api_base: String,
    secret_key: Secret<String>,
    timeout: Duration,
    max_network_retries: u32,
    retry_base_delay: Duration,
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeClient")
            .field("api_base", &self.api_base)
            .field("secret_key", &self.secret_key)
            .field("timeout", &self.timeout)
            .field("max_network_retries", &self.max_network_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .finish_non_exhaustive()
    }
}

impl StripeClient {
    /// A client for `api_base` (`https://api.stripe.com`, or a test double) with the defaults:
    /// 30 s per attempt, 3 retries, 500 ms base delay.
    pub fn new(api_base: &str, secret_key: Secret<String>) -> Result<Self, StripeError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The API never redirects; following one would send the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mpanel-controller/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            api_base: api_base.trim_end_matches('/').to_owned(),
            secret_key,
            timeout: DEFAULT_TIMEOUT,
            max_network_retries: DEFAULT_MAX_NETWORK_RETRIES,
            retry_base_delay: DEFAULT_RETRY_BASE_DELAY,
        })
    }

    /// `Ok(None)` when no secret key is configured (billing through Stripe is then off).
    pub fn from_config(config: &StripeConfig) -> Result<Option<Self>, StripeError> {
        match &config.secret_key {
            Some(key) if !key.expose().trim().is_empty() => {
                Self::new(&config.api_base, key.clone()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The budget of one attempt, from sending to the end of the body.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries after the first attempt (0 disables retrying).
    pub fn with_max_network_retries(mut self, retries: u32) -> Self {
        self.max_network_retries = retries;
        self
    }

    /// The wait before the first retry; it doubles for each further one (up to 5 s), and a
    /// random part of up to half of it is taken off so that clients do not retry in step.
    pub fn with_retry_base_delay(mut self, delay: Duration) -> Self {
        self.retry_base_delay = delay;
        self
    }

    pub async fn create_customer(
        &self,
        customer: &NewCustomer,
        idempotency_key: &str,
    ) -> Result<Customer, StripeError> {
        let mut form = Form::default();
        form.push("email", &customer.email);
        if let Some(name) = &customer.name {
            form.push("name", name);
        }
        form.push_map("metadata", &customer.metadata);
        self.post("/v1/customers", &form, idempotency_key).await
    }

    pub async fn create_checkout_session(
        &self,
        session: &NewCheckoutSession,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let mut form = Form::default();
        form.push("mode", "payment");
        let item = "line_items[0]";
        form.push(
            format!("{item}[price_data][currency]"),
            session.currency.as_str().to_ascii_lowercase(),
        );
        form.push(
            format!("{item}[price_data][unit_amount]"),
            session.amount_minor.to_string(),
        );
        form.push(
            format!("{item}[price_data][product_data][name]"),
            &session.product_name,
        );
        form.push(format!("{item}[quantity]"), "1");
        form.push("success_url", &session.success_url);
        form.push("cancel_url", &session.cancel_url);
        match (&session.customer, &session.customer_email) {
            (Some(customer), _) => form.push("customer", customer),
            (None, email) => {
                if let Some(email) = email {
                    form.push("customer_email", email);
                }
                if session.save_card_for_off_session {
                    form.push("customer_creation", "always");
                }
            }
        }
        if let Some(reference) = &session.client_reference_id {
            form.push("client_reference_id", reference);
        }
        form.push_map("metadata", &session.metadata);
        if session.save_card_for_off_session {
            form.push("payment_intent_data[setup_future_usage]", "off_session");
        }
        form.push_map(
            "payment_intent_data[metadata]",
            &session.payment_intent_metadata,
        );
        self.post("/v1/checkout/sessions", &form, idempotency_key)
            .await
    }

    pub async fn get_checkout_session(&self, id: &str) -> Result<CheckoutSession, StripeError> {
        self.get(&format!("/v1/checkout/sessions/{}", path_segment(id)), &[])
            .await
    }

    /// Charges a saved card without the customer present. A card that needs authentication or
    /// is declined fails with [`StripeError::AuthenticationRequired`] /
    /// [`StripeError::CardDeclined`] naming the PaymentIntent; a success may still answer a
    /// PaymentIntent whose status is not `succeeded` (`processing`; `requires_action` from test
    /// doubles that do not fail off-session authentication), which the caller must look at.
    pub async fn charge_off_session(
        &self,
        charge: &OffSessionCharge,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        let mut form = Form::default();
        form.push("amount", charge.amount_minor.to_string());
        form.push("currency", charge.currency.as_str().to_ascii_lowercase());
        form.push("customer", &charge.customer);
        form.push("payment_method", &charge.payment_method);
        form.push("off_session", "true");
        form.push("confirm", "true");
        form.push_map("metadata", &charge.metadata);
        self.post("/v1/payment_intents", &form, idempotency_key)
            .await
    }

    pub async fn get_payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        self.get(&format!("/v1/payment_intents/{}", path_segment(id)), &[])
            .await
    }

    /// The newest PaymentIntents of `customer` (one page of up to 100).
    pub async fn list_payment_intents(
        &self,
        customer: &str,
    ) -> Result<List<PaymentIntent>, StripeError> {
        self.get(
            "/v1/payment_intents",
            &[("customer", customer), ("limit", LIST_LIMIT)],
        )
        .await
    }

    pub async fn get_payment_method(&self, id: &str) -> Result<PaymentMethod, StripeError> {
        self.get(&format!("/v1/payment_methods/{}", path_segment(id)), &[])
            .await
    }

    /// Refunds `amount_minor` of the PaymentIntent's charge, or all of what is left when
    /// `None`.
    pub async fn create_refund(
        &self,
        payment_intent: &str,
        amount_minor: Option<i64>,
        idempotency_key: &str,
    ) -> Result<Refund, StripeError> {
        let mut form = Form::default();
        form.push("payment_intent", payment_intent);
        if let Some(amount) = amount_minor {
            form.push("amount", amount.to_string());
        }
        self.post("/v1/refunds", &form, idempotency_key).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: &str,
    ) -> Result<T, StripeError> {
        check_idempotency_key(idempotency_key)?;
        self.send(Method::POST, path, &[], Some(form), Some(idempotency_key))
            .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, StripeError> {
        self.send(Method::GET, path, query, None, None).await
    }

    /// One logical call: attempts until one answers for good or the retries are spent. Every
    /// attempt carries the same idempotency key, so Stripe replays the first result instead of
    /// acting twice.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let url = format!("{}{path}", self.api_base);
        let mut attempt: u32 = 0;
        loop {
            let outcome = self
                .attempt(&method, &url, query, form, idempotency_key)
                .await;
            let retry_reason = match &outcome {
                Attempt::Network(_) => Some("network"),
                Attempt::Answer { status, retry, .. } => {
                    retry.then_some(if *status == StatusCode::TOO_MANY_REQUESTS {
                        "rate_limited"
                    } else {
                        "status"
                    })
                }
            };
            if let Some(reason) = retry_reason
                && attempt < self.max_network_retries
            {
                attempt += 1;
                let delay = retry_delay(self.retry_base_delay, attempt, random_fraction());
                tracing::warn!(
                    method = %method,
                    path,
                    reason,
                    attempt,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    idempotency_key,
                    "retrying a Stripe API call"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            return match outcome {
                Attempt::Network(message) => Err(StripeError::Network(message)),
                Attempt::Answer { status, body, .. } if status.is_success() => {
                    serde_json::from_slice(&body)
                        .map_err(|e| StripeError::Decode(format!("{method} {path}: {e}")))
                }
                Attempt::Answer { status, body, .. } => {
                    Err(error_from_answer(status, &body, self.secret_key.expose()))
                }
            };
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        query: &[(&str, &str)],
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Attempt {
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(self.timeout)
            // Marked sensitive by reqwest, so it stays out of its Debug output too.
            .bearer_auth(self.secret_key.expose())
            .header("Stripe-Version", STRIPE_API_VERSION)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(form) = form {
            request = request.form(&form.0);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Attempt::Network(transport_message(e)),
        };
        let status = response.status();
        let headers = response.headers();
        let request_id = header_str(headers, "request-id").map(str::to_owned);
        let should_retry = header_str(headers, "stripe-should-retry").map(str::to_owned);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return Attempt::Network(transport_message(e)),
        };
        tracing::debug!(
            method = %method,
            path = url.strip_prefix(&self.api_base).unwrap_or(url),
            status = status.as_u16(),
            request_id = request_id.as_deref(),
            idempotency_key,
            "Stripe API call"
        );
        Attempt::Answer {
            status,
            retry: should_retry_answer(status, should_retry.as_deref()),
            body,
        }
    }
}

enum Attempt {
    Network(String),
    Answer {
        status: StatusCode,
        retry: bool,
        body: hyper::body::Bytes,
    },
}

/// Stripe's rule for a failed answer, as its libraries apply it: `Stripe-Should-Retry` decides
/// when present; otherwise a conflict (409: a lock, or a concurrent request with the same key),
/// 429 and 5xx are worth another attempt.
fn should_retry_answer(status: StatusCode, should_retry: Option<&str>) -> bool {
    if status.is_success() {
        return false;
    }
    match should_retry {
        Some("true") => true,
        Some("false") => false,
        _ => {
            status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
        }
    }
}

/// Exponential backoff for retry number `attempt` (1-based): `base · 2^(attempt-1)`, capped,
/// then reduced by up to half by `jitter` in `[0, 1)`.
fn retry_delay(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = doubled.min(MAX_RETRY_DELAY.max(base));
    capped.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
}

fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    // A failure of the system RNG only loses the jitter.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

fn check_idempotency_key(key: &str) -> Result<(), StripeError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(StripeError::Idempotency {
            message: format!("the key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters long"),
        });
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StripeError::Idempotency {
            message: "the key must be printable ASCII without spaces".to_owned(),
        });
    }
    Ok(())
}

fn header_str<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The error and its causes, without the URL (the path is logged apart, and the base is
/// configuration).
fn transport_message(e: reqwest::Error) -> String {
    let timed_out = e.is_timeout();
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if timed_out && !message.contains("timed out") {
        message.push_str(" (timed out)");
    }
    message
}

/// Stripe's `{"error": {...}}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    error_type: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    payment_intent: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

/// Maps a final non-2xx answer. `secret_key` is scrubbed from the messages kept, should an
/// answer ever echo it.
fn error_from_answer(status: StatusCode, body: &[u8], secret_key: &str) -> StripeError {
    let error = serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|envelope| envelope.error)
        .unwrap_or_default();
    let message = clean_message(
        error
            .message
            .as_deref()
            .unwrap_or_else(|| std::str::from_utf8(body).unwrap_or("")),
        secret_key,
    );
    let error_type = error.error_type.as_deref();
    let code = error.code.as_deref();
    let card_error = error_type == Some("card_error")
        // localstripe answers declines as invalid requests.
        || (error_type == Some("invalid_request_error") && code == Some("card_declined"));
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return StripeError::Authentication;
    }
    if error_type == Some("idempotency_error") {
        return StripeError::Idempotency { message };
    }
    if card_error {
        let payment_intent = error.payment_intent;
        return match code {
            Some("authentication_required") => StripeError::AuthenticationRequired {
                payment_intent,
                message,
            },
            Some("expired_card") => StripeError::ExpiredCard {
                payment_intent,
                message,
            },
            _ => StripeError::CardDeclined {
                decline_code: error
                    .decline_code
                    .or_else(|| error.code.filter(|c| c != "card_declined")),
                payment_intent,
                message,
            },
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return StripeError::RateLimited;
    }
    if status.is_server_error() {
        return StripeError::Api {
            status: status.as_u16(),
            message,
        };
    }
    StripeError::InvalidRequest {
        status: status.as_u16(),
        code: error.code,
        param: error.param,
        message,
    }
}

fn clean_message(message: &str, secret_key: &str) -> String {
    let message = message.trim();
    let message = if secret_key.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret_key, "***")
    };
    let mut kept: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    if kept.len() < message.len() {
        kept.push('…');
    }
    if kept.is_empty() {
        "no details given".to_owned()
    } else {
        kept
    }
}

/// An id placed in a path, percent-encoded beyond the characters Stripe ids are made of, so a
/// stray `/` or `?` cannot reach another endpoint.
fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A form body in Stripe's bracket notation: nested keys are spelled out in full
/// (`metadata[order_id]`, `line_items[0][price_data][currency]`), one pair each.
#[derive(Debug, Default)]
struct Form(Vec<(String, String)>);

impl Form {
    fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }

    fn push_map(&mut self, prefix: &str, map: &BTreeMap<String, String>) {
        for (key, value) in map {
            self.push(format!("{prefix}[{key}]"), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "sk_test_51Hsecretsecret";

    fn answer(status: u16, body: &serde_json::Value) -> StripeError {
        error_from_answer(
            StatusCode::from_u16(status).unwrap(),
            body.to_string().as_bytes(),
            KEY,
        )
    }

    #[test]
    fn expanded_ids_and_plain_ids_read_the_same() {
        let plain: PaymentIntent = serde_json::from_value(json!({
            "id": "pi_1", "object": "payment_intent", "status": "succeeded", "amount": 1999,
            "currency": "usd", "customer": "cus_1", "payment_method": "pm_1",
            "latest_charge": "ch_1", "metadata": {"invoice_id": "42"}, "last_payment_error": null
        }))
        .unwrap();
        let expanded: PaymentIntent = serde_json::from_value(json!({
            "id": "pi_1", "object": "payment_intent", "status": "succeeded", "amount": 1999,
            "currency": "usd", "customer": {"id": "cus_1", "object": "customer"},
            "payment_method": {"id": "pm_1", "object": "payment_method"},
            "latest_charge": {"id": "ch_1", "object": "charge", "amount": 1999},
            "metadata": {"invoice_id": "42"}
        }))
        .unwrap();
        assert_eq!(plain, expanded);
        assert_eq!(plain.customer.as_deref(), Some("cus_1"));
        assert_eq!(plain.latest_charge.as_deref(), Some("ch_1"));
        assert_eq!(plain.currency, Currency::USD);
        assert_eq!(plain.status, PaymentIntentStatus::Succeeded);
    }

    #[test]
    fn a_completed_checkout_session_event_decodes() {
        // The shape of Stripe's `checkout.session.completed` example, trimmed.
        let event: Event = serde_json::from_value(json!({
            "id": "evt_1", "object": "event", "api_version": "2022-11-15", "created": 1700000000,
            "type": "checkout.session.completed", "livemode": false, "pending_webhooks": 1,
            "data": {"object": {
                "id": "cs_test_a1", "object": "checkout.session", "mode": "payment",
                "status": "complete", "payment_status": "paid", "customer": null,
                "customer_details": {"email": "ann@example.com", "name": "Ann", "phone": null},
                "amount_total": 1999, "currency": "eur", "metadata": {"order_id": "7"},
                "client_reference_id": "order-7", "payment_intent": "pi_1", "url": null,
                "expires_at": 1700086400, "subscription": null
            }}
        }))
        .unwrap();
        assert_eq!(event.event_type, "checkout.session.completed");
        assert_eq!(event.created, 1_700_000_000);
        let session: CheckoutSession = event.object().unwrap();
        assert_eq!(session.status, Some(CheckoutSessionStatus::Complete));
        assert_eq!(session.payment_status, CheckoutPaymentStatus::Paid);
        assert_eq!(session.customer, None);
        assert_eq!(
            session.customer_details.unwrap().email.as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(session.amount_total, Some(1999));
        assert_eq!(session.currency, Some(Currency::EUR));
        assert_eq!(session.metadata["order_id"], "7");
        assert_eq!(session.payment_intent.as_deref(), Some("pi_1"));
        assert_eq!(session.expires_at, 1_700_086_400);
        // The wrong type for the event is a decode error, not a panic.
        let err = event.object::<Dispute>().unwrap_err();
        assert_eq!(err.code(), "decode_error");
    }

    #[test]
    fn charge_dispute_and_refund_objects_decode_with_omitted_fields() {
        let charge: Charge = serde_json::from_value(json!({
            "id": "ch_1", "amount": 1999, "amount_refunded": 500, "refunded": false,
            "currency": "usd", "payment_intent": {"id": "pi_1"}, "metadata": null
        }))
        .unwrap();
        assert_eq!(charge.amount_refunded, 500);
        assert_eq!(charge.payment_intent.as_deref(), Some("pi_1"));
        assert!(charge.metadata.is_empty());
        let dispute: Dispute = serde_json::from_value(json!({
            "id": "dp_1", "charge": "ch_1", "amount": 1999, "currency": "usd",
            "reason": "fraudulent", "status": "needs_response"
        }))
        .unwrap();
        assert_eq!(dispute.charge.as_deref(), Some("ch_1"));
        assert_eq!(dispute.payment_intent, None);
        let refund: Refund =
            serde_json::from_value(json!({"id": "re_1", "amount": 500, "charge": "ch_1"})).unwrap();
        assert_eq!(refund.status, None);
        assert_eq!(refund.charge.as_deref(), Some("ch_1"));
    }

    #[test]
    fn unknown_statuses_do_not_fail_decoding() {
        let pi: PaymentIntent = serde_json::from_value(json!({
            "id": "pi_1", "status": "some_future_status", "amount": 1, "currency": "usd"
        }))
        .unwrap();
        assert_eq!(pi.status, PaymentIntentStatus::Other);
    }

    #[test]
    fn an_off_session_authentication_failure_maps_with_its_payment_intent() {
        // Stripe's documented answer to an off-session charge needing 3-D Secure.
        let err = answer(
            402,
            &json!({"error": {
                "type": "card_error", "code": "authentication_required",
                "decline_code": "authentication_required",
                "message": "Your card was declined. This transaction requires authentication.",
                "payment_intent": {"id": "pi_3", "object": "payment_intent", "status": "requires_payment_method"}
            }}),
        );
        assert!(
            matches!(err, StripeError::AuthenticationRequired { .. }),
            "{err:?}"
        );
        assert_eq!(err.payment_intent_id(), Some("pi_3"));
        assert!(err.is_decline());
        assert_eq!(err.code(), "authentication_required");
    }

    #[test]
    fn declines_keep_their_decline_code() {
        let err = answer(
            402,
            &json!({"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.", "param": "",
                "payment_intent": {"id": "pi_4"}
            }}),
        );
        assert_eq!(
            err,
            StripeError::CardDeclined {
                decline_code: Some("insufficient_funds".into()),
                payment_intent: Some("pi_4".into()),
                message: "Your card has insufficient funds.".into(),
            }
        );
        let err = answer(
            402,
            &json!({"error": {"type": "card_error", "code": "incorrect_cvc", "message": "Bad CVC."}}),
        );
        assert!(
            matches!(&err, StripeError::CardDeclined { decline_code: Some(c), .. } if c == "incorrect_cvc"),
            "{err:?}"
        );
    }

    #[test]
    fn localstripe_declines_are_declines() {
        let err = answer(
            402,
            &json!({"error": {"type": "invalid_request_error", "code": "card_declined",
                   "message": "The card was declined."}}),
        );
        assert!(matches!(err, StripeError::CardDeclined { .. }), "{err:?}");
        assert!(err.is_decline());
    }

    #[test]
    fn expired_cards_map() {
        let err = answer(
            402,
            &json!({"error": {"type": "card_error", "code": "expired_card", "param": "exp_month",
                   "message": "Your card has expired."}}),
        );
        assert!(matches!(err, StripeError::ExpiredCard { .. }), "{err:?}");
        assert_eq!(err.code(), "expired_card");
    }

    #[test]
    fn other_errors_map_by_status_and_type() {
        let err = answer(
            404,
            &json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                   "param": "id", "message": "No such payment_intent: 'pi_x'"}}),
        );
        assert_eq!(
            err,
            StripeError::InvalidRequest {
                status: 404,
                code: Some("resource_missing".into()),
                param: Some("id".into()),
                message: "No such payment_intent: 'pi_x'".into(),
            }
        );
        assert!(!err.is_decline());
        let err = answer(
            400,
            &json!({"error": {"type": "idempotency_error",
                   "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."}}),
        );
        assert!(matches!(err, StripeError::Idempotency { .. }), "{err:?}");
        assert_eq!(
            answer(
                429,
                &json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}})
            ),
            StripeError::RateLimited
        );
        assert_eq!(
            answer(
                500,
                &json!({"error": {"type": "api_error", "message": "Something went wrong."}})
            ),
            StripeError::Api {
                status: 500,
                message: "Something went wrong.".into()
            }
        );
        // A 5xx from a proxy is not JSON: its text is kept, shortened.
        let err = error_from_answer(StatusCode::BAD_GATEWAY, &[b'x'; 1000], KEY);
        let StripeError::Api {
            status: 502,
            message,
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn a_refused_key_carries_no_message() {
        let err = answer(
            401,
            &json!({"error": {"type": "invalid_request_error",
                   "message": format!("Invalid API Key provided: {KEY}")}}),
        );
        assert_eq!(err, StripeError::Authentication);
        assert_eq!(err.code(), "stripe_auth");
        // An echoed key in any other message is scrubbed.
        let err = answer(
            400,
            &json!({"error": {"type": "invalid_request_error", "message": format!("bad {KEY}")}}),
        );
        assert!(!format!("{err:?} {err}").contains(KEY), "{err:?}");
    }

    #[test]
    fn retry_rule_follows_stripe_should_retry_first() {
        let s = |code| StatusCode::from_u16(code).unwrap();
        assert!(should_retry_answer(s(500), None));
        assert!(should_retry_answer(s(503), None));
        assert!(should_retry_answer(s(429), None));
        assert!(should_retry_answer(s(409), None));
        assert!(!should_retry_answer(s(400), None));
        assert!(!should_retry_answer(s(402), None));
        assert!(!should_retry_answer(s(500), Some("false")));
        assert!(should_retry_answer(s(400), Some("true")));
        assert!(!should_retry_answer(s(200), Some("true")));
    }

    #[test]
    fn retry_delays_double_then_cap_and_jitter_takes_off_at_most_half() {
        let base = Duration::from_millis(500);
        assert_eq!(retry_delay(base, 1, 0.0), Duration::from_millis(500));
        assert_eq!(retry_delay(base, 2, 0.0), Duration::from_millis(1000));
        assert_eq!(retry_delay(base, 3, 0.0), Duration::from_millis(2000));
        assert_eq!(retry_delay(base, 5, 0.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, 40, 0.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, 2, 1.0), Duration::from_millis(500));
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
            let d = retry_delay(base, 1, f);
            assert!(d > Duration::from_millis(250) && d <= base, "{d:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_checked_before_sending() {
        assert!(check_idempotency_key("invoice-123-charge-1").is_ok());
        for bad in ["", "has space", "é", &"k".repeat(256)] {
            assert_eq!(
                check_idempotency_key(bad).unwrap_err().code(),
                "idempotency_error"
            );
        }
    }

    #[test]
    fn ids_in_paths_cannot_leave_their_segment() {
        assert_eq!(path_segment("cs_test_a1B2"), "cs_test_a1B2");
        assert_eq!(
            path_segment("pi_1/../customers?x"),
            "pi_1%2F..%2Fcustomers%3Fx"
        );
    }

    #[test]
    fn from_config_without_a_key_is_none_and_debug_hides_the_key() {
        let mut config = StripeConfig {
            secret_key: None,
            webhook_secret: None,
            api_base: "https://api.stripe.com".into(),
            payment_retry_days: vec![1, 3, 5],
            suspend_on_dispute: false,
        };
        assert!(StripeClient::from_config(&config).unwrap().is_none());
        config.secret_key = Some(Secret::new(KEY.to_owned()));
        let client = StripeClient::from_config(&config).unwrap().unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains("api.stripe.com"), "{debug}");
    }
}
