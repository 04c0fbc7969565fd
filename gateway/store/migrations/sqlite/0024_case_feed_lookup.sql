-- The same statement as postgres/0024_case_feed_lookup.sql, so that both backends' triggers read
-- alike: a reported case finds its invitations by invitations_by_case, never through the partial
-- index invitations_unreported (0023). SQLite's planner already chose invitations_by_case for
-- the 0021 form; `case_reported <> 1` (the same rows: the column is 0 or 1) keeps it that way.
DROP TRIGGER cases_reported;
CREATE TRIGGER cases_reported AFTER INSERT ON cases
BEGIN
    UPDATE invitations SET case_reported = 1 WHERE case_no = NEW.case_no AND case_reported <> 1;
END;
