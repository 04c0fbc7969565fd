-- 差评 work orders (issue 16): one complaint per bad rating, its history, the notices sent
-- about it, ratings excluded from statistics (never deleted), and corrections for the platform.

CREATE TABLE complaints (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id       TEXT NOT NULL UNIQUE,      -- the rating (its upload id): one complaint per rating
    channel         TEXT NOT NULL,             -- device | qr
    grade           TEXT NOT NULL CHECK (grade IN ('d', 'vd')),
    assess_number   INTEGER NOT NULL DEFAULT 1 CHECK (assess_number IN (1, 2)),
    invitation_id   TEXT,
    case_no         TEXT NOT NULL DEFAULT '',
    task_code       TEXT NOT NULL DEFAULT '',
    task_name       TEXT NOT NULL DEFAULT '',
    rated_ms        INTEGER NOT NULL,          -- the press (rating) time
    opened_ms       INTEGER NOT NULL,
    -- The organisation at press time, as a snapshot (it may change later).
    hall_id         TEXT NOT NULL DEFAULT '',
    hall_name       TEXT NOT NULL DEFAULT '',
    hall_tz         TEXT NOT NULL,
    dept_code       TEXT NOT NULL DEFAULT '',
    dept_name       TEXT NOT NULL DEFAULT '',
    window_id       TEXT NOT NULL DEFAULT '',
    window_name     TEXT NOT NULL DEFAULT '',
    staff_account   TEXT NOT NULL DEFAULT '',
    staff_name      TEXT NOT NULL DEFAULT '',
    -- The work order.
    state           TEXT NOT NULL DEFAULT 'opened'
                    CHECK (state IN ('opened', 'contacted', 'rectifying', 'rectified', 'callback_done', 'closed')),
    verdict         TEXT NOT NULL DEFAULT 'pending' CHECK (verdict IN ('pending', 'valid', 'invalid')),
    invalid_reason  TEXT,
    complex         INTEGER NOT NULL DEFAULT 0,
    tag_version     TEXT,
    tags            TEXT NOT NULL DEFAULT '',  -- evalDetail codes, comma-separated
    comment         TEXT NOT NULL DEFAULT '',  -- writingEvaluation
    reasons_source  TEXT,                      -- liaison | callback | qr
    callback_grade  TEXT CHECK (callback_grade IS NULL OR callback_grade IN ('vs', 's', 'bs', 'd', 'vd')),
    appeal_state    TEXT NOT NULL DEFAULT 'none'
                    CHECK (appeal_state IN ('none', 'appealed', 'under_review', 'upheld', 'overturned')),
    overturn_reason TEXT,
    notified_ms     INTEGER NOT NULL,          -- the clerk was told (the appeal period counts from here)
    contacted_ms    INTEGER,
    verified_ms     INTEGER,
    rectified_ms    INTEGER,
    callback_ms     INTEGER,
    closed_ms       INTEGER,
    appealed_ms     INTEGER,
    review_started_ms INTEGER,
    decided_ms      INTEGER,
    contact_due_ms  INTEGER,                   -- deadlines: 24:00 (hall zone) of the N-th working day
    rectify_due_ms  INTEGER,
    appeal_due_ms   INTEGER,
    review_due_ms   INTEGER,
    calendar_error  TEXT,                      -- why a deadline could not be computed (unknown year)
    version         INTEGER NOT NULL DEFAULT 1,
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX complaints_open ON complaints(state) WHERE state != 'closed';
CREATE INDEX complaints_case ON complaints(case_no);
CREATE INDEX complaints_opened ON complaints(opened_ms);

CREATE TABLE complaint_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    complaint_id    INTEGER NOT NULL REFERENCES complaints(id),
    at_ms           INTEGER NOT NULL,
    actor           TEXT NOT NULL,             -- gateway, cli:<user>, api:<token> (<person>), console:<account>
    action          TEXT NOT NULL,             -- open, contact, verify, rectify, callback, close, appeal, ...
    from_state      TEXT,
    to_state        TEXT,
    note            TEXT NOT NULL DEFAULT '',
    detail_json     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX complaint_events_by_complaint ON complaint_events(complaint_id, id);

-- Notices sent to people about a complaint ("opened", "due_soon:contact", "overdue:rectify", ...):
-- each at most once.
CREATE TABLE complaint_notices (
    complaint_id    INTEGER NOT NULL REFERENCES complaints(id),
    what            TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    PRIMARY KEY (complaint_id, what)
);

-- A rating found mistaken or malicious: excluded from statistics, never deleted.
CREATE TABLE rating_exclusions (
    record_id       TEXT PRIMARY KEY,
    complaint_id    INTEGER REFERENCES complaints(id),
    reason          TEXT NOT NULL CHECK (reason IN ('mistaken_press', 'malicious')),
    note            TEXT NOT NULL DEFAULT '',
    actor           TEXT NOT NULL,
    at_ms           INTEGER NOT NULL
);

-- What the platform must be told after a rating went up: an exclusion or its 差评 reasons.
-- pending -> sent -> acked | rejected (an adapter that can), or manual -> manual_done (one
-- that cannot: someone does it in the platform's own back office and says so).
CREATE TABLE uplink_corrections (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id       TEXT NOT NULL,
    complaint_id    INTEGER REFERENCES complaints(id),
    action          TEXT NOT NULL CHECK (action IN ('exclude', 'reasons')),
    payload_json    TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'sent', 'acked', 'rejected', 'manual', 'manual_done')),
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    sent_ms         INTEGER,
    done_ms         INTEGER,
    done_by         TEXT,
    error           TEXT
);
CREATE INDEX uplink_corrections_open ON uplink_corrections(status)
    WHERE status IN ('pending', 'sent', 'manual');
