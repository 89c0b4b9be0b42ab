-- Mailbox and database passwords are generated once per service and kept, sealed with
-- ENCRYPTION_KEY, so a retried step hands the panel the same credentials.
ALTER TABLE services ADD COLUMN mailbox_password_encrypted TEXT;
ALTER TABLE services ADD COLUMN database_password_encrypted TEXT;
