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
