-- Uplink to the provincial platform: per-record delivery state and the batches sent.
-- A record is 'acked' only when the platform answered for it (accepted or duplicate).
-- status: pending (queued, or re-queued by an admin) -> sent (in a batch whose answer we
-- do not have yet; re-sent on the next run, the platform dedupes by record id)
-- -> acked | rejected (kept with the reason; only an admin re-queues it).
-- Records without a row are simply not yet considered (or not uploadable by policy).

CREATE TABLE uplink_items (
    record_id      TEXT PRIMARY KEY REFERENCES records(record_id),
    status         TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'acked', 'rejected')),
    batch_id       TEXT,                    -- last batch that carried it
    attempts       INTEGER NOT NULL DEFAULT 0,  -- batches it was put in
    first_sent_ms  INTEGER,
    last_sent_ms   INTEGER,
    acked_ms       INTEGER,
    ack_status     TEXT,                    -- accepted | duplicate
    default_flag   INTEGER NOT NULL DEFAULT 0,  -- sent as a flagged system default rating
    reject_origin  TEXT,                    -- platform | gateway (could not be mapped)
    reject_code    TEXT,
    reject_reason  TEXT,
    rejected_ms    INTEGER,
    requeued       INTEGER NOT NULL DEFAULT 0   -- times an admin re-queued it
);
CREATE INDEX uplink_items_by_status ON uplink_items(status);

CREATE TABLE uplink_batches (
    batch_id       TEXT PRIMARY KEY,
    created_ms     INTEGER NOT NULL,
    record_count   INTEGER NOT NULL,
    checksum       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'answered', 'failed', 'refused')),
    attempts       INTEGER NOT NULL DEFAULT 0,  -- HTTP requests made for it
    accepted       INTEGER NOT NULL DEFAULT 0,
    duplicates     INTEGER NOT NULL DEFAULT 0,
    rejected       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    finished_ms    INTEGER
);

-- One row per push run (scheduled, near-real-time, manual): the scheduler resumes from it.
CREATE TABLE uplink_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger        TEXT NOT NULL,           -- daily | realtime | retry | manual
    for_date       TEXT,                    -- local date filter, NULL = everything pending
    started_ms     INTEGER NOT NULL,
    finished_ms    INTEGER,
    outcome        TEXT,                    -- done | unavailable | refused | stopped
    batches        INTEGER NOT NULL DEFAULT 0,
    acked          INTEGER NOT NULL DEFAULT 0,
    rejected       INTEGER NOT NULL DEFAULT 0,
    error          TEXT
);
