-- What each change did: the fields it changed as they were (`before_state`) and as they are
-- (`after_state`). A creation has no before, a deletion no after; rows written before this
-- migration have neither. Never a secret: a password or token shows only that it changed.
ALTER TABLE activity_log ADD COLUMN before_state JSONB;
ALTER TABLE activity_log ADD COLUMN after_state JSONB;
