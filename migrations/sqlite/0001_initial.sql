-- mpanel schema, SQLite flavour. migrations/postgres/0001_initial.sql holds the same logical
-- schema. Times are Unix milliseconds (BIGINT) in both backends so every query is portable and
-- comparisons are plain integer comparisons; money is integer minor units plus an ISO currency.

CREATE TABLE servers (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    hostname          TEXT    NOT NULL UNIQUE,
    ip_address        TEXT    NOT NULL,
    control_panel     TEXT    NOT NULL CHECK (control_panel IN ('cpanel', 'plesk', 'directadmin')),
    control_panel_url TEXT    NOT NULL,
    max_accounts      INTEGER NOT NULL CHECK (max_accounts >= 0),
    status            TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'disabled')),
    location          TEXT    NOT NULL DEFAULT '',
    server_group      TEXT    NOT NULL DEFAULT 'default',
    nameserver1       TEXT    NOT NULL DEFAULT '',
    nameserver2       TEXT    NOT NULL DEFAULT '',
    dns_provider      TEXT    NOT NULL DEFAULT 'panel' CHECK (dns_provider IN ('panel', 'powerdns')),
    ssl_provider      TEXT    NOT NULL DEFAULT 'acme' CHECK (ssl_provider IN ('acme', 'autossl')),
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);
CREATE INDEX servers_placement ON servers (status, server_group, control_panel);

-- The controller's built-in CA. The private key is sealed with ENCRYPTION_KEY (key id kept for rotation).
CREATE TABLE certificate_authorities (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    cert_pem        TEXT   NOT NULL,
    key_encrypted   TEXT   NOT NULL,
    fingerprint     TEXT   NOT NULL UNIQUE,
    active          INTEGER NOT NULL DEFAULT 1,
    not_after       BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE agents (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id            BIGINT NOT NULL UNIQUE REFERENCES servers (id) ON DELETE CASCADE,
    status               TEXT   NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'online', 'suspect', 'offline', 'revoked')),
    enrolled_at          BIGINT NOT NULL,
    cert_serial          TEXT,
    cert_not_after       BIGINT,
    revoked_at           BIGINT,
    agent_version        TEXT   NOT NULL DEFAULT '',
    panel_kind           TEXT   NOT NULL DEFAULT '',
    capabilities         TEXT  NOT NULL DEFAULT '[]',
    last_heartbeat_at    BIGINT,
    last_load            TEXT,
    updated_at           BIGINT NOT NULL
);

-- Every certificate ever issued to an agent, so a revocation covers renewed certificates too.
CREATE TABLE agent_certificates (
    serial      TEXT   PRIMARY KEY,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    revoked_at  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX agent_certificates_server ON agent_certificates (server_id);

CREATE TABLE enrollment_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    token_hash  TEXT   NOT NULL UNIQUE,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE admin_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT   NOT NULL,
    token_hash    TEXT   NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);

CREATE TABLE customers (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    email               TEXT   NOT NULL UNIQUE,
    name                TEXT   NOT NULL,
    stripe_customer_id  TEXT   UNIQUE,
    status              TEXT   NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE products (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL UNIQUE,
    server_group         TEXT    NOT NULL DEFAULT 'default',
    package_cpanel       TEXT    NOT NULL DEFAULT 'default',
    package_plesk        TEXT    NOT NULL DEFAULT 'Unlimited',
    package_directadmin  TEXT    NOT NULL DEFAULT 'default',
    disk_mb              INTEGER NOT NULL DEFAULT 0 CHECK (disk_mb >= 0),
    email_quota_mb       INTEGER NOT NULL DEFAULT 0 CHECK (email_quota_mb >= 0),
    databases            INTEGER NOT NULL DEFAULT 1 CHECK (databases >= 0),
    active               INTEGER NOT NULL DEFAULT 1,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL
);

CREATE TABLE product_prices (
    product_id     BIGINT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    billing_cycle  TEXT   NOT NULL CHECK (billing_cycle IN ('monthly', 'quarterly', 'annually')),
    amount_minor   BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency       TEXT   NOT NULL CHECK (length(currency) = 3),
    PRIMARY KEY (product_id, billing_cycle, currency)
);

CREATE TABLE services (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id         BIGINT NOT NULL REFERENCES customers (id),
    product_id          BIGINT NOT NULL REFERENCES products (id),
    server_id           BIGINT REFERENCES servers (id),
    domain              TEXT   NOT NULL,
    username            TEXT,
    password_encrypted  TEXT,
    status              TEXT   NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'active', 'suspended', 'terminated', 'cancelled')),
    billing_cycle       TEXT   NOT NULL CHECK (billing_cycle IN ('monthly', 'quarterly', 'annually')),
    provisioning_error  TEXT,
    provisioned_at      BIGINT,
    renewal_date        BIGINT,
    suspended_at        BIGINT,
    suspension_reason   TEXT,
    terminated_at       BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
