//! The double's state and every change to it: one `Store` behind one mutex, changed only by
//! the functions here, each of which emits the events Stripe emits for that change (and queues
//! them for webhook delivery in the same critical section, so delivery order is creation
//! order). No I/O happens here.

use serde_json::{Map, Value, json};

use crate::cards::{self, AUTHENTICATION_REQUIRED, Behaviour, Decline};
use crate::error::{ApiError, CardErrorDetails, ErrorType};
use crate::ids::{new_id, now};
use crate::model::{
    Charge, ChargeStatus, CheckoutSession, Customer, Dispute, Event, PaymentIntent, PaymentMethod,
    PiStatus, PmKind, Refund, SessionStatus,
};
use crate::webhooks::Outbox;

/// Who caused a change: an API request (its id and Idempotency-Key go into the events'
/// `request`), or the customer on the payment page and the bank (`None`, as in Stripe).
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A failure of a test-control action (not a Stripe error: these routes are not Stripe's).
#[derive(Debug, Clone)]
pub(crate) enum ControlError {
    NotFound(String),
    Conflict(String),
    BadRequest(String),
}

/// How a payment is being made, which decides what a 3-D Secure card does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// On Stripe's payment page: the customer completes any authentication asked for.
    CheckoutPage,
    /// `off_session=true`: nobody is there to authenticate.
    OffSession,
    /// A server-side confirm with the customer present: authentication becomes `requires_action`.
    OnSession,
}

/// What the customer did on the payment page (`POST /__double/checkout/sessions/:id/complete`).
#[derive(Debug, Clone)]
pub(crate) struct PagePayment {
    /// Paid by card now, or with a delayed method (bank debit) that settles later.
    pub paid_now: bool,
    /// A test PaymentMethod id for the card (ignored for the delayed method).
    pub payment_method: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

pub(crate) struct NewCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: Map<String, Value>,
    pub payment_method: Option<String>,
    pub default_payment_method: Option<String>,
}

pub(crate) struct NewPaymentIntent {
    pub amount: i64,
    pub currency: String,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
    pub setup_future_usage: Option<String>,
    pub payment_method_types: Vec<String>,
    pub receipt_email: Option<String>,
    pub confirm: bool,
    pub off_session: bool,
}

pub(crate) struct NewRefund {
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub metadata: Map<String, Value>,
}

pub(crate) struct Store {
    pub api_version: String,
    pub customers: Vec<Customer>,
    pub payment_methods: Vec<PaymentMethod>,
    pub sessions: Vec<CheckoutSession>,
    pub payment_intents: Vec<PaymentIntent>,
    pub charges: Vec<Charge>,
    pub refunds: Vec<Refund>,
    pub disputes: Vec<Dispute>,
    pub events: Vec<Event>,
    pub outbox: Outbox,
}

