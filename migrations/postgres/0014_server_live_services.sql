-- Live services (pending, active or suspended) per server, kept by triggers in the same
-- statement that changes a service, so placement reads a number instead of counting a
-- server's services under its row lock on every order.
--
-- Placing a service (its server_id set, or changed) re-checks the server's capacity after the
-- count went up: the count's row lock orders concurrent placements, and the one that would go
-- past max_accounts fails with check_violation, changing nothing. Other changes (an unsuspension,
-- a restore) are counted but not refused, as before.
ALTER TABLE servers ADD COLUMN live_services BIGINT NOT NULL DEFAULT 0;

UPDATE servers s SET live_services = (
    SELECT COUNT(*) FROM services v
    WHERE v.server_id = s.id AND v.status IN ('pending', 'active', 'suspended'));

CREATE FUNCTION services_count_live() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    full_now BOOLEAN;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.server_id IS NOT NULL
       AND OLD.status IN ('pending', 'active', 'suspended') THEN
        UPDATE servers SET live_services = live_services - 1 WHERE id = OLD.server_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.server_id IS NOT NULL
       AND NEW.status IN ('pending', 'active', 'suspended') THEN
        UPDATE servers SET live_services = live_services + 1 WHERE id = NEW.server_id
        RETURNING live_services > max_accounts INTO full_now;
        IF full_now AND TG_OP = 'UPDATE' AND OLD.server_id IS DISTINCT FROM NEW.server_id THEN
            RAISE EXCEPTION 'server % is full', NEW.server_id USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER services_count_live_insert AFTER INSERT ON services
    FOR EACH ROW WHEN (NEW.server_id IS NOT NULL)
    EXECUTE FUNCTION services_count_live();

CREATE TRIGGER services_count_live_update AFTER UPDATE OF server_id, status ON services
    FOR EACH ROW WHEN (OLD.server_id IS DISTINCT FROM NEW.server_id
        OR (OLD.status IN ('pending', 'active', 'suspended'))
           IS DISTINCT FROM (NEW.status IN ('pending', 'active', 'suspended')))
    EXECUTE FUNCTION services_count_live();

CREATE TRIGGER services_count_live_delete AFTER DELETE ON services
    FOR EACH ROW WHEN (OLD.server_id IS NOT NULL)
    EXECUTE FUNCTION services_count_live();
