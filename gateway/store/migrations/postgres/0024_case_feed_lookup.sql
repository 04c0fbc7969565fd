-- A reported case marks its invitations "case reported" (trigger cases_reported, 0021) by
-- invitations_by_case. Written as in 0021 (`case_reported = 0`), the planner could take the
-- partial index invitations_unreported (0023, WHERE case_reported = 0) instead, with the case
-- number only as a filter: every reported case then scanned every unreported invitation (68 ms
-- each at 18,000 of them; a day's feed reported at once went quadratic, and invitations whose
-- case is never reported stay in that index for good). `case_reported <> 1` selects the same
-- rows (the column is 0 or 1) and does not imply the partial index's predicate, so only
-- invitations_by_case serves it.
CREATE OR REPLACE FUNCTION cases_reported() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE invitations SET case_reported = 1 WHERE case_no = NEW.case_no AND case_reported <> 1;
    RETURN NULL;
END $$;