-- A domain has at most one live service; finished ones stay for history.
CREATE UNIQUE INDEX services_live_domain ON services (domain)
    WHERE status IN ('pending', 'active', 'suspended');
-- A username is unique per server while the service lives.
CREATE UNIQUE INDEX services_server_username ON services (server_id, username)
    WHERE server_id IS NOT NULL AND username IS NOT NULL AND status IN ('pending', 'active', 'suspended');
CREATE INDEX services_customer ON services (customer_id);
CREATE INDEX services_server_status ON services (server_id, status);
CREATE INDEX services_renewal ON services (status, renewal_date);

CREATE TABLE provisioning_tasks (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id        BIGINT  NOT NULL REFERENCES services (id),
    task_type         TEXT    NOT NULL CHECK (task_type IN
                      ('provision', 'suspend', 'unsuspend', 'terminate', 'change_package', 'change_password')),
    status            TEXT    NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_retries       INTEGER NOT NULL DEFAULT 3,
    -- Per-step results: [{"step","status","data","error","finishedAt"}].
    result            TEXT   NOT NULL DEFAULT '{"steps":[]}',
    -- Task parameters (a new package name, a sealed new password, ...).
    params            TEXT   NOT NULL DEFAULT '{}',
    error             TEXT,
    wait_reason       TEXT,
    idempotency_key   TEXT    NOT NULL UNIQUE,
    next_attempt_at   BIGINT  NOT NULL,
    lease_holder      TEXT,
    lease_expires_at  BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    completed_at      BIGINT,
    cleared_at        BIGINT
);
-- One open task per service: a second order, retry or lifecycle command cannot race the first.
CREATE UNIQUE INDEX provisioning_tasks_one_open ON provisioning_tasks (service_id)
    WHERE status IN ('pending', 'processing');
