//! The objects the double keeps and their JSON in Stripe's documented shapes: Customer,
//! PaymentMethod, Checkout Session (+ line item), PaymentIntent, Charge, Refund, Dispute,
//! Event. Fields the double has no use for are present with Stripe's empty values (`null`,
//! `{}`, `[]`), so clients that read them see what the API reference lists. A Charge never
//! carries a `refunds` list (removed from the default shape in API version 2022-11-15).

use serde_json::{Map, Value, json};

use crate::cards::{self, Decline, TestCard};

fn null_address() -> Value {
    json!({"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null})
}

#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub id: String,
    pub created: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: Map<String, Value>,
    pub default_payment_method: Option<String>,
}

impl Customer {
    pub fn json(&self) -> Value {
        let prefix: String = self.id[4..]
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect::<String>()
            .to_ascii_uppercase();
        json!({
            "id": self.id,
            "object": "customer",
            "address": null,
            "balance": 0,
            "created": self.created,
            "currency": null,
            "default_source": null,
            "delinquent": false,
            "description": self.description,
            "discount": null,
            "email": self.email,
            "invoice_prefix": prefix,
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": self.default_payment_method,
                "footer": null,
                "rendering_options": null
            },
            "livemode": false,
            "metadata": self.metadata,
            "name": self.name,
            "next_invoice_sequence": 1,
            "phone": self.phone,
            "preferred_locales": [],
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": null
        })
    }
}

/// What a PaymentMethod is: one of Stripe's test cards, or the test US bank account Checkout
/// uses for a delayed (asynchronous) payment.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PmKind {
    Card(&'static TestCard),
    UsBankAccount,
}

#[derive(Debug, Clone)]
pub(crate) struct PaymentMethod {
    pub id: String,
    pub created: i64,
    pub kind: PmKind,
    pub customer: Option<String>,
    /// Saved with `setup_future_usage`: the issuer has seen it authenticated for later
    /// off-session payments.
    pub set_up_off_session: bool,
    pub billing_email: Option<String>,
    pub billing_name: Option<String>,
}

fn display_brand(brand: &str) -> &str {
    match brand {
        "amex" => "american_express",
        other => other,
    }
}

