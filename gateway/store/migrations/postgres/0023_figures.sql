-- Bulletins over a year of a district (PostgreSQL form of sqlite/0023_figures.sql).

CREATE INDEX cases_figures ON cases(accepted_ms)
    INCLUDE (status, hall_id, dept_code, window_id, staff_account, invited, case_no);
CREATE INDEX invitations_unreported ON invitations(created_ms)
    INCLUDE (status, hall_id, dept_code, window_id, staff_account, case_no) WHERE case_reported = 0;