/// The top-level fields of `old` that differ in `new`, with their old values: an event's
/// `data.previous_attributes`.
fn previous_attributes(old: &Value, new: &Value) -> Value {
    let mut changed = Map::new();
    if let (Value::Object(o), Value::Object(n)) = (old, new) {
        for (k, v) in o {
            if n.get(k) != Some(v) {
                changed.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(changed)
}

/// Stripe's metadata update: given keys are set, a key set to `""` is removed.
fn merge_metadata(into: &mut Map<String, Value>, update: Map<String, Value>) {
    for (k, v) in update {
        if v.as_str() == Some("") {
            into.remove(&k);
        } else {
            into.insert(k, v);
        }
    }
}

const BANK_DEBIT_FAILED: Decline = Decline {
    code: "insufficient_funds",
    decline_code: "insufficient_funds",
    message: "The customer's account has insufficient funds to cover this payment.",
    param: None,
};

impl Store {
    pub fn new(api_version: String, outbox: Outbox) -> Self {
        Store {
            api_version,
            customers: Vec::new(),
            payment_methods: Vec::new(),
            sessions: Vec::new(),
            payment_intents: Vec::new(),
            charges: Vec::new(),
            refunds: Vec::new(),
            disputes: Vec::new(),
            events: Vec::new(),
            outbox,
        }
    }

    // ----- events -------------------------------------------------------------------------

    /// Records an event and queues it for the webhook endpoint configured now (Stripe sends an
    /// event only to the endpoints that existed when it happened).
    fn emit(&mut self, kind: &str, object: Value, previous: Option<Value>, origin: &Origin) {
        let id = new_id("evt_", 24);
        let queued = self.outbox.enqueue(&id);
        self.events.push(Event {
            id,
            created: now(),
            kind: kind.to_owned(),
            api_version: self.api_version.clone(),
            object,
            previous_attributes: previous,
            request_id: origin.request_id.clone(),
            idempotency_key: origin.idempotency_key.clone(),
            pending_webhooks: u32::from(queued),
        });
    }

    /// `[{id, type}]` of the events recorded since there were `from` of them.
    pub fn events_since(&self, from: usize) -> Vec<Value> {
        self.events[from..]
            .iter()
            .map(|e| json!({"id": e.id, "type": e.kind}))
            .collect()
    }

    pub fn event(&self, id: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.id == id)
    }

    /// A delivery got a 2xx: the event no longer waits on the endpoint.
    pub fn mark_delivered(&mut self, id: &str) {
        if let Some(e) = self.events.iter_mut().find(|e| e.id == id) {
            e.pending_webhooks = 0;
        }
    }

    // ----- lookups ------------------------------------------------------------------------

    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.iter().find(|c| c.id == id)
    }

    fn require_customer(&self, id: &str, param: &str) -> Result<(), ApiError> {
        if self.customer(id).is_some() {
            Ok(())
        } else {
            Err(ApiError::no_such("customer", id, param, false))
        }
    }

    pub fn payment_method(&self, id: &str) -> Option<&PaymentMethod> {
        self.payment_methods.iter().find(|p| p.id == id)
    }

    fn pm_index(&self, id: &str) -> Option<usize> {
        self.payment_methods.iter().position(|p| p.id == id)
    }

    pub fn session(&self, id: &str) -> Option<&CheckoutSession> {
        self.sessions.iter().find(|s| s.id == id)
    }

    fn session_index(&self, id: &str) -> Option<usize> {
        self.sessions.iter().position(|s| s.id == id)
    }

    pub fn payment_intent(&self, id: &str) -> Option<&PaymentIntent> {
        self.payment_intents.iter().find(|p| p.id == id)
    }

    fn pi_index(&self, id: &str) -> Option<usize> {
        self.payment_intents.iter().position(|p| p.id == id)
    }

    pub fn charge(&self, id: &str) -> Option<&Charge> {
        self.charges.iter().find(|c| c.id == id)
    }

    fn charge_index(&self, id: &str) -> Option<usize> {
        self.charges.iter().position(|c| c.id == id)
    }

    pub fn refund(&self, id: &str) -> Option<&Refund> {
        self.refunds.iter().find(|r| r.id == id)
    }

    // ----- payment methods ----------------------------------------------------------------

    /// The JSON of a stored PaymentMethod, or of a test id as Stripe documents it.
    pub fn payment_method_json(&self, id: &str) -> Option<Value> {
        if let Some(pm) = self.payment_method(id) {
            return Some(pm.json());
        }
        let card = cards::by_test_id(id)?;
        Some(
            PaymentMethod {
                id: id.to_owned(),
                created: now(),
                kind: PmKind::Card(card),
                customer: None,
                set_up_off_session: false,
                billing_email: None,
                billing_name: None,
            }
            .json(),
        )
    }

    /// A PaymentMethod id to use in a payment: a test id makes a new PaymentMethod of that
    /// card (as Stripe does: `pm_card_visa` is never itself attached or charged); a stored id
    /// must exist.
    fn usable_payment_method(&mut self, id: &str, param: &str) -> Result<usize, ApiError> {
        if let Some(i) = self.pm_index(id) {
            return Ok(i);
        }
        let card = cards::by_test_id(id)
            .ok_or_else(|| ApiError::no_such("PaymentMethod", id, param, false))?;
        self.payment_methods.push(PaymentMethod {
            id: new_id("pm_", 24),
            created: now(),
            kind: PmKind::Card(card),
            customer: None,
            set_up_off_session: false,
            billing_email: None,
            billing_name: None,
        });
        Ok(self.payment_methods.len() - 1)
    }

    /// `POST /v1/payment_methods/:id/attach`.
    pub fn attach_payment_method(
        &mut self,
        id: &str,
        customer: &str,
        in_path: bool,
    ) -> Result<Value, ApiError> {
        self.require_customer(customer, "customer")?;
        let i = match self.pm_index(id) {
            Some(i) => i,
            None if cards::by_test_id(id).is_some() => self.usable_payment_method(id, "id")?,
            None => {
                let param = if in_path { "id" } else { "payment_method" };
                return Err(ApiError::no_such("PaymentMethod", id, param, in_path));
            }
        };
        match &self.payment_methods[i].customer {
            Some(owner) if owner != customer => {
                return Err(ApiError::bad(
                    None,
                    "The payment method you provided has already been attached to a customer.",
                ));
            }
            _ => self.payment_methods[i].customer = Some(customer.to_owned()),
        }
        Ok(self.payment_methods[i].json())
    }

    // ----- customers ----------------------------------------------------------------------

    pub fn create_customer(
        &mut self,
        new: NewCustomer,
        origin: &Origin,
    ) -> Result<Value, ApiError> {
        let id = new_id("cus_", 14);
        self.customers.push(Customer {
            id: id.clone(),
            created: now(),
            email: new.email,
            name: new.name,
            description: new.description,
            phone: new.phone,
            metadata: new.metadata,
            default_payment_method: None,
        });
        let mut attached = None;
        if let Some(pm) = &new.payment_method {
            let pm_json = self.attach_payment_method(pm, &id, false);
            match pm_json {
                Ok(v) => attached = v["id"].as_str().map(str::to_owned),
                Err(e) => {
                    self.customers.pop();
                    return Err(e);
                }
            }
        }
        if let Some(default) = new.default_payment_method {
            // A test id passed as `payment_method` becomes a new id; let the default follow it.
            let default = if Some(&default) == new.payment_method.as_ref() {
                attached.unwrap_or(default)
            } else {
                default
            };
            if self
                .payment_method(&default)
                .and_then(|p| p.customer.as_deref())
                != Some(&id)
            {
                self.customers.pop();
                return Err(not_customers_pm(
                    &default,
                    "invoice_settings[default_payment_method]",
                ));
            }
            self.customers
                .last_mut()
                .expect("just pushed")
                .default_payment_method = Some(default);
        }
        let json = self.customers.last().expect("just pushed").json();
        self.emit("customer.created", json.clone(), None, origin);
        Ok(json)
    }

    /// `POST /v1/customers/:id`: set what is given; metadata merges.
    pub fn update_customer(
        &mut self,
        id: &str,
        update: NewCustomer,
        origin: &Origin,
    ) -> Result<Value, ApiError> {
        let i = self
            .customers
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| ApiError::no_such("customer", id, "id", true))?;
        if let Some(pm) = &update.payment_method {
            self.attach_payment_method(pm, id, false)?;
        }
        if let Some(default) = &update.default_payment_method
            && self
                .payment_method(default)
                .and_then(|p| p.customer.as_deref())
                != Some(id)
        {
            return Err(not_customers_pm(
                default,
                "invoice_settings[default_payment_method]",
            ));
        }
        let before = self.customers[i].json();
        let c = &mut self.customers[i];
        if update.email.is_some() {
            c.email = update.email;
        }
        if update.name.is_some() {
            c.name = update.name;
        }
        if update.description.is_some() {
            c.description = update.description;
        }
        if update.phone.is_some() {
            c.phone = update.phone;
        }
        if update.default_payment_method.is_some() {
            c.default_payment_method = update.default_payment_method;
        }
        merge_metadata(&mut c.metadata, update.metadata);
        let after = c.json();
        if after != before {
            let previous = previous_attributes(&before, &after);
            self.emit("customer.updated", after.clone(), Some(previous), origin);
        }
        Ok(after)
    }

    // ----- checkout -----------------------------------------------------------------------

    pub fn insert_session(&mut self, session: CheckoutSession) -> Value {
        let json = session.json();
        self.sessions.push(session);
        json
    }

    /// Expires an open session (API `POST .../expire` and the control route).
    pub fn expire_session(&mut self, id: &str, origin: &Origin) -> Result<Value, ApiError> {
        let i = self
            .session_index(id)
            .ok_or_else(|| ApiError::no_such("checkout.session", id, "session", true))?;
        if self.sessions[i].status != SessionStatus::Open {
            return Err(ApiError::bad(
                None,
                format!(
                    "Only Checkout Sessions with a status in [\"open\"] can be expired. This \
                     session has a status of \"{}\".",
                    self.sessions[i].status.as_str()
                ),
            ));
        }
        self.sessions[i].status = SessionStatus::Expired;
        let json = self.sessions[i].json();
        self.emit("checkout.session.expired", json.clone(), None, origin);
        Ok(json)
    }

    /// The customer pays on the page. Card: charged now (3-D Secure is completed on the
    /// page; a decline leaves the session open, as Checkout lets the customer try again).
    /// Delayed method: the session completes `unpaid` and the payment is `processing`.
    pub fn pay_session(&mut self, id: &str, payment: PagePayment) -> Result<Value, ControlError> {
        let origin = Origin::default();
        let si = self
            .session_index(id)
            .ok_or_else(|| ControlError::NotFound(format!("no checkout session {id}")))?;
        let session = self.sessions[si].clone();
        if session.status != SessionStatus::Open {
            return Err(ControlError::Conflict(format!(
                "checkout session {id} is {}, not open",
                session.status.as_str()
            )));
        }
        if payment.paid_now && cards::by_test_id(&payment.payment_method).is_none() {
            return Err(ControlError::BadRequest(format!(
                "paymentMethod must be one of Stripe's test PaymentMethod ids (pm_card_visa, ...), \
                 not {}",
                payment.payment_method
            )));
        }
        let customer_record = session.customer.as_deref().and_then(|c| self.customer(c));
        let email = customer_record
            .and_then(|c| c.email.clone())
            .or_else(|| session.customer_email.clone())
            .or(payment.email)
            .unwrap_or_else(|| "customer@example.com".to_owned());
        let name = payment
            .name
            .or_else(|| customer_record.and_then(|c| c.name.clone()))
            .unwrap_or_else(|| "Test Customer".to_owned());

        // Checkout creates a Customer for a one-off payment only when asked to.
        let customer = match session
            .customer
            .as_ref()
            .or(session.created_customer.as_ref())
        {
            Some(c) => Some(c.clone()),
            None if session.customer_creation == "always" => {
                let created = self
                    .create_customer(
                        NewCustomer {
                            email: Some(email.clone()),
                            name: Some(name.clone()),
                            description: None,
                            phone: None,
                            metadata: Map::new(),
                            payment_method: None,
                            default_payment_method: None,
                        },
                        &origin,
                    )
                    .map_err(|e| ControlError::BadRequest(e.message))?;
                let id = created["id"].as_str().map(str::to_owned);
                self.sessions[si].created_customer.clone_from(&id);
                id
            }
            None => None,
        };

        let pm_index = if payment.paid_now {
            self.usable_payment_method(&payment.payment_method, "paymentMethod")
                .map_err(|e| ControlError::BadRequest(e.message))?
        } else {
            self.payment_methods.push(PaymentMethod {
                id: new_id("pm_", 24),
                created: now(),
                kind: PmKind::UsBankAccount,
                customer: None,
                set_up_off_session: false,
                billing_email: None,
                billing_name: None,
            });
            self.payment_methods.len() - 1
        };
        self.payment_methods[pm_index].billing_email = Some(email.clone());
        self.payment_methods[pm_index].billing_name = Some(name.clone());
        let pm_id = self.payment_methods[pm_index].id.clone();

        let pi_id = new_id("pi_", 24);
        self.payment_intents.push(PaymentIntent {
            client_secret: format!("{pi_id}_secret_{}", new_id("", 25)),
            id: pi_id.clone(),
            created: now(),
            amount: session.amount_total,
            amount_received: 0,
            currency: session.currency.clone(),
            customer: customer.clone(),
            payment_method: Some(pm_id),
            description: session.pi_description.clone(),
            metadata: session.pi_metadata.clone(),
            setup_future_usage: session.setup_future_usage.clone(),
            payment_method_types: session.payment_method_types.clone(),
            receipt_email: None,
            status: PiStatus::RequiresConfirmation,
            latest_charge: None,
            last_payment_error: None,
            next_action: None,
            idempotency_key: None,
        });
        let pi = self.payment_intents.len() - 1;
        self.sessions[si].payment_intent = Some(pi_id);
        let pi_json = self.payment_intents[pi].json();
        self.emit("payment_intent.created", pi_json, None, &origin);

        if payment.paid_now {
            if let Err(declined) = self.attempt(pi, pm_index, Attempt::CheckoutPage, &origin) {
                return Ok(json!({ "declined": declined.body()["error"] }));
            }
            let s = &mut self.sessions[si];
            s.payment_status = "paid";
            s.status = SessionStatus::Complete;
            s.customer = customer;
            s.customer_details = Some((Some(email), Some(name)));
        } else {
            self.save_if_asked(pi, pm_index);
            let charge = self.new_charge(pi, pm_index, ChargeStatus::Pending, None);
            let p = &mut self.payment_intents[pi];
            p.status = PiStatus::Processing;
            p.latest_charge = Some(charge);
            let charge_json = self.charges.last().expect("just pushed").json();
            self.emit("charge.pending", charge_json, None, &origin);
            let pi_json = self.payment_intents[pi].json();
            self.emit("payment_intent.processing", pi_json, None, &origin);
            let s = &mut self.sessions[si];
            s.payment_status = "unpaid";
            s.status = SessionStatus::Complete;
            s.customer = customer;
            s.customer_details = Some((Some(email), Some(name)));
        }
        let session_json = self.sessions[si].json();
        self.emit("checkout.session.completed", session_json, None, &origin);
        Ok(json!({}))
    }

    /// The delayed payment of a completed, unpaid session settles or fails.
    pub fn settle_session(&mut self, id: &str, succeeded: bool) -> Result<(), ControlError> {
        let origin = Origin::default();
        let si = self
            .session_index(id)
            .ok_or_else(|| ControlError::NotFound(format!("no checkout session {id}")))?;
        let session = &self.sessions[si];
        let pi = session
            .payment_intent
            .as_deref()
            .and_then(|p| self.pi_index(p))
            .filter(|&pi| self.payment_intents[pi].status == PiStatus::Processing);
        let (SessionStatus::Complete, "unpaid", Some(pi)) =
            (session.status, session.payment_status, pi)
        else {
            return Err(ControlError::Conflict(format!(
                "checkout session {id} has no delayed payment in progress (complete it with \
                 outcome \"unpaid\" first)"
            )));
        };
        let charge = self.payment_intents[pi]
            .latest_charge
            .as_deref()
            .and_then(|c| self.charge_index(c))
            .expect("a processing payment has its pending charge");
        if succeeded {
            self.charges[charge].status = ChargeStatus::Succeeded;
            self.charges[charge].balance_transaction = Some(new_id("txn_", 24));
            let p = &mut self.payment_intents[pi];
            p.status = PiStatus::Succeeded;
            p.amount_received = p.amount;
            self.sessions[si].payment_status = "paid";
            let charge_json = self.charges[charge].json();
            self.emit("charge.succeeded", charge_json, None, &origin);
            let pi_json = self.payment_intents[pi].json();
            self.emit("payment_intent.succeeded", pi_json, None, &origin);
            let session_json = self.sessions[si].json();
            self.emit(
                "checkout.session.async_payment_succeeded",
                session_json,
                None,
                &origin,
            );
        } else {
            self.charges[charge].status = ChargeStatus::Failed;
            self.charges[charge].failure = Some(&BANK_DEBIT_FAILED);
            let pm = self.payment_intents[pi]
                .payment_method
                .as_deref()
                .and_then(|p| self.payment_method(p))
                .map(PaymentMethod::json);
            let charge_id = self.charges[charge].id.clone();
            let p = &mut self.payment_intents[pi];
            p.status = PiStatus::RequiresPaymentMethod;
            p.payment_method = None;
            p.last_payment_error = Some(payment_error(&BANK_DEBIT_FAILED, &charge_id, pm.as_ref()));
            let charge_json = self.charges[charge].json();
            self.emit("charge.failed", charge_json, None, &origin);
            let pi_json = self.payment_intents[pi].json();
            self.emit("payment_intent.payment_failed", pi_json, None, &origin);
            let session_json = self.sessions[si].json();
            self.emit(
                "checkout.session.async_payment_failed",
                session_json,
                None,
                &origin,
            );
        }
        Ok(())
    }

    // ----- payment intents ----------------------------------------------------------------

    /// `POST /v1/payment_intents`. A confirm that fails still creates the PaymentIntent; the
    /// 402 carries it.
    pub fn create_payment_intent(
        &mut self,
        new: NewPaymentIntent,
        origin: &Origin,
    ) -> Result<Value, ApiError> {
        if let Some(c) = &new.customer {
            self.require_customer(c, "customer")?;
        }
        let pm_index = match &new.payment_method {
            Some(pm) => {
                if let Some(existing) = self.payment_method(pm)
                    && let (Some(owner), Some(customer)) = (&existing.customer, &new.customer)
                    && owner != customer
                {
                    return Err(not_customers_pm(pm, "payment_method"));
                }
                if self.payment_method(pm).is_none() && cards::by_test_id(pm).is_none() {
                    return Err(ApiError::no_such(
                        "PaymentMethod",
                        pm,
                        "payment_method",
                        false,
                    ));
                }
                Some(self.usable_payment_method(pm, "payment_method")?)
            }
            None => None,
        };
        let pi_id = new_id("pi_", 24);
        self.payment_intents.push(PaymentIntent {
            client_secret: format!("{pi_id}_secret_{}", new_id("", 25)),
            id: pi_id,
            created: now(),
            amount: new.amount,
            amount_received: 0,
            currency: new.currency,
            customer: new.customer,
            payment_method: pm_index.map(|i| self.payment_methods[i].id.clone()),
            description: new.description,
            metadata: new.metadata,
            setup_future_usage: new.setup_future_usage,
            payment_method_types: new.payment_method_types,
            receipt_email: new.receipt_email,
            status: if pm_index.is_some() {
                PiStatus::RequiresConfirmation
            } else {
                PiStatus::RequiresPaymentMethod
            },
            latest_charge: None,
            last_payment_error: None,
            next_action: None,
            idempotency_key: origin.idempotency_key.clone(),
        });
        let pi = self.payment_intents.len() - 1;
        self.emit(
            "payment_intent.created",
            self.payment_intents[pi].json(),
            None,
            origin,
        );
        if new.confirm {
            let pm = pm_index.expect("the handler refuses confirm without a payment method");
            let attempt = if new.off_session {
                Attempt::OffSession
            } else {
                Attempt::OnSession
            };
            self.attempt(pi, pm, attempt, origin)?;
        }
        Ok(self.payment_intents[pi].json())
    }

    /// `POST /v1/payment_intents/:id/confirm`.
    pub fn confirm_payment_intent(
        &mut self,
        id: &str,
        payment_method: Option<&str>,
        off_session: bool,
        origin: &Origin,
    ) -> Result<Value, ApiError> {
        let pi = self
            .pi_index(id)
            .ok_or_else(|| ApiError::no_such("payment_intent", id, "intent", true))?;
        let status = self.payment_intents[pi].status;
        if !matches!(
            status,
            PiStatus::RequiresPaymentMethod | PiStatus::RequiresConfirmation
        ) {
            let mut e = ApiError::bad(
                None,
                format!(
                    "You cannot confirm this PaymentIntent because it has a status of {}.",
                    status.as_str()
                ),
            )
            .with_code("payment_intent_unexpected_state");
            e.payment_intent = Some(Box::new(self.payment_intents[pi].json()));
            return Err(e);
        }
        let pm = match payment_method.or(self.payment_intents[pi].payment_method.as_deref()) {
            Some(pm) => pm.to_owned(),
            None => return Err(missing_payment_method()),
        };
        let pm_index = self.usable_payment_method(&pm, "payment_method")?;
        self.payment_intents[pi].payment_method = Some(self.payment_methods[pm_index].id.clone());
        let attempt = if off_session {
            Attempt::OffSession
        } else {
            Attempt::OnSession
        };
        self.attempt(pi, pm_index, attempt, origin)?;
        Ok(self.payment_intents[pi].json())
    }

    /// Charges PaymentIntent `pi` with PaymentMethod `pm`: succeeds, declines (402 with the
    /// PaymentIntent, now `requires_payment_method`) or asks for authentication.
    fn attempt(
        &mut self,
        pi: usize,
        pm: usize,
        attempt: Attempt,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        let pm_record = &self.payment_methods[pm];
        let behaviour = match pm_record.kind {
            PmKind::Card(card) => card.behaviour,
            PmKind::UsBankAccount => Behaviour::Succeeds,
        };
        let set_up = pm_record.set_up_off_session;
        let needs_authentication = || match attempt {
            Attempt::CheckoutPage => Ok(()),
            Attempt::OffSession => Err(Some(&AUTHENTICATION_REQUIRED)),
            Attempt::OnSession => Err(None),
        };
        let verdict: Result<(), Option<&'static Decline>> = match behaviour {
            Behaviour::Succeeds => Ok(()),
            Behaviour::Declines(decline) => Err(Some(decline)),
            Behaviour::AlwaysAuthenticates => needs_authentication(),
            Behaviour::AuthenticatesUnlessSetUp if attempt == Attempt::OffSession && set_up => {
                Ok(())
            }
            Behaviour::AuthenticatesUnlessSetUp => needs_authentication(),
        };
        self.payment_intents[pi].payment_method = Some(self.payment_methods[pm].id.clone());
        match verdict {
            Ok(()) => {
                self.save_if_asked(pi, pm);
                let charge = self.new_charge(pi, pm, ChargeStatus::Succeeded, None);
                let p = &mut self.payment_intents[pi];
                p.status = PiStatus::Succeeded;
                p.amount_received = p.amount;
                p.latest_charge = Some(charge);
                p.last_payment_error = None;
                p.next_action = None;
                let charge_json = self.charges.last().expect("just pushed").json();
                self.emit("charge.succeeded", charge_json, None, origin);
                let pi_json = self.payment_intents[pi].json();
                self.emit("payment_intent.succeeded", pi_json, None, origin);
                Ok(())
            }
            Err(None) => {
                let p = &mut self.payment_intents[pi];
                p.status = PiStatus::RequiresAction;
                p.next_action = Some(json!({
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect"}
                }));
                let pi_json = p.json();
                self.emit("payment_intent.requires_action", pi_json, None, origin);
                Ok(())
            }
            Err(Some(decline)) => {
                let charge = self.new_charge(pi, pm, ChargeStatus::Failed, Some(decline));
                let pm_json = self.payment_methods[pm].json();
                let p = &mut self.payment_intents[pi];
                p.status = PiStatus::RequiresPaymentMethod;
                p.payment_method = None;
                p.latest_charge = Some(charge.clone());
                p.next_action = None;
                p.last_payment_error = Some(payment_error(decline, &charge, Some(&pm_json)));
                let charge_json = self.charges.last().expect("just pushed").json();
                self.emit("charge.failed", charge_json, None, origin);
                let pi_json = self.payment_intents[pi].json();
                self.emit(
                    "payment_intent.payment_failed",
                    pi_json.clone(),
                    None,
                    origin,
                );
                let mut error = ApiError::new(
                    axum::http::StatusCode::PAYMENT_REQUIRED,
                    ErrorType::Card,
                    decline.message,
                )
                .with_code(decline.code);
                error.param = decline.param.map(str::to_owned);
                error.card = Some(Box::new(CardErrorDetails {
                    decline_code: decline.decline_code.to_owned(),
                    charge,
                    payment_intent: pi_json,
                    payment_method: pm_json,
                }));
                Err(error)
            }
        }
    }

    /// `setup_future_usage` with a customer: the method is attached to the customer and saved
    /// for later off-session payments.
    fn save_if_asked(&mut self, pi: usize, pm: usize) {
        let p = &self.payment_intents[pi];
        if p.setup_future_usage.is_none() {
            return;
        }
        let Some(customer) = p.customer.clone() else {
            return;
        };
        let method = &mut self.payment_methods[pm];
        if method.customer.is_none() {
            method.customer = Some(customer.clone());
        }
        if method.customer.as_deref() == Some(&customer) {
            method.set_up_off_session = true;
        }
    }

    fn new_charge(
        &mut self,
        pi: usize,
        pm: usize,
        status: ChargeStatus,
        failure: Option<&'static Decline>,
    ) -> String {
        let p = &self.payment_intents[pi];
        let method = &self.payment_methods[pm];
        let id = new_id("ch_", 24);
        self.charges.push(Charge {
            id: id.clone(),
            created: now(),
            amount: p.amount,
            amount_refunded: 0,
            currency: p.currency.clone(),
            customer: p.customer.clone(),
            payment_intent: p.id.clone(),
            payment_method: method.id.clone(),
            payment_method_details: method.charge_details(p.amount),
            description: p.description.clone(),
            metadata: p.metadata.clone(),
            status,
            failure,
            disputed: false,
            billing_email: method.billing_email.clone(),
            billing_name: method.billing_name.clone(),
            receipt_email: p.receipt_email.clone(),
            balance_transaction: (status == ChargeStatus::Succeeded).then(|| new_id("txn_", 24)),
        });
        id
    }

    // ----- refunds and disputes -----------------------------------------------------------

    /// `POST /v1/refunds`: refunds `amount` (default: what is left) of a succeeded charge.
    pub fn create_refund(&mut self, new: NewRefund, origin: &Origin) -> Result<Value, ApiError> {
        let charge = match (&new.charge, &new.payment_intent) {
            (Some(ch), pi) => {
                let i = self
                    .charge_index(ch)
                    .ok_or_else(|| ApiError::no_such("charge", ch, "charge", false))?;
                if let Some(pi) = pi
                    && self.charges[i].payment_intent != *pi
                {
                    return Err(ApiError::bad(
                        Some("payment_intent"),
                        format!("Charge {ch} does not belong to PaymentIntent {pi}."),
                    ));
                }
                i
            }
            (None, Some(pi)) => {
                let p = self.payment_intent(pi).ok_or_else(|| {
                    ApiError::no_such("payment_intent", pi, "payment_intent", false)
                })?;
                p.latest_charge
                    .as_deref()
                    .and_then(|c| self.charge_index(c))
                    .filter(|&i| self.charges[i].status == ChargeStatus::Succeeded)
                    .ok_or_else(|| {
                        ApiError::bad(
                            Some("payment_intent"),
                            "This PaymentIntent does not have a successful charge to refund.",
                        )
                    })?
            }
            (None, None) => {
                return Err(ApiError::invalid(
                    "parameter_missing",
                    "charge",
                    "One of the following params should be provided for this request: \
                     payment_intent or charge."
                        .to_owned(),
                ));
            }
        };
        let c = &self.charges[charge];
        if c.status != ChargeStatus::Succeeded {
            return Err(ApiError::bad(
                Some("charge"),
                format!("Charge {} has not succeeded and cannot be refunded.", c.id),
            ));
        }
        if c.disputed {
            return Err(ApiError::bad(
                Some("charge"),
                format!(
                    "Charge {} has been charged back; cannot issue a refund.",
                    c.id
                ),
            )
            .with_code("charge_disputed"));
        }
        let remaining = c.amount - c.amount_refunded;
        if remaining <= 0 {
            return Err(ApiError::bad(
                Some("charge"),
                format!("Charge {} has already been refunded.", c.id),
            )
            .with_code("charge_already_refunded"));
        }
        let amount = new.amount.unwrap_or(remaining);
        if amount <= 0 {
            return Err(ApiError::invalid(
                "parameter_invalid_integer",
                "amount",
                "This value must be greater than or equal to 1.".to_owned(),
            ));
        }
        if amount > remaining {
            return Err(ApiError::invalid(
                "amount_too_large",
                "amount",
                format!(
                    "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                    money(amount, &c.currency),
                    money(remaining, &c.currency)
                ),
            ));
        }
        let before = c.json();
        self.charges[charge].amount_refunded += amount;
        let c = &self.charges[charge];
        let refund = Refund {
            id: new_id("re_", 24),
            created: now(),
            amount,
            charge: c.id.clone(),
            payment_intent: c.payment_intent.clone(),
            currency: c.currency.clone(),
            reason: new.reason,
            metadata: new.metadata,
            balance_transaction: new_id("txn_", 24),
            idempotency_key: origin.idempotency_key.clone(),
        };
        let refund_json = refund.json();
        self.refunds.push(refund);
        let after = self.charges[charge].json();
        let previous = previous_attributes(&before, &after);
        self.emit("charge.refunded", after, Some(previous), origin);
        self.emit("refund.created", refund_json.clone(), None, origin);
        Ok(refund_json)
    }

    /// A chargeback on a succeeded charge.
    pub fn dispute_charge(
        &mut self,
        id: &str,
        reason: String,
        amount: Option<i64>,
    ) -> Result<Value, ControlError> {
        let i = self
            .charge_index(id)
            .ok_or_else(|| ControlError::NotFound(format!("no charge {id}")))?;
        let c = &self.charges[i];
        if c.status != ChargeStatus::Succeeded {
            return Err(ControlError::Conflict(format!(
                "charge {id} did not succeed"
            )));
        }
        if c.disputed {
            return Err(ControlError::Conflict(format!(
                "charge {id} is already disputed"
            )));
        }
        let amount = amount.unwrap_or(c.amount);
        if amount <= 0 || amount > c.amount {
            return Err(ControlError::BadRequest(format!(
                "amount must be between 1 and the charge's {}",
                c.amount
            )));
        }
        let dispute = Dispute {
            id: new_id("dp_", 24),
            created: now(),
            amount,
            charge: c.id.clone(),
            payment_intent: c.payment_intent.clone(),
            currency: c.currency.clone(),
            reason,
        };
        self.charges[i].disputed = true;
        let json = dispute.json();
        self.disputes.push(dispute);
        self.emit(
            "charge.dispute.created",
            json.clone(),
            None,
            &Origin::default(),
        );
        Ok(json)
    }
}

