-- 一次一评: one invitation per case handled at a window, and its outcome.
-- status: pending -> rated | unrated | cancelled | expired | superseded (a newer invitation at
-- the same device replaced it). A rated invitation names the one record that rated it; any
-- later press for it is stored as a flagged extra, never as a second rating.

CREATE TABLE invitations (
    id              TEXT PRIMARY KEY               -- [A-Za-z0-9_-]{1,32}, the protocol's "i"
                    CHECK (length(id) BETWEEN 1 AND 32),
    device_id       TEXT NOT NULL REFERENCES devices(device_id),
    window_id       TEXT NOT NULL REFERENCES windows(window_id),
    staff_account   TEXT NOT NULL,
    binding_id      INTEGER NOT NULL REFERENCES bindings(id),
    case_no         TEXT NOT NULL,                 -- 办件 number (projectNo)
    task_code       TEXT NOT NULL DEFAULT '',
    task_name       TEXT NOT NULL DEFAULT '',
    dept_code       TEXT NOT NULL DEFAULT '',
    applicant_type  INTEGER CHECK (applicant_type IS NULL OR applicant_type IN (1, 2)),
    countdown_s     INTEGER NOT NULL CHECK (countdown_s BETWEEN 5 AND 600),
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'rated', 'unrated', 'cancelled', 'expired', 'superseded')),
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,              -- created + countdown + grace
    closed_ms       INTEGER,
    close_reason    TEXT,
    record_id       TEXT,                          -- "<device>:<boot>:<seq>" that rated / unrated it
    grade           TEXT CHECK (grade IS NULL OR grade IN ('vs', 's', 'bs', 'd', 'vd')),
    created_by      TEXT NOT NULL
);

-- The device shows one invitation at a time.
CREATE UNIQUE INDEX invitations_one_pending_per_device ON invitations(device_id) WHERE status = 'pending';
-- 一次一评: a case is rated at most once.
CREATE UNIQUE INDEX invitations_one_rating_per_case ON invitations(case_no) WHERE status = 'rated';
CREATE INDEX invitations_by_status_expiry ON invitations(status, expires_ms);
CREATE INDEX invitations_by_created ON invitations(created_ms);
