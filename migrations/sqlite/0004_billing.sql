-- Billing: checkout orders, invoice totals and gapless numbers, saved cards, and the queue of
-- billing work (charges, saving a card, lifting a suspension) the job runner carries out.

-- A service is billed period after period from next_due_at (Unix ms of a UTC midnight);
-- billing_day is the day of the month it was first billed on, so a monthly service billed on
-- the 31st comes back to the 31st after a short month. A chargeback flags the service.
ALTER TABLE services RENAME COLUMN renewal_date TO next_due_at;
ALTER TABLE services ADD COLUMN billing_day INTEGER;
ALTER TABLE services ADD COLUMN dispute_ref TEXT;

-- Prices are before tax; the tax rate is in basis points (2000 = 20 %).
ALTER TABLE products ADD COLUMN tax_rate_bp INTEGER NOT NULL DEFAULT 0
    CHECK (tax_rate_bp >= 0 AND tax_rate_bp <= 10000);

-- The card saved at checkout, charged off-session for renewals. Brand and last four only.
ALTER TABLE customers ADD COLUMN payment_method_id TEXT;
ALTER TABLE customers ADD COLUMN card_brand TEXT;
ALTER TABLE customers ADD COLUMN card_last4 TEXT;

-- amount_minor stays the total; the parts and what was paid and refunded are kept beside it.
ALTER TABLE invoices ADD COLUMN subtotal_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN tax_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN tax_rate_bp INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN amount_paid_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN amount_refunded_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN lines TEXT NOT NULL DEFAULT '[]';
ALTER TABLE invoices ADD COLUMN issued_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN voided_at BIGINT;
-- Auto-charge: attempts made, when the next is due (NULL: none planned), the last decline, and
-- the payment link sent when the bank asked the customer to authenticate.
ALTER TABLE invoices ADD COLUMN charge_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN next_charge_at BIGINT;
ALTER TABLE invoices ADD COLUMN last_charge_error TEXT;
ALTER TABLE invoices ADD COLUMN pay_url TEXT;
CREATE INDEX invoices_next_charge ON invoices (next_charge_at) WHERE status = 'unpaid';

-- Gapless invoice numbers: the counter row is bumped in the transaction that writes the invoice.
CREATE TABLE invoice_counters (
    year         INTEGER PRIMARY KEY,
    last_number  BIGINT NOT NULL
);

ALTER TABLE payments ADD COLUMN method TEXT NOT NULL DEFAULT 'card';
ALTER TABLE payments ADD COLUMN reference TEXT;
ALTER TABLE payments ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0;
CREATE INDEX payments_invoice ON payments (invoice_id);

-- What a webhook event did (fulfilled, recorded, ignored, unknown type …).
ALTER TABLE webhook_events ADD COLUMN outcome TEXT;

-- A checkout order is written before Stripe is called and fulfilled once, by the webhook or
-- the success page, whichever comes first.
CREATE TABLE orders (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    status               TEXT   NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'paid', 'fulfilled', 'expired', 'failed')),
    email                TEXT   NOT NULL,
    name                 TEXT   NOT NULL,
    customer_id          BIGINT REFERENCES customers (id),
    stripe_customer_id   TEXT,
    product_id           BIGINT NOT NULL REFERENCES products (id),
    billing_cycle        TEXT   NOT NULL CHECK (billing_cycle IN ('monthly', 'quarterly', 'annually')),
    domain               TEXT   NOT NULL,
    subtotal_minor       BIGINT NOT NULL CHECK (subtotal_minor >= 0),
    tax_minor            BIGINT NOT NULL CHECK (tax_minor >= 0),
    tax_rate_bp          INTEGER NOT NULL,
    total_minor          BIGINT NOT NULL CHECK (total_minor >= 0),
    currency             TEXT   NOT NULL CHECK (length(currency) = 3),
    checkout_session_id  TEXT   UNIQUE,
    checkout_url         TEXT,
    payment_intent_id    TEXT,
    service_id           BIGINT REFERENCES services (id),
    invoice_id           BIGINT REFERENCES invoices (id),
    failure              TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    completed_at         BIGINT
);
CREATE INDEX orders_payment_intent ON orders (payment_intent_id);

-- Billing work that calls Stripe or the lifecycle layer, committed with the change that needs
-- it and worked under leases like the task queue. A charge's dedupe key is its Stripe
-- Idempotency-Key (invoice-42-charge-1): a charge retried after a crash cannot charge twice.
CREATE TABLE billing_jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT   NOT NULL CHECK (kind IN ('charge', 'save_card', 'invoice_email', 'unsuspend', 'dispute_suspend', 'cancel_service')),
    dedupe_key        TEXT   NOT NULL UNIQUE,
    invoice_id        BIGINT REFERENCES invoices (id),
    customer_id       BIGINT REFERENCES customers (id),
    service_id        BIGINT REFERENCES services (id),
    params            TEXT NOT NULL DEFAULT '{}',
    result            TEXT,
    status            TEXT   NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'done', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_holder      TEXT,
    lease_expires_at  BIGINT,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    completed_at      BIGINT
);
-- One charge in flight per invoice: the job, the pay route and a retry cannot overlap.
CREATE UNIQUE INDEX billing_jobs_one_open_charge ON billing_jobs (invoice_id)
    WHERE kind = 'charge' AND status IN ('pending', 'processing');
CREATE INDEX billing_jobs_runnable ON billing_jobs (next_attempt_at) WHERE status = 'pending';
CREATE INDEX billing_jobs_leases ON billing_jobs (lease_expires_at) WHERE status = 'processing';