-- The queue claim: runnable pending tasks by due time, and expired leases.
CREATE INDEX provisioning_tasks_runnable ON provisioning_tasks (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX provisioning_tasks_leases ON provisioning_tasks (lease_expires_at)
    WHERE status = 'processing';
CREATE INDEX provisioning_tasks_status_created ON provisioning_tasks (status, created_at);
CREATE INDEX provisioning_tasks_service ON provisioning_tasks (service_id);

CREATE TABLE invoices (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    number         TEXT   NOT NULL UNIQUE,
    customer_id    BIGINT NOT NULL REFERENCES customers (id),
    service_id     BIGINT REFERENCES services (id),
    period_start   BIGINT,
    period_end     BIGINT,
    status         TEXT   NOT NULL DEFAULT 'unpaid'
                   CHECK (status IN ('draft', 'unpaid', 'paid', 'overdue', 'void', 'refunded')),
    amount_minor   BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency       TEXT   NOT NULL CHECK (length(currency) = 3),
    due_at         BIGINT NOT NULL,
    paid_at        BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
-- One invoice per service and period.
CREATE UNIQUE INDEX invoices_service_period ON invoices (service_id, period_start)
    WHERE service_id IS NOT NULL AND period_start IS NOT NULL;
CREATE INDEX invoices_status_due ON invoices (status, due_at);
CREATE INDEX invoices_customer ON invoices (customer_id);

CREATE TABLE payments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id     BIGINT REFERENCES invoices (id),
    customer_id    BIGINT NOT NULL REFERENCES customers (id),
    amount_minor   BIGINT NOT NULL,
    currency       TEXT   NOT NULL CHECK (length(currency) = 3),
    provider       TEXT   NOT NULL,
    -- The provider's id (payment intent, checkout session): one payment row per real charge.
    provider_ref   TEXT   NOT NULL,
    status         TEXT   NOT NULL CHECK (status IN ('succeeded', 'failed', 'refunded', 'pending')),
    created_at     BIGINT NOT NULL,
    UNIQUE (provider, provider_ref)
);

CREATE TABLE webhook_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    provider      TEXT   NOT NULL,
    event_id      TEXT   NOT NULL,
    event_type    TEXT   NOT NULL,
    payload       TEXT  NOT NULL,
    received_at   BIGINT NOT NULL,
    processed_at  BIGINT,
    UNIQUE (provider, event_id)
);

CREATE TABLE ssl_certificates (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id   BIGINT NOT NULL REFERENCES services (id),
    domain       TEXT   NOT NULL,
    provider     TEXT   NOT NULL CHECK (provider IN ('acme', 'autossl')),
    status       TEXT   NOT NULL CHECK (status IN ('pending', 'waiting_for_dns', 'issued', 'failed', 'expired')),
    issuer       TEXT,
    serial       TEXT,
    not_before   BIGINT,
    not_after    BIGINT,
    renew_after  BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (service_id, domain)
);
CREATE INDEX ssl_certificates_renewal ON ssl_certificates (renew_after);

CREATE TABLE backups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id   BIGINT NOT NULL REFERENCES services (id),
    server_id    BIGINT REFERENCES servers (id),
    location     TEXT   NOT NULL,
    size_bytes   BIGINT NOT NULL DEFAULT 0,
    status       TEXT   NOT NULL CHECK (status IN ('pending', 'completed', 'failed', 'deleted')),
    created_at   BIGINT NOT NULL,
    deleted_at   BIGINT
);
CREATE INDEX backups_cleanup ON backups (status, created_at);

-- Mail is committed here before it is sent; a sender claims rows with a lease, like tasks.
CREATE TABLE email_outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key         TEXT    NOT NULL UNIQUE,
    to_address         TEXT    NOT NULL,
    template           TEXT    NOT NULL,
    subject            TEXT    NOT NULL,
    -- Rendered bodies may carry credentials, so they are sealed with ENCRYPTION_KEY.
    body_encrypted     TEXT    NOT NULL,
    status             TEXT    NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT  NOT NULL,
    lease_expires_at   BIGINT,
    last_error         TEXT,
    created_at         BIGINT  NOT NULL,
    sent_at            BIGINT
);
CREATE INDEX email_outbox_runnable ON email_outbox (next_attempt_at) WHERE status = 'queued';

CREATE TABLE activity_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    actor        TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    entity_type  TEXT   NOT NULL,
    entity_id    BIGINT,
    details      TEXT  NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL
);
CREATE INDEX activity_log_entity ON activity_log (entity_type, entity_id);

-- One row per scheduled run: the unique slot makes a job run once per slot across replicas.
CREATE TABLE cron_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name       TEXT   NOT NULL,
    scheduled_for  BIGINT NOT NULL,
    started_at     BIGINT NOT NULL,
    finished_at    BIGINT,
    status         TEXT   NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    output         TEXT  NOT NULL DEFAULT '{}',
    runner         TEXT   NOT NULL,
    UNIQUE (job_name, scheduled_for)
);

-- Named leases (cron leadership and the like), held until expires_at.
CREATE TABLE leases (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL
);
