-- 一次一评 (PostgreSQL form of sqlite/0003_invitations.sql).

CREATE TABLE invitations (
    id              TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 32),
    device_id       TEXT NOT NULL REFERENCES devices(device_id),
    window_id       TEXT NOT NULL REFERENCES windows(window_id),
    staff_account   TEXT NOT NULL,
    binding_id      BIGINT NOT NULL REFERENCES bindings(id),
    case_no         TEXT NOT NULL,
    task_code       TEXT NOT NULL DEFAULT '',
    task_name       TEXT NOT NULL DEFAULT '',
    dept_code       TEXT NOT NULL DEFAULT '',
    applicant_type  INTEGER CHECK (applicant_type IS NULL OR applicant_type IN (1, 2)),
    countdown_s     INTEGER NOT NULL CHECK (countdown_s BETWEEN 5 AND 600),
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'rated', 'unrated', 'cancelled', 'expired', 'superseded')),
    created_ms      BIGINT NOT NULL,
    expires_ms      BIGINT NOT NULL,
    closed_ms       BIGINT,
    close_reason    TEXT,
    record_id       TEXT,
    grade           TEXT CHECK (grade IS NULL OR grade IN ('vs', 's', 'bs', 'd', 'vd')),
    created_by      TEXT NOT NULL
);

CREATE UNIQUE INDEX invitations_one_pending_per_device ON invitations(device_id) WHERE status = 'pending';
CREATE UNIQUE INDEX invitations_one_rating_per_case ON invitations(case_no) WHERE status = 'rated';
CREATE INDEX invitations_by_status_expiry ON invitations(status, expires_ms);
CREATE INDEX invitations_by_created ON invitations(created_ms);
