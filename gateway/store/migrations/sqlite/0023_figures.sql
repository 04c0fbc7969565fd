-- Bulletins over a year of a district in well under a second (issue 17, bench/bulletin.py):
-- covering indexes for the period scans of cases and of the invited cases not reported. The
-- records' part needs the uplink's tables, so it is migration 0190 (after 0100/0101).

CREATE INDEX cases_figures ON cases(accepted_ms, status, hall_id, dept_code, window_id, staff_account, invited,
                                    case_no);
-- Invited cases the feed has not reported (none once the feed is complete): a small index.
CREATE INDEX invitations_unreported ON invitations(created_ms, status, hall_id, dept_code, window_id, staff_account,
                                                   case_no) WHERE case_reported = 0;
