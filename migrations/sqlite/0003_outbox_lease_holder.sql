-- The outbox is worked by the same job runner as the provisioning queue: a claimed message
-- names its holder, so every later write is fenced by holder like a task's, and a restarted
-- controller can recognise the messages its previous process left in flight.
ALTER TABLE email_outbox ADD COLUMN lease_holder TEXT;
-- Expired leases are runnable: the runner's next-due query reads them through this index.
CREATE INDEX email_outbox_leases ON email_outbox (lease_expires_at) WHERE status = 'sending';
