-- Live services (pending, active or suspended) per server, kept by triggers in the same
-- statement that changes a service, so placement reads a number instead of counting a
-- server's services on every order.
--
-- Placing a service (its server_id set, or changed) re-checks the server's capacity after the
-- count went up, and fails ('server is full') past max_accounts, changing nothing (SQLite has
-- one writer, so placements cannot interleave). Other changes (an unsuspension, a restore) are
-- counted but not refused, as before.
ALTER TABLE servers ADD COLUMN live_services INTEGER NOT NULL DEFAULT 0;

UPDATE servers SET live_services = (
    SELECT COUNT(*) FROM services v
    WHERE v.server_id = servers.id AND v.status IN ('pending', 'active', 'suspended'));

CREATE TRIGGER services_count_live_insert AFTER INSERT ON services
    WHEN NEW.server_id IS NOT NULL AND NEW.status IN ('pending', 'active', 'suspended')
BEGIN
    UPDATE servers SET live_services = live_services + 1 WHERE id = NEW.server_id;
END;

CREATE TRIGGER services_count_live_update AFTER UPDATE OF server_id, status ON services
    WHEN OLD.server_id IS NOT NEW.server_id
      OR (OLD.status IN ('pending', 'active', 'suspended'))
         <> (NEW.status IN ('pending', 'active', 'suspended'))
BEGIN
    UPDATE servers SET live_services = live_services - 1
    WHERE id = OLD.server_id AND OLD.status IN ('pending', 'active', 'suspended');
    UPDATE servers SET live_services = live_services + 1
    WHERE id = NEW.server_id AND NEW.status IN ('pending', 'active', 'suspended');
    SELECT RAISE(ABORT, 'server is full')
    WHERE OLD.server_id IS NOT NEW.server_id
      AND NEW.status IN ('pending', 'active', 'suspended')
      AND (SELECT live_services > max_accounts FROM servers WHERE id = NEW.server_id);
END;

CREATE TRIGGER services_count_live_delete AFTER DELETE ON services
    WHEN OLD.server_id IS NOT NULL AND OLD.status IN ('pending', 'active', 'suspended')
BEGIN
    UPDATE servers SET live_services = live_services - 1 WHERE id = OLD.server_id;
END;
