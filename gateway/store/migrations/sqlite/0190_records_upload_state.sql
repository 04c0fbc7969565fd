-- Bulletins (issue 17, bench/bulletin.py), the records' part: numbered after the uplink's
-- 0100/0101 because it reads and triggers on uplink_items.
--
-- Each record carries its upload state (up_status, up_default), and each invitation the state of
-- its "inv:" default rating (default_status), kept equal to their uplink_items row by the
-- triggers below, in the same transaction as every change the uplink makes: a bulletin reads
-- the period's records and defaults through covering indexes, with no lookup into uplink_items.

ALTER TABLE records ADD COLUMN up_status TEXT;                 -- uplink_items.status, NULL: not queued
ALTER TABLE records ADD COLUMN up_default INTEGER NOT NULL DEFAULT 0;   -- uplink_items.default_flag
UPDATE records SET
    up_status = (SELECT u.status FROM uplink_items u WHERE u.record_id = records.record_id),
    up_default = COALESCE((SELECT u.default_flag FROM uplink_items u WHERE u.record_id = records.record_id), 0);

ALTER TABLE invitations ADD COLUMN default_status TEXT;       -- its "inv:" item's status, NULL: none
UPDATE invitations SET default_status = (SELECT u.status FROM uplink_items u WHERE u.invitation_id = invitations.id)
WHERE id IN (SELECT invitation_id FROM uplink_items WHERE invitation_id IS NOT NULL);

CREATE TRIGGER records_upload_state_insert AFTER INSERT ON uplink_items
BEGIN
    UPDATE records SET up_status = NEW.status, up_default = NEW.default_flag WHERE record_id = NEW.record_id;
    UPDATE invitations SET default_status = NEW.status WHERE id = NEW.invitation_id;
END;
CREATE TRIGGER records_upload_state_update AFTER UPDATE OF status, default_flag ON uplink_items
BEGIN
    UPDATE records SET up_status = NEW.status, up_default = NEW.default_flag WHERE record_id = NEW.record_id;
    UPDATE invitations SET default_status = NEW.status WHERE id = NEW.invitation_id;
END;

CREATE INDEX records_figures ON records(pressed_at_ms, hall_id, dept_code, window_id, staff_account, kind, grade,
                                        flags, up_status, up_default, invitation_id);
CREATE INDEX invitations_defaults ON invitations(closed_ms, default_status, hall_id, dept_code, window_id,
                                                 staff_account) WHERE default_status IS NOT NULL;