impl PaymentMethod {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            PmKind::Card(_) => "card",
            PmKind::UsBankAccount => "us_bank_account",
        }
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": null_address(),
                "email": self.billing_email,
                "name": self.billing_name,
                "phone": null
            },
            "created": self.created,
            "customer": self.customer,
            "livemode": false,
            "metadata": {},
            "type": self.type_name(),
        });
        match self.kind {
            PmKind::Card(card) => {
                v["card"] = json!({
                    "brand": card.brand,
                    "checks": {
                        "address_line1_check": null,
                        "address_postal_code_check": null,
                        "cvc_check": "pass"
                    },
                    "country": "US",
                    "display_brand": display_brand(card.brand),
                    "exp_month": 12,
                    "exp_year": cards::exp_year(),
                    "fingerprint": cards::fingerprint(card),
                    "funding": card.funding,
                    "generated_from": null,
                    "last4": card.last4,
                    "networks": {"available": [card.brand], "preferred": null},
                    "three_d_secure_usage": {"supported": true},
                    "wallet": null
                });
            }
            PmKind::UsBankAccount => {
                v["us_bank_account"] = json!({
                    "account_holder_type": "individual",
                    "account_type": "checking",
                    "bank_name": "STRIPE TEST BANK",
                    "financial_connections_account": null,
                    "fingerprint": "BankTestAcct6789",
                    "last4": "6789",
                    "networks": {"preferred": "ach", "supported": ["ach"]},
                    "routing_number": "110000000",
                    "status_details": {}
                });
            }
        }
        v
    }

    /// `payment_method_details` of a charge made with this method.
    pub fn charge_details(&self, amount: i64) -> Value {
        match self.kind {
            PmKind::Card(card) => json!({
                "card": {
                    "amount_authorized": amount,
                    "brand": card.brand,
                    "checks": {
                        "address_line1_check": null,
                        "address_postal_code_check": null,
                        "cvc_check": "pass"
                    },
                    "country": "US",
                    "exp_month": 12,
                    "exp_year": cards::exp_year(),
                    "fingerprint": cards::fingerprint(card),
                    "funding": card.funding,
                    "last4": card.last4,
                    "mandate": null,
                    "network": card.brand,
                    "network_token": {"used": false},
                    "three_d_secure": null,
                    "wallet": null
                },
                "type": "card"
            }),
            PmKind::UsBankAccount => json!({
                "type": "us_bank_account",
                "us_bank_account": {
                    "account_holder_type": "individual",
                    "account_type": "checking",
                    "bank_name": "STRIPE TEST BANK",
                    "fingerprint": "BankTestAcct6789",
                    "last4": "6789",
                    "routing_number": "110000000"
                }
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LineItem {
    pub id: String,
    pub price_id: String,
    pub product_id: String,
    pub name: String,
    pub currency: String,
    pub unit_amount: i64,
    pub quantity: i64,
}

impl LineItem {
    pub fn json(&self, created: i64) -> Value {
        let total = self.unit_amount * self.quantity;
        json!({
            "id": self.id,
            "object": "item",
            "amount_discount": 0,
            "amount_subtotal": total,
            "amount_tax": 0,
            "amount_total": total,
            "currency": self.currency,
            "description": self.name,
            "price": {
                "id": self.price_id,
                "object": "price",
                "active": false,
                "billing_scheme": "per_unit",
                "created": created,
                "currency": self.currency,
                "custom_unit_amount": null,
                "livemode": false,
                "lookup_key": null,
                "metadata": {},
                "nickname": null,
                "product": self.product_id,
                "recurring": null,
                "tax_behavior": "unspecified",
                "tiers_mode": null,
                "transform_quantity": null,
                "type": "one_time",
                "unit_amount": self.unit_amount,
                "unit_amount_decimal": self.unit_amount.to_string()
            },
            "quantity": self.quantity
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionStatus {
    Open,
    Complete,
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Complete => "complete",
            SessionStatus::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CheckoutSession {
    pub id: String,
    pub created: i64,
    pub expires_at: i64,
    pub status: SessionStatus,
    /// `paid` | `unpaid`.
    pub payment_status: &'static str,
    pub amount_total: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub customer_email: Option<String>,
    /// `always` | `if_required` (Stripe's default for payment mode since 2022-08-01).
    pub customer_creation: &'static str,
    /// The Customer Checkout made for a declined attempt, reused when the customer tries
    /// again (shown as `customer` only once the session completes).
    pub created_customer: Option<String>,
    /// `(email, name)` once the customer has gone through the page.
    pub customer_details: Option<(Option<String>, Option<String>)>,
    pub metadata: Map<String, Value>,
    pub client_reference_id: Option<String>,
    pub payment_intent: Option<String>,
    pub success_url: String,
    pub cancel_url: Option<String>,
    pub line_items: Vec<LineItem>,
    pub payment_method_types: Vec<String>,
    /// `payment_intent_data[...]`: copied to the PaymentIntent made at payment.
    pub setup_future_usage: Option<String>,
    pub pi_metadata: Map<String, Value>,
    pub pi_description: Option<String>,
    pub idempotency_key: Option<String>,
    /// `<double base>/pay/<id>`.
    pub page_url: String,
}

impl CheckoutSession {
    pub fn json(&self) -> Value {
        let details = self.customer_details.as_ref().map(|(email, name)| {
            json!({
                "address": null,
                "email": email,
                "name": name,
                "phone": null,
                "tax_exempt": "none",
                "tax_ids": []
            })
        });
        // Stripe only gives the page's URL while the session can still be paid.
        let url = (self.status == SessionStatus::Open).then_some(&self.page_url);
        json!({
            "id": self.id,
            "object": "checkout.session",
            "after_expiration": null,
            "allow_promotion_codes": null,
            "amount_subtotal": self.amount_total,
            "amount_total": self.amount_total,
            "automatic_tax": {"enabled": false, "liability": null, "status": null},
            "billing_address_collection": null,
            "cancel_url": self.cancel_url,
            "client_reference_id": self.client_reference_id,
            "client_secret": null,
            "consent": null,
            "consent_collection": null,
            "created": self.created,
            "currency": self.currency,
            "currency_conversion": null,
            "custom_fields": [],
            "custom_text": {
                "after_submit": null,
                "shipping_address": null,
                "submit": null,
                "terms_of_service_acceptance": null
            },
            "customer": self.customer,
            "customer_creation": self.customer_creation,
            "customer_details": details,
            "customer_email": self.customer_email,
            "expires_at": self.expires_at,
            "invoice": null,
            "invoice_creation": null,
            "livemode": false,
            "locale": null,
            "metadata": self.metadata,
            "mode": "payment",
            "payment_intent": self.payment_intent,
            "payment_link": null,
            "payment_method_collection": "always",
            "payment_method_configuration_details": null,
            "payment_method_options": {},
            "payment_method_types": self.payment_method_types,
            "payment_status": self.payment_status,
            "phone_number_collection": {"enabled": false},
            "recovered_from": null,
            "saved_payment_method_options": null,
            "setup_intent": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "shipping_details": null,
            "shipping_options": [],
            "status": self.status.as_str(),
            "submit_type": null,
            "subscription": null,
            "success_url": self.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": url
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PiStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    Succeeded,
}

impl PiStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PiStatus::RequiresPaymentMethod => "requires_payment_method",
            PiStatus::RequiresConfirmation => "requires_confirmation",
            PiStatus::RequiresAction => "requires_action",
            PiStatus::Processing => "processing",
            PiStatus::Succeeded => "succeeded",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PaymentIntent {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
    pub setup_future_usage: Option<String>,
    pub payment_method_types: Vec<String>,
    pub receipt_email: Option<String>,
    pub status: PiStatus,
    pub latest_charge: Option<String>,
    pub last_payment_error: Option<Value>,
    pub next_action: Option<Value>,
    pub client_secret: String,
    /// The Idempotency-Key of the request that created it.
    pub idempotency_key: Option<String>,
}

impl PaymentIntent {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": self.amount_received,
            "application": null,
            "application_fee_amount": null,
            "automatic_payment_methods": null,
            "canceled_at": null,
            "cancellation_reason": null,
            "capture_method": "automatic_async",
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "description": self.description,
            "invoice": null,
            "last_payment_error": self.last_payment_error,
            "latest_charge": self.latest_charge,
            "livemode": false,
            "metadata": self.metadata,
            "next_action": self.next_action,
            "on_behalf_of": null,
            "payment_method": self.payment_method,
            "payment_method_configuration_details": null,
            "payment_method_options": {
                "card": {
                    "installments": null,
                    "mandate_options": null,
                    "network": null,
                    "request_three_d_secure": "automatic"
                }
            },
            "payment_method_types": self.payment_method_types,
            "processing": null,
            "receipt_email": self.receipt_email,
            "review": null,
            "setup_future_usage": self.setup_future_usage,
            "shipping": null,
            "source": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": self.status.as_str(),
            "transfer_data": null,
            "transfer_group": null
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChargeStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
pub(crate) struct Charge {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub payment_intent: String,
    pub payment_method: String,
    pub payment_method_details: Value,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
    pub status: ChargeStatus,
    pub failure: Option<&'static Decline>,
    pub disputed: bool,
    pub billing_email: Option<String>,
    pub billing_name: Option<String>,
    pub receipt_email: Option<String>,
    pub balance_transaction: Option<String>,
}

impl Charge {
    pub fn refunded(&self) -> bool {
        self.status == ChargeStatus::Succeeded && self.amount_refunded >= self.amount
    }

    pub fn json(&self) -> Value {
        let succeeded = self.status == ChargeStatus::Succeeded;
        let outcome = match self.failure {
            None => json!({
                "network_status": "approved_by_network",
                "reason": null,
                "risk_level": "normal",
                "risk_score": 32,
                "seller_message": "Payment complete.",
                "type": "authorized"
            }),
            Some(decline) => json!({
                "network_status": "declined_by_network",
                "reason": decline.decline_code,
                "risk_level": "normal",
                "risk_score": 32,
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined"
            }),
        };
        json!({
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": if succeeded { self.amount } else { 0 },
            "amount_refunded": self.amount_refunded,
            "application": null,
            "application_fee": null,
            "application_fee_amount": null,
            "balance_transaction": self.balance_transaction,
            "billing_details": {
                "address": null_address(),
                "email": self.billing_email,
                "name": self.billing_name,
                "phone": null
            },
            "calculated_statement_descriptor": "MPANEL",
            "captured": succeeded,
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "description": self.description,
            "destination": null,
            "dispute": null,
            "disputed": self.disputed,
            "failure_balance_transaction": null,
            "failure_code": self.failure.map(|d| d.code),
            "failure_message": self.failure.map(|d| d.message),
            "fraud_details": {},
            "invoice": null,
            "livemode": false,
            "metadata": self.metadata,
            "on_behalf_of": null,
            "outcome": outcome,
            "paid": succeeded,
            "payment_intent": self.payment_intent,
            "payment_method": self.payment_method,
            "payment_method_details": self.payment_method_details,
            "radar_options": {},
            "receipt_email": self.receipt_email,
            "receipt_number": null,
            "receipt_url": null,
            "refunded": self.refunded(),
            "review": null,
            "shipping": null,
            "source": null,
            "source_transfer": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": match self.status {
                ChargeStatus::Pending => "pending",
                ChargeStatus::Succeeded => "succeeded",
                ChargeStatus::Failed => "failed",
            },
            "transfer_data": null,
            "transfer_group": null
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Refund {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub charge: String,
    pub payment_intent: String,
    pub currency: String,
    pub reason: Option<String>,
    pub metadata: Map<String, Value>,
    pub balance_transaction: String,
    pub idempotency_key: Option<String>,
}

impl Refund {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "balance_transaction": self.balance_transaction,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "destination_details": null,
            "metadata": self.metadata,
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "receipt_number": null,
            "source_transfer_reversal": null,
            "status": "succeeded",
            "transfer_reversal": null
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Dispute {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub charge: String,
    pub payment_intent: String,
    pub currency: String,
    pub reason: String,
}

impl Dispute {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "dispute",
            "amount": self.amount,
            "balance_transactions": [],
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "evidence_details": {
                "due_by": self.created + 7 * 86_400,
                "has_evidence": false,
                "past_due": false,
                "submission_count": 0
            },
            "is_charge_refundable": false,
            "livemode": false,
            "metadata": {},
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "status": "needs_response"
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub id: String,
    pub created: i64,
    pub kind: String,
    pub api_version: String,
    /// The object as it was when the event happened.
    pub object: Value,
    pub previous_attributes: Option<Value>,
    /// The API request that caused it; `None` for what a customer did (paying on the page).
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// Webhook endpoints that have not yet answered 2xx for it (0 or 1 here).
    pub pending_webhooks: u32,
}

impl Event {
    pub fn json(&self) -> Value {
        let mut data = json!({ "object": self.object });
        if let Some(previous) = &self.previous_attributes {
            data["previous_attributes"] = previous.clone();
        }
        json!({
            "id": self.id,
            "object": "event",
            "api_version": self.api_version,
            "created": self.created,
            "data": data,
            "livemode": false,
            "pending_webhooks": self.pending_webhooks,
            "request": {"id": self.request_id, "idempotency_key": self.idempotency_key},
            "type": self.kind
        })
    }
}
