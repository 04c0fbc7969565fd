-- The district's organisation (issue 17): halls, departments, where each window and device is,
-- and retirement. One deployment serves many halls; the config's [hall] is the default hall:
-- a NULL hall_id anywhere below means that hall, so a one-hall config keeps working as is.
-- Nothing is ever deleted: a retired hall, department, window or clerk keeps its rows (past
-- records and bulletins name it), it only takes no new bindings, windows or invitations.

CREATE TABLE halls (
    hall_id       TEXT PRIMARY KEY CHECK (length(hall_id) BETWEEN 1 AND 32),
    name          TEXT NOT NULL CHECK (length(name) >= 1),
    kind          TEXT NOT NULL CHECK (kind IN ('centre', 'town', 'village')),
    parent_id     TEXT REFERENCES halls(hall_id),     -- a village point's town centre
    area_code     TEXT NOT NULL DEFAULT '',           -- administrative division (6..12 digits)
    timezone      TEXT NOT NULL,                      -- IANA zone of its opening hours and periods
    opening_hours TEXT NOT NULL,                      -- "08:30-12:00,13:30-17:30"
    opening_days  TEXT NOT NULL,                      -- ISO weekdays "1,2,3,4,5"
    created_ms    INTEGER NOT NULL,
    retired_ms    INTEGER
);

CREATE TABLE departments (
    dept_code     TEXT PRIMARY KEY CHECK (length(dept_code) = 18),  -- GB 32100 code, checked by gateway/uscc.py
    name          TEXT NOT NULL CHECK (length(name) >= 1),
    hall_id       TEXT REFERENCES halls(hall_id),     -- where it sits; NULL: the default hall
    created_ms    INTEGER NOT NULL,
    retired_ms    INTEGER
);

ALTER TABLE windows ADD COLUMN hall_id TEXT;          -- current hall (history: window_places)
ALTER TABLE windows ADD COLUMN retired_ms INTEGER;
ALTER TABLE staff ADD COLUMN dept_code TEXT NOT NULL DEFAULT '';   -- the clerk's own department
ALTER TABLE staff ADD COLUMN retired_ms INTEGER;
ALTER TABLE devices ADD COLUMN hall_id TEXT;          -- where the device is (NULL: the default hall)

-- Where each window was (hall, department) over time: a press is credited to the place of its
-- window at press time, even when the record arrives after a move. Append-only like bindings.
CREATE TABLE window_places (
    id            INTEGER PRIMARY KEY,
    window_id     TEXT NOT NULL REFERENCES windows(window_id),
    hall_id       TEXT,
    dept_code     TEXT NOT NULL DEFAULT '',
    valid_from_ms INTEGER NOT NULL,
    valid_to_ms   INTEGER,
    CHECK (valid_to_ms IS NULL OR valid_to_ms >= valid_from_ms)
);
CREATE UNIQUE INDEX window_places_one_open ON window_places(window_id) WHERE valid_to_ms IS NULL;
CREATE INDEX window_places_by_window ON window_places(window_id, valid_from_ms);
-- Windows made before this migration have been where they are since always.
INSERT INTO window_places (window_id, hall_id, dept_code, valid_from_ms)
SELECT window_id, NULL, dept_code, 0 FROM windows;

CREATE TRIGGER window_places_immutable
BEFORE UPDATE OF id, window_id, hall_id, dept_code, valid_from_ms ON window_places
BEGIN
    SELECT RAISE(ABORT, 'window place history is immutable');
END;
CREATE TRIGGER window_places_close_once
BEFORE UPDATE OF valid_to_ms ON window_places
WHEN OLD.valid_to_ms IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'window place is already closed');
END;
CREATE TRIGGER window_places_no_delete
BEFORE DELETE ON window_places
BEGIN
    SELECT RAISE(ABORT, 'window place history is immutable');
END;

-- Records and invitations carry their organisation as at press / invitation time (set by
-- attribution and by the invitation service): bulletins group on these columns directly.
ALTER TABLE records ADD COLUMN hall_id TEXT;          -- NULL: the default hall
ALTER TABLE records ADD COLUMN dept_code TEXT;
ALTER TABLE invitations ADD COLUMN hall_id TEXT;
UPDATE records SET dept_code = (SELECT w.dept_code FROM windows w WHERE w.window_id = records.window_id)
WHERE window_id IS NOT NULL;
