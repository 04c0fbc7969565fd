-- Records' upload state for bulletins (PostgreSQL form of sqlite/0190_records_upload_state.sql).

ALTER TABLE records ADD COLUMN up_status TEXT;
ALTER TABLE records ADD COLUMN up_default INTEGER NOT NULL DEFAULT 0;
UPDATE records r SET up_status = u.status, up_default = u.default_flag
FROM uplink_items u WHERE u.record_id = r.record_id;

CREATE FUNCTION records_upload_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE records SET up_status = NEW.status, up_default = NEW.default_flag WHERE record_id = NEW.record_id;
    RETURN NULL;
END $$;
CREATE TRIGGER records_upload_state_insert AFTER INSERT ON uplink_items
    FOR EACH ROW EXECUTE FUNCTION records_upload_state();
CREATE TRIGGER records_upload_state_update AFTER UPDATE OF status, default_flag ON uplink_items
    FOR EACH ROW EXECUTE FUNCTION records_upload_state();

CREATE INDEX records_figures ON records(pressed_at_ms)
    INCLUDE (hall_id, dept_code, window_id, staff_account, kind, grade, flags, up_status, up_default, invitation_id);
