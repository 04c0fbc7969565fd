-- The case feed (PostgreSQL form of sqlite/0021_cases.sql). (issue 17): every 办件 the window systems handle, invited to a rating or not, so
-- that cases never offered a rating are counted (办件量, invite rate, 事后补录). Idempotent by
-- case number: a report of a known case updates it in place.

CREATE TABLE cases (
    case_no       TEXT PRIMARY KEY CHECK (length(case_no) BETWEEN 1 AND 64),   -- 办件编号 (projectNo)
    hall_id       TEXT,                      -- NULL: the default hall
    window_id     TEXT,                      -- as the window system names it (may be unknown here)
    staff_account TEXT,                      -- the clerk who handled it (may be unknown here)
    staff_name    TEXT NOT NULL DEFAULT '',
    dept_code     TEXT NOT NULL DEFAULT '',
    task_code     TEXT NOT NULL DEFAULT '',  -- 事项编码
    task_name     TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL CHECK (status IN ('accepted', 'finished', 'withdrawn')),
    accepted_ms   BIGINT NOT NULL,           -- 受理时间 (UTC epoch ms)
    finished_ms   BIGINT,                   -- 办结时间
    reported_ms   BIGINT NOT NULL,          -- first reported
    updated_ms    BIGINT NOT NULL,          -- last changed by a report
    reported_by   TEXT NOT NULL
);
CREATE INDEX cases_by_accepted ON cases(accepted_ms);
-- Invitations by case: a feed case's invitations (invite rate, late entry) and the cases
-- invited but never reported.
CREATE INDEX invitations_by_case ON invitations(case_no);

-- Whether an invitation's case is in the feed (see sqlite/0021_cases.sql).
ALTER TABLE invitations ADD COLUMN case_reported INTEGER NOT NULL DEFAULT 0;
CREATE FUNCTION invitations_case_reported() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.case_reported := CASE WHEN EXISTS (SELECT 1 FROM cases c WHERE c.case_no = NEW.case_no) THEN 1 ELSE 0 END;
    RETURN NEW;
END $$;
CREATE TRIGGER invitations_case_reported BEFORE INSERT ON invitations
    FOR EACH ROW EXECUTE FUNCTION invitations_case_reported();
CREATE FUNCTION cases_reported() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE invitations SET case_reported = 1 WHERE case_no = NEW.case_no AND case_reported = 0;
    RETURN NULL;
END $$;
CREATE TRIGGER cases_reported AFTER INSERT ON cases FOR EACH ROW EXECUTE FUNCTION cases_reported();

-- Whether a case was offered a rating (see sqlite/0021_cases.sql).
ALTER TABLE cases ADD COLUMN invited INTEGER NOT NULL DEFAULT 0;
CREATE FUNCTION cases_invited_on_report() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.invited := CASE WHEN EXISTS (SELECT 1 FROM invitations i WHERE i.case_no = NEW.case_no
                                     AND i.status <> 'cancelled') THEN 1 ELSE 0 END;
    RETURN NEW;
END $$;
CREATE TRIGGER cases_invited_on_report BEFORE INSERT ON cases
    FOR EACH ROW EXECUTE FUNCTION cases_invited_on_report();
CREATE FUNCTION cases_invited_on_invitation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.status <> 'cancelled' THEN
        UPDATE cases SET invited = 1 WHERE case_no = NEW.case_no AND invited = 0;
    ELSIF TG_OP = 'UPDATE' AND NEW.status = 'cancelled' AND OLD.status <> 'cancelled' THEN
        UPDATE cases SET invited = CASE WHEN EXISTS (SELECT 1 FROM invitations i WHERE i.case_no = NEW.case_no
                                                     AND i.status <> 'cancelled') THEN 1 ELSE 0 END
        WHERE case_no = NEW.case_no;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER cases_invited_on_invitation AFTER INSERT OR UPDATE OF status ON invitations
    FOR EACH ROW EXECUTE FUNCTION cases_invited_on_invitation();
