-- Core schema (PostgreSQL form of sqlite/0001_core.sql; same version, same meaning).
-- All times are UTC epoch milliseconds (BIGINT) unless the name says otherwise.

CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    secret_hex    TEXT NOT NULL,
    fw            TEXT,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT,
    online        INTEGER NOT NULL DEFAULT 0,
    status_b      BIGINT,
    status_c      BIGINT,
    boot          BIGINT,
    last_hb_json  TEXT,
    last_hello_json TEXT,
    journal_depth BIGINT,
    reconnects    BIGINT NOT NULL DEFAULT 0,
    last_rst      TEXT,
    cmd_boot      BIGINT,
    cmd_n_reserved BIGINT NOT NULL DEFAULT 0,
    enabled       INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE device_boots (
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    boot          BIGINT NOT NULL,
    anchor_ms     BIGINT,
    first_seen    BIGINT NOT NULL,
    PRIMARY KEY (device_id, boot)
);

CREATE TABLE records (
    record_id     TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    rb            BIGINT NOT NULL,
    rs            BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    grade         TEXT,
    invitation_id TEXT,
    device_wall_s BIGINT NOT NULL,
    uptime_ms     BIGINT NOT NULL,
    pressed_at_ms BIGINT NOT NULL,
    time_source   TEXT NOT NULL CHECK (time_source IN ('device', 'reconstructed', 'arrival')),
    received_at_ms BIGINT NOT NULL,
    msg_boot      BIGINT NOT NULL,
    binding_id    BIGINT,
    window_id     TEXT,
    staff_account TEXT,
    flags         TEXT NOT NULL DEFAULT '',
    UNIQUE (device_id, rb, rs)
);
CREATE INDEX records_pressed ON records(pressed_at_ms);
CREATE INDEX records_invitation ON records(invitation_id) WHERE invitation_id IS NOT NULL;

CREATE TABLE rejections (
    reason        TEXT PRIMARY KEY,
    count         BIGINT NOT NULL DEFAULT 0,
    last_at       BIGINT
);

CREATE TABLE audit_log (
    id            BIGSERIAL PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    detail_json   TEXT NOT NULL DEFAULT '{}'
);
