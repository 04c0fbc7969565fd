-- One first rating per case and follow-up ratings (PostgreSQL form of sqlite/0201_case_ratings.sql).

ALTER TABLE invitations ADD COLUMN assess_number INTEGER NOT NULL DEFAULT 1 CHECK (assess_number IN (1, 2));
DROP INDEX invitations_one_rating_per_case;
CREATE UNIQUE INDEX invitations_one_rating_per_case ON invitations(case_no, assess_number) WHERE status = 'rated';
-- IF NOT EXISTS: the district's 0021_cases makes the same index (the two works were parallel).
CREATE INDEX IF NOT EXISTS invitations_by_case ON invitations(case_no);
-- The 差评 ratings (the complaints' safety-net sweep finds those without a complaint).
CREATE INDEX invitations_bad_ratings ON invitations(record_id) WHERE status = 'rated' AND grade IN ('d', 'vd');

ALTER TABLE uplink_items ADD COLUMN case_no TEXT;
ALTER TABLE uplink_items ADD COLUMN assess_number INTEGER NOT NULL DEFAULT 1;
UPDATE uplink_items SET case_no = (SELECT i.case_no FROM invitations i WHERE i.id = uplink_items.invitation_id)
 WHERE invitation_id IS NOT NULL;
UPDATE uplink_items SET case_no = (SELECT i.case_no FROM records r JOIN invitations i ON i.id = r.invitation_id
                                   WHERE r.record_id = uplink_items.record_id)
 WHERE invitation_id IS NULL;
CREATE INDEX uplink_items_by_case ON uplink_items(case_no) WHERE case_no IS NOT NULL;
