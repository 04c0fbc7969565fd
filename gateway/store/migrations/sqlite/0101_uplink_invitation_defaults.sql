-- Uplink items are keyed by their upload id, no longer only by a record id: an invitation
-- that closed without any device record (superseded, expired, device offline) is uploaded
-- once as a flagged default rating under the id "inv:<invitation id>".
-- So uplink_items loses its foreign key to records (SQLite cannot drop a constraint: the
-- table is rebuilt, rows kept) and gains:
--   invitation_id  the invitation an "inv:" item stands for (NULL for record items)
--   status 'covered' + covered_by: a device `unrated` record that arrived after its
--                  invitation's default was already sent as "inv:<id>"; not uploaded, so
--                  the case never gets two default ratings.

CREATE TABLE uplink_items_v2 (
    record_id      TEXT PRIMARY KEY,        -- upload id: "<device>:<boot>:<seq>" or "inv:<invitation id>"
    status         TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'acked', 'rejected', 'covered')),
    batch_id       TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    first_sent_ms  INTEGER,
    last_sent_ms   INTEGER,
    acked_ms       INTEGER,
    ack_status     TEXT,
    default_flag   INTEGER NOT NULL DEFAULT 0,
    reject_origin  TEXT,
    reject_code    TEXT,
    reject_reason  TEXT,
    rejected_ms    INTEGER,
    requeued       INTEGER NOT NULL DEFAULT 0,
    invitation_id  TEXT,                    -- "inv:" items: the invitation closed without a rating
    covered_by     TEXT                     -- status 'covered': the upload id carrying this default
);

INSERT INTO uplink_items_v2 (record_id, status, batch_id, attempts, first_sent_ms, last_sent_ms, acked_ms,
                             ack_status, default_flag, reject_origin, reject_code, reject_reason,
                             rejected_ms, requeued)
SELECT record_id, status, batch_id, attempts, first_sent_ms, last_sent_ms, acked_ms, ack_status,
       default_flag, reject_origin, reject_code, reject_reason, rejected_ms, requeued
FROM uplink_items;

DROP TABLE uplink_items;
ALTER TABLE uplink_items_v2 RENAME TO uplink_items;
CREATE INDEX uplink_items_by_status ON uplink_items(status);
CREATE UNIQUE INDEX uplink_items_by_invitation ON uplink_items(invitation_id) WHERE invitation_id IS NOT NULL;

-- Candidates for a default rating: closed without a rating, found by close time (the
-- push's --date filter and the reconciliation look them up by day).
CREATE INDEX invitations_closed_unrated ON invitations(closed_ms)
    WHERE status IN ('unrated', 'expired', 'superseded');
