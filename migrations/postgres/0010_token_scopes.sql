-- Admin tokens carry scopes (read, write, billing, fleet; a comma-separated set) and may expire.
-- Tokens made before scopes existed keep every scope.
ALTER TABLE admin_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,write,billing,fleet';
ALTER TABLE admin_tokens ADD COLUMN expires_at BIGINT;

-- The audit log is read by actor and by time, newest first.
CREATE INDEX activity_log_actor ON activity_log (actor, id);
CREATE INDEX activity_log_created ON activity_log (created_at);
