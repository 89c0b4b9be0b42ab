-- Customers who sign in to the client portal. An account belongs to one customer (the row the
-- API and billing already know); the password is kept only as an argon2id PHC string.
CREATE TABLE customer_accounts (
    customer_id        BIGINT NOT NULL PRIMARY KEY REFERENCES customers (id),
    password_hash      TEXT   NOT NULL,
    email_verified_at  BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

-- Signed-in browsers of customers. Only the SHA-256 of the session cookie is stored.
CREATE TABLE customer_sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id   BIGINT NOT NULL REFERENCES customers (id),
    token_hash    TEXT   NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    user_agent    TEXT,
    ip_address    TEXT
);
CREATE INDEX customer_sessions_customer ON customer_sessions (customer_id);

-- One-time links sent by email: verifying the address, resetting the password. Only the
-- SHA-256 of the token is stored; a token works once, before it expires.
CREATE TABLE customer_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id   BIGINT NOT NULL REFERENCES customers (id),
    purpose       TEXT   NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    token_hash    TEXT   NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
CREATE INDEX customer_tokens_customer ON customer_tokens (customer_id, purpose);

-- Failed portal sign-ins, one row per key (`email:<lower-case email>` and `ip:<address>`),
-- counted over the rate limit's window.
CREATE TABLE customer_login_failures (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    limit_key     TEXT   NOT NULL,
    failed_at     BIGINT NOT NULL
);
CREATE INDEX customer_login_failures_key ON customer_login_failures (limit_key, failed_at);

-- A cancellation the customer asked for: the service ends when its paid period does (this is
-- the start of the period that is then not billed). Renewals skip it; `recurring-billing`
-- terminates it once the date has come.
ALTER TABLE services ADD COLUMN cancel_at BIGINT;
