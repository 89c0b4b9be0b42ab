-- Admin tokens carry scopes (read, write, billing, fleet; a comma-separated set) and may expire.
-- Tokens made before scopes existed keep every scope.
ALTER TABLE admin_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,write,billing,fleet';
ALTER TABLE admin_tokens ADD COLUMN expires_at BIGINT;

-- The audit log is read by actor and by time, newest first.
CREATE INDEX activity_log_actor ON activity_log (actor, id);
CREATE INDEX activity_log_created ON activity_log (created_at);

-- The id of the HTTP request that queued a task or made a change, so a request can be followed
-- into the work it caused (and into the logs, whose lines carry it).
ALTER TABLE provisioning_tasks ADD COLUMN request_id TEXT;
ALTER TABLE activity_log ADD COLUMN request_id TEXT;
