-- The district's organisation (PostgreSQL form of sqlite/0020_org.sql; same version, same meaning).

CREATE TABLE halls (
    hall_id       TEXT PRIMARY KEY CHECK (length(hall_id) BETWEEN 1 AND 32),
    name          TEXT NOT NULL CHECK (length(name) >= 1),
    kind          TEXT NOT NULL CHECK (kind IN ('centre', 'town', 'village')),
    parent_id     TEXT REFERENCES halls(hall_id),
    area_code     TEXT NOT NULL DEFAULT '',
    timezone      TEXT NOT NULL,
    opening_hours TEXT NOT NULL,
    opening_days  TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    retired_ms    BIGINT
);

CREATE TABLE departments (
    dept_code     TEXT PRIMARY KEY CHECK (length(dept_code) = 18),
    name          TEXT NOT NULL CHECK (length(name) >= 1),
    hall_id       TEXT REFERENCES halls(hall_id),
    created_ms    BIGINT NOT NULL,
    retired_ms    BIGINT
);

ALTER TABLE windows ADD COLUMN hall_id TEXT;
ALTER TABLE windows ADD COLUMN retired_ms BIGINT;
ALTER TABLE staff ADD COLUMN dept_code TEXT NOT NULL DEFAULT '';
ALTER TABLE staff ADD COLUMN retired_ms BIGINT;
ALTER TABLE devices ADD COLUMN hall_id TEXT;

CREATE TABLE window_places (
    id            BIGSERIAL PRIMARY KEY,
    window_id     TEXT NOT NULL REFERENCES windows(window_id),
    hall_id       TEXT,
    dept_code     TEXT NOT NULL DEFAULT '',
    valid_from_ms BIGINT NOT NULL,
    valid_to_ms   BIGINT,
    CHECK (valid_to_ms IS NULL OR valid_to_ms >= valid_from_ms)
);
CREATE UNIQUE INDEX window_places_one_open ON window_places(window_id) WHERE valid_to_ms IS NULL;
CREATE INDEX window_places_by_window ON window_places(window_id, valid_from_ms);
INSERT INTO window_places (window_id, hall_id, dept_code, valid_from_ms)
SELECT window_id, NULL, dept_code, 0 FROM windows;

CREATE FUNCTION window_places_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'window place history is immutable' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.window_id <> OLD.window_id OR NEW.hall_id IS DISTINCT FROM OLD.hall_id
       OR NEW.dept_code <> OLD.dept_code OR NEW.valid_from_ms <> OLD.valid_from_ms THEN
        RAISE EXCEPTION 'window place history is immutable' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.valid_to_ms IS NOT NULL AND NEW.valid_to_ms IS DISTINCT FROM OLD.valid_to_ms THEN
        RAISE EXCEPTION 'window place is already closed' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER window_places_guard BEFORE UPDATE OR DELETE ON window_places
FOR EACH ROW EXECUTE FUNCTION window_places_guard();

ALTER TABLE records ADD COLUMN hall_id TEXT;
ALTER TABLE records ADD COLUMN dept_code TEXT;
ALTER TABLE invitations ADD COLUMN hall_id TEXT;
UPDATE records SET dept_code = (SELECT w.dept_code FROM windows w WHERE w.window_id = records.window_id)
WHERE window_id IS NOT NULL;
