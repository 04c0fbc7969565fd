-- The QR channel (评价二维码, issue 19).
--
-- qr_points: the QR code of a window as a rating point (一码一账号). Each is a `devices` row that
--   can never connect (enabled = 0, no broker account, a random key nobody holds): records,
--   invitations and bindings keep their device foreign keys, a QR-only window is bound through
--   its point like an evaluator (with history), and every QR rating record is a record of the
--   point of its window (record id "<point>:1:<next_seq>").
-- qr_plates: the static plates printed for a (window, clerk), with the binding they were issued
--   for; revoked ones are kept (a leaked plate is refused, its past ratings stay).
-- qr_submissions: every rating submitted through the page, keyed by its form's one-time id, so a
--   retried or double-submitted form is the same rating (stored once).
-- records.channel: how each record was given (device = an evaluator's press, qr = the page).
-- invitations.receipt: 1 = printed on the 办件 receipt as a link, rated only through it; it is
--   never shown on an evaluator, so several can be open at one point at once.

CREATE TABLE qr_points (
    device_id   TEXT PRIMARY KEY REFERENCES devices(device_id),
    window_id   TEXT NOT NULL UNIQUE REFERENCES windows(window_id),
    next_seq    INTEGER NOT NULL DEFAULT 0,     -- rs of the point's latest record
    created_ms  INTEGER NOT NULL
);

CREATE TABLE qr_plates (
    id            TEXT PRIMARY KEY CHECK (length(id) BETWEEN 8 AND 32),  -- the token's subject
    kid           INTEGER NOT NULL,              -- the signing key's id ([qr] key_file)
    window_id     TEXT NOT NULL REFERENCES windows(window_id),
    staff_account TEXT NOT NULL REFERENCES staff(account),
    binding_id    INTEGER NOT NULL REFERENCES bindings(id),   -- the binding it was issued for
    issued_ms     INTEGER NOT NULL,
    issued_by     TEXT NOT NULL,
    revoked_ms    INTEGER,
    revoked_by    TEXT,
    revoke_reason TEXT
);
CREATE INDEX qr_plates_by_window ON qr_plates(window_id, staff_account);

CREATE TABLE qr_submissions (
    nonce       TEXT PRIMARY KEY,                -- the form's one-time id
    via         TEXT NOT NULL CHECK (via IN ('plate', 'case')),
    subject     TEXT NOT NULL,                   -- the plate id, or the invitation id of the link
    record_id   TEXT NOT NULL UNIQUE REFERENCES records(record_id),
    outcome     TEXT NOT NULL CHECK (outcome IN ('rated', 'follow_up', 'extra', 'walkup')),
    grade       TEXT NOT NULL CHECK (grade IN ('vs', 's', 'bs', 'd', 'vd')),
    tags        TEXT NOT NULL DEFAULT '',        -- 差评 reason codes as given on the page
    comment     TEXT NOT NULL DEFAULT '',
    created_ms  INTEGER NOT NULL
);
CREATE INDEX qr_submissions_by_subject ON qr_submissions(via, subject);

ALTER TABLE records ADD COLUMN channel TEXT NOT NULL DEFAULT 'device' CHECK (channel IN ('device', 'qr'));

ALTER TABLE invitations ADD COLUMN receipt INTEGER NOT NULL DEFAULT 0 CHECK (receipt IN (0, 1));
DROP INDEX invitations_one_pending_per_device;
CREATE UNIQUE INDEX invitations_one_pending_per_device ON invitations(device_id)
    WHERE status = 'pending' AND receipt = 0;
