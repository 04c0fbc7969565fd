-- Uplink delivery state (PostgreSQL form of sqlite/0100_uplink.sql).

CREATE TABLE uplink_items (
    record_id      TEXT PRIMARY KEY REFERENCES records(record_id),
    status         TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'acked', 'rejected')),
    batch_id       TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    first_sent_ms  BIGINT,
    last_sent_ms   BIGINT,
    acked_ms       BIGINT,
    ack_status     TEXT,
    default_flag   INTEGER NOT NULL DEFAULT 0,
    reject_origin  TEXT,
    reject_code    TEXT,
    reject_reason  TEXT,
    rejected_ms    BIGINT,
    requeued       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX uplink_items_by_status ON uplink_items(status);

CREATE TABLE uplink_batches (
    batch_id       TEXT PRIMARY KEY,
    created_ms     BIGINT NOT NULL,
    record_count   INTEGER NOT NULL,
    checksum       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'answered', 'failed', 'refused')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    accepted       INTEGER NOT NULL DEFAULT 0,
    duplicates     INTEGER NOT NULL DEFAULT 0,
    rejected       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    finished_ms    BIGINT
);

CREATE TABLE uplink_runs (
    id             BIGSERIAL PRIMARY KEY,
    trigger        TEXT NOT NULL,
    for_date       TEXT,
    started_ms     BIGINT NOT NULL,
    finished_ms    BIGINT,
    outcome        TEXT,
    batches        INTEGER NOT NULL DEFAULT 0,
    acked          INTEGER NOT NULL DEFAULT 0,
    rejected       INTEGER NOT NULL DEFAULT 0,
    error          TEXT
);
