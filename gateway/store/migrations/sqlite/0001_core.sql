-- Core schema: devices, their boots (time anchors), records, rejections, audit log.
-- All times are UTC epoch milliseconds (INTEGER) unless the name says otherwise.

CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    secret_hex    TEXT NOT NULL,            -- HMAC key (64 hex); never logged
    fw            TEXT,
    created_at    INTEGER NOT NULL,         -- epoch ms
    last_seen     INTEGER,                  -- epoch ms of the last accepted message
    online        INTEGER NOT NULL DEFAULT 0,
    status_b      INTEGER,                  -- (b, c) of the status message that set `online`:
    status_c      INTEGER,                  -- an older will never overrides a newer online
    boot          INTEGER,                  -- current boot (highest b seen)
    last_hb_json  TEXT,                     -- the last heartbeat, as received (mac removed)
    last_hello_json TEXT,
    journal_depth INTEGER,
    reconnects    INTEGER NOT NULL DEFAULT 0,  -- online transitions seen
    last_rst      TEXT,
    cmd_boot      INTEGER,                  -- boot for which cmd_n_reserved holds
    cmd_n_reserved INTEGER NOT NULL DEFAULT 0, -- commands to this boot use n below this lease
    enabled       INTEGER NOT NULL DEFAULT 1
);

-- One row per (device, boot) the gateway heard from: the boot's wall-clock anchor,
-- anchor_ms = min over messages of (arrival_ms - device uptime_ms) (see gateway/timesync.py).
CREATE TABLE device_boots (
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    boot          INTEGER NOT NULL,
    anchor_ms     INTEGER,
    first_seen    INTEGER NOT NULL,
    PRIMARY KEY (device_id, boot)
);

CREATE TABLE records (
    record_id     TEXT PRIMARY KEY,         -- "<device>:<rb>:<rs>" (protocol.ids.record_id)
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    rb            INTEGER NOT NULL,         -- boot at creation
    rs            INTEGER NOT NULL,         -- sequence within that boot
    kind          TEXT NOT NULL,            -- rated | walkup | extra | unrated | unpaired
    grade         TEXT,                     -- vs s bs d vd; NULL for unrated
    invitation_id TEXT,                     -- NULL when none
    device_wall_s INTEGER NOT NULL,         -- "w" as sent; 0 = device clock not synced
    uptime_ms     INTEGER NOT NULL,         -- "u" as sent
    pressed_at_ms INTEGER NOT NULL,         -- best UTC estimate of the press
    time_source   TEXT NOT NULL CHECK (time_source IN ('device', 'reconstructed', 'arrival')),
    received_at_ms INTEGER NOT NULL,        -- gateway arrival of the first copy
    msg_boot      INTEGER NOT NULL,         -- "b" of the message that delivered it
    binding_id    INTEGER,                  -- filled by gateway.attribution (bindings)
    window_id     TEXT,
    staff_account TEXT,
    flags         TEXT NOT NULL DEFAULT '', -- comma list, e.g. "unpaired,outside_hours"
    UNIQUE (device_id, rb, rs)
);
CREATE INDEX records_pressed ON records(pressed_at_ms);
CREATE INDEX records_invitation ON records(invitation_id) WHERE invitation_id IS NOT NULL;

CREATE TABLE rejections (
    reason        TEXT PRIMARY KEY,
    count         INTEGER NOT NULL DEFAULT 0,
    last_at       INTEGER                   -- epoch ms
);

CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    actor         TEXT NOT NULL,            -- "gateway", "cli:<user>", "api:<token name>"
    action        TEXT NOT NULL,            -- e.g. "device.add"
    detail_json   TEXT NOT NULL DEFAULT '{}'  -- never secrets
);
