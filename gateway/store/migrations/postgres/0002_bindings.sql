-- 一码一账号 (PostgreSQL form of sqlite/0002_bindings.sql): the same partial unique indexes,
-- and the same rules as the SQLite triggers, as PL/pgSQL trigger functions. Their errors use
-- SQLSTATE 23000 (integrity_constraint_violation), as a constraint's would.

CREATE TABLE windows (
    window_id   TEXT PRIMARY KEY CHECK (octet_length(window_id) BETWEEN 1 AND 16),
    dept_code   TEXT NOT NULL DEFAULT '',
    name        TEXT NOT NULL DEFAULT '',
    created_ms  BIGINT NOT NULL
);

CREATE TABLE staff (
    account       TEXT PRIMARY KEY CHECK (length(account) BETWEEN 1 AND 64),
    display_name  TEXT NOT NULL CHECK (length(display_name) >= 1),
    created_ms    BIGINT NOT NULL
);

CREATE TABLE bindings (
    id             BIGSERIAL PRIMARY KEY,
    device_id      TEXT NOT NULL REFERENCES devices(device_id),
    window_id      TEXT NOT NULL REFERENCES windows(window_id),
    staff_account  TEXT NOT NULL REFERENCES staff(account),
    valid_from_ms  BIGINT NOT NULL,
    valid_to_ms    BIGINT,
    created_by     TEXT NOT NULL,
    ended_by       TEXT,
    CHECK (valid_to_ms IS NULL OR valid_to_ms >= valid_from_ms)
);

CREATE UNIQUE INDEX bindings_one_active_per_device ON bindings(device_id) WHERE valid_to_ms IS NULL;
CREATE UNIQUE INDEX bindings_one_active_per_staff  ON bindings(staff_account) WHERE valid_to_ms IS NULL;
CREATE UNIQUE INDEX bindings_one_active_per_window ON bindings(window_id) WHERE valid_to_ms IS NULL;
CREATE INDEX bindings_by_device_time ON bindings(device_id, valid_from_ms);

-- History is append-only: a binding may only be closed (once), never rewritten or deleted.
CREATE FUNCTION bindings_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.device_id IS DISTINCT FROM OLD.device_id
       OR NEW.window_id IS DISTINCT FROM OLD.window_id OR NEW.staff_account IS DISTINCT FROM OLD.staff_account
       OR NEW.valid_from_ms IS DISTINCT FROM OLD.valid_from_ms OR NEW.created_by IS DISTINCT FROM OLD.created_by
    THEN
        RAISE EXCEPTION 'binding history is immutable' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.valid_to_ms IS NOT NULL AND NEW.valid_to_ms IS DISTINCT FROM OLD.valid_to_ms THEN
        RAISE EXCEPTION 'binding is already closed' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bindings_history_is_immutable BEFORE UPDATE ON bindings
    FOR EACH ROW EXECUTE FUNCTION bindings_guard_update();

CREATE FUNCTION bindings_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'binding history is immutable' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER bindings_no_delete BEFORE DELETE ON bindings
    FOR EACH ROW EXECUTE FUNCTION bindings_guard_delete();

-- A new binding may not start inside a closed one of the same device or clerk.
CREATE FUNCTION bindings_guard_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM bindings
               WHERE (device_id = NEW.device_id OR staff_account = NEW.staff_account)
                 AND valid_to_ms > NEW.valid_from_ms) THEN
        RAISE EXCEPTION 'binding overlaps an earlier binding of this device or clerk'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bindings_no_overlap BEFORE INSERT ON bindings
    FOR EACH ROW EXECUTE FUNCTION bindings_guard_overlap();
