-- The case feed (issue 17): every 办件 the window systems handle, invited to a rating or not, so
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
    accepted_ms   INTEGER NOT NULL,          -- 受理时间 (UTC epoch ms)
    finished_ms   INTEGER,                   -- 办结时间
    reported_ms   INTEGER NOT NULL,          -- first reported
    updated_ms    INTEGER NOT NULL,          -- last changed by a report
    reported_by   TEXT NOT NULL
);
CREATE INDEX cases_by_accepted ON cases(accepted_ms);
-- Invitations by case: a feed case's invitations (invite rate, late entry) and the cases
-- invited but never reported.
CREATE INDEX invitations_by_case ON invitations(case_no);

-- Whether an invitation's case is in the feed (a bulletin counts an invited case the feed never
-- reported as a case too), kept by the triggers below whichever comes first, so bulletins read
-- it from the invitation without a join.
ALTER TABLE invitations ADD COLUMN case_reported INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER invitations_case_reported AFTER INSERT ON invitations
WHEN EXISTS (SELECT 1 FROM cases c WHERE c.case_no = NEW.case_no)
BEGIN
    UPDATE invitations SET case_reported = 1 WHERE id = NEW.id;
END;
CREATE TRIGGER cases_reported AFTER INSERT ON cases
BEGIN
    UPDATE invitations SET case_reported = 1 WHERE case_no = NEW.case_no AND case_reported = 0;
END;

-- Whether a case was offered a rating (an invitation that was not cancelled), whichever of
-- the case and its invitations came first: bulletins count 邀评量 and supervision the invite
-- rate from the case itself.
ALTER TABLE cases ADD COLUMN invited INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER cases_invited_on_report AFTER INSERT ON cases
WHEN EXISTS (SELECT 1 FROM invitations i WHERE i.case_no = NEW.case_no AND i.status <> 'cancelled')
BEGIN
    UPDATE cases SET invited = 1 WHERE case_no = NEW.case_no;
END;
CREATE TRIGGER cases_invited_on_invitation AFTER INSERT ON invitations
WHEN NEW.status <> 'cancelled'
BEGIN
    UPDATE cases SET invited = 1 WHERE case_no = NEW.case_no AND invited = 0;
END;
CREATE TRIGGER cases_invited_on_cancel AFTER UPDATE OF status ON invitations
WHEN NEW.status = 'cancelled' AND OLD.status <> 'cancelled'
BEGIN
    UPDATE cases SET invited = CASE WHEN EXISTS (SELECT 1 FROM invitations i WHERE i.case_no = NEW.case_no
                                                 AND i.status <> 'cancelled') THEN 1 ELSE 0 END
    WHERE case_no = NEW.case_no;
END;
