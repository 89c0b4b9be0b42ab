-- People who sign in to the web dashboard. The email is unique whatever its case; the password
-- is kept only as an argon2id PHC string. A disabled admin cannot sign in and loses every session.
CREATE TABLE admin_users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);
CREATE UNIQUE INDEX admin_users_email ON admin_users (lower(email));

-- Signed-in browsers. Only the SHA-256 of the session cookie is stored. The user agent and
-- address are shown to admins listing the sessions, so they can tell one from another.
CREATE TABLE admin_sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       BIGINT NOT NULL REFERENCES admin_users (id),
    token_hash    TEXT   NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    user_agent    TEXT,
    ip_address    TEXT
);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id);

-- Failed sign-ins, one row per key (`email:<lower-case email>` and `ip:<address>`), counted over
-- the rate limit's window; kept in the database so the limit holds across replicas.
CREATE TABLE admin_login_failures (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    limit_key     TEXT   NOT NULL,
    failed_at     BIGINT NOT NULL
);
CREATE INDEX admin_login_failures_key ON admin_login_failures (limit_key, failed_at);
