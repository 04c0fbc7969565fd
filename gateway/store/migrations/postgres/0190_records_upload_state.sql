-- Records' upload state for bulletins (PostgreSQL form of sqlite/0190_records_upload_state.sql).

ALTER TABLE records ADD COLUMN up_status TEXT;
ALTER TABLE records ADD COLUMN up_default INTEGER NOT NULL DEFAULT 0;
UPDATE records r SET up_status = u.status, up_default = u.default_flag
FROM uplink_items u WHERE u.record_id = r.record_id;
ALTER TABLE invitations ADD COLUMN default_status TEXT;
UPDATE invitations i SET default_status = u.status FROM uplink_items u WHERE u.invitation_id = i.id;

CREATE FUNCTION records_upload_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE records SET up_status = NEW.status, up_default = NEW.default_flag WHERE record_id = NEW.record_id;
    IF NEW.invitation_id IS NOT NULL THEN
        UPDATE invitations SET default_status = NEW.status WHERE id = NEW.invitation_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER records_upload_state_insert AFTER INSERT ON uplink_items
    FOR EACH ROW EXECUTE FUNCTION records_upload_state();
CREATE TRIGGER records_upload_state_update AFTER UPDATE OF status, default_flag ON uplink_items
    FOR EACH ROW EXECUTE FUNCTION records_upload_state();

CREATE INDEX records_figures ON records(pressed_at_ms)
    INCLUDE (hall_id, dept_code, window_id, staff_account, kind, grade, flags, up_status, up_default, invitation_id);
CREATE INDEX invitations_defaults ON invitations(closed_ms)
    INCLUDE (default_status, hall_id, dept_code, window_id, staff_account) WHERE default_status IS NOT NULL;
