-- Operations (issue 20): alert state, the running service instances, and cursors of leader
-- jobs that must carry on where another leader stopped.
--
-- alerts: one row per raised condition. While resolved_ms IS NULL the condition is open and
-- is never announced again (one notice per condition, gateway/alerts.py); when it clears the
-- row gets resolved_ms and a recovery notice. Kept as history.
CREATE TABLE alerts (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    cond_key             TEXT NOT NULL,     -- e.g. "device_silent:hcp-0a1b2c3d4e5f"
    kind                 TEXT NOT NULL,     -- notification kind, e.g. "alert.device_silent"
    severity             TEXT NOT NULL,     -- info | warning | critical
    subject              TEXT NOT NULL,     -- one line for people (Chinese)
    detail_json          TEXT NOT NULL DEFAULT '{}',   -- facts for machines; never secrets
    opened_ms            INTEGER NOT NULL,
    notified_ms          INTEGER,           -- the alert notice was queued
    resolved_ms          INTEGER,           -- NULL while open
    recovery_notified_ms INTEGER
);
CREATE UNIQUE INDEX alerts_one_open ON alerts(cond_key) WHERE resolved_ms IS NULL;
CREATE INDEX alerts_by_opened ON alerts(opened_ms);

-- Every running gateway instance writes its row every few seconds (doctor, alerts).
CREATE TABLE service_instances (
    instance     TEXT PRIMARY KEY,          -- host:pid
    client_id    TEXT NOT NULL,             -- its [mqtt] client_id
    version      TEXT NOT NULL,
    started_ms   INTEGER NOT NULL,
    seen_ms      INTEGER NOT NULL,
    mqtt_ok      INTEGER NOT NULL DEFAULT 0,   -- connected and subscribed now
    mqtt_error   TEXT,                      -- the last connection error, one line
    detail_json  TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE ops_cursors (
    name   TEXT PRIMARY KEY,                -- e.g. "audit_log" (last audit row logged)
    value  INTEGER NOT NULL
);