/// `last_payment_error` of a PaymentIntent whose charge `charge` was declined.
fn payment_error(decline: &Decline, charge: &str, payment_method: Option<&Value>) -> Value {
    json!({
        "charge": charge,
        "code": decline.code,
        "decline_code": decline.decline_code,
        "message": decline.message,
        "param": decline.param,
        "payment_method": payment_method,
        "type": "card_error"
    })
}

fn not_customers_pm(pm: &str, param: &str) -> ApiError {
    ApiError::invalid(
        "resource_missing",
        param,
        format!(
            "The customer does not have a payment method with the ID {pm}. The payment method \
             must be attached to the customer."
        ),
    )
}

pub(crate) fn missing_payment_method() -> ApiError {
    ApiError::bad(
        None,
        "You cannot confirm this PaymentIntent because it's missing a payment method. You can \
         either update the PaymentIntent with a payment method and then confirm it again, or \
         confirm it again directly with a payment method.",
    )
    .with_code("payment_intent_unexpected_state")
}

/// `12.34 eur` for error messages; zero-decimal currencies keep whole units.
fn money(amount: i64, currency: &str) -> String {
    const ZERO_DECIMAL: &[&str] = &[
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    if ZERO_DECIMAL.contains(&currency) {
        format!("{amount} {currency}")
    } else {
        format!("{}.{:02} {currency}", amount / 100, amount % 100)
    }
}
