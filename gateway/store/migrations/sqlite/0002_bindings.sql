-- 一码一账号: windows, clerk accounts, and the history of which device is bound to which
-- (window, clerk). A binding is active while valid_to_ms IS NULL; the partial unique indexes
-- make "at most one active binding per device / per clerk / per window" a database rule,
-- so no code path (CLI, API, a hand-written INSERT) can break it.

CREATE TABLE windows (
    window_id   TEXT PRIMARY KEY                   -- the window number, shown on the device
                CHECK (length(CAST(window_id AS BLOB)) BETWEEN 1 AND 16),  -- ("win", <= 16 bytes)
    dept_code   TEXT NOT NULL DEFAULT '',          -- 18-character unified social credit code
    name        TEXT NOT NULL DEFAULT '',
    created_ms  INTEGER NOT NULL
);

CREATE TABLE staff (
    account       TEXT PRIMARY KEY                 -- the clerk's platform account
                  CHECK (length(account) BETWEEN 1 AND 64),
    display_name  TEXT NOT NULL CHECK (length(display_name) >= 1),
    created_ms    INTEGER NOT NULL
);

CREATE TABLE bindings (
    id             INTEGER PRIMARY KEY,
    device_id      TEXT NOT NULL REFERENCES devices(device_id),
    window_id      TEXT NOT NULL REFERENCES windows(window_id),
    staff_account  TEXT NOT NULL REFERENCES staff(account),
    valid_from_ms  INTEGER NOT NULL,
    valid_to_ms    INTEGER,                        -- NULL while active
    created_by     TEXT NOT NULL,
    ended_by       TEXT,
    CHECK (valid_to_ms IS NULL OR valid_to_ms >= valid_from_ms)
);

CREATE UNIQUE INDEX bindings_one_active_per_device ON bindings(device_id) WHERE valid_to_ms IS NULL;
CREATE UNIQUE INDEX bindings_one_active_per_staff  ON bindings(staff_account) WHERE valid_to_ms IS NULL;
CREATE UNIQUE INDEX bindings_one_active_per_window ON bindings(window_id) WHERE valid_to_ms IS NULL;
CREATE INDEX bindings_by_device_time ON bindings(device_id, valid_from_ms);

-- History is append-only: a binding may only be closed (once), never rewritten or deleted,
-- because past ratings are credited through it.
CREATE TRIGGER bindings_history_is_immutable
BEFORE UPDATE OF id, device_id, window_id, staff_account, valid_from_ms, created_by ON bindings
BEGIN
    SELECT RAISE(ABORT, 'binding history is immutable');
END;

CREATE TRIGGER bindings_close_once
BEFORE UPDATE OF valid_to_ms ON bindings
WHEN OLD.valid_to_ms IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'binding is already closed');
END;

CREATE TRIGGER bindings_no_delete
BEFORE DELETE ON bindings
BEGIN
    SELECT RAISE(ABORT, 'binding history is immutable');
END;

-- A new binding may not start inside a closed one of the same device or clerk: attribution
-- looks a press up by time, so a device's (and a clerk's) periods must never overlap.
CREATE TRIGGER bindings_no_overlap
BEFORE INSERT ON bindings
WHEN EXISTS (SELECT 1 FROM bindings
             WHERE (device_id = NEW.device_id OR staff_account = NEW.staff_account)
               AND valid_to_ms > NEW.valid_from_ms)
BEGIN
    SELECT RAISE(ABORT, 'binding overlaps an earlier binding of this device or clerk');
END;
