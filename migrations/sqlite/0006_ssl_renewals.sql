-- Certificate renewal by the `ssl-renewals` job and the expiry reminder of
-- `ssl-renewal-reminders`.

-- Whether the controller renews this certificate itself. With FALSE the customer is reminded
-- before it expires instead.
ALTER TABLE ssl_certificates ADD COLUMN auto_renew INTEGER NOT NULL DEFAULT 1;
-- Failed renewals in a row since the last issue; zero when the latest renewal (or the first
-- issue) succeeded. last_error says why the latest one failed.
ALTER TABLE ssl_certificates ADD COLUMN renewal_attempts INTEGER NOT NULL DEFAULT 0;
-- After a failed renewal, not retried before this time (backoff); NULL otherwise.
ALTER TABLE ssl_certificates ADD COLUMN next_renewal_at BIGINT;
-- The not_after of the certificate the customer was reminded about, and when: one reminder per
-- certificate, however often the reminder job runs. A renewed certificate has a new not_after.
ALTER TABLE ssl_certificates ADD COLUMN reminder_sent_for BIGINT;
ALTER TABLE ssl_certificates ADD COLUMN reminder_sent_at BIGINT;

CREATE INDEX ssl_certificates_expiry ON ssl_certificates (not_after);
