-- Uplink items keyed by upload id (PostgreSQL form of sqlite/0101): "inv:<invitation id>"
-- items have no record, so the foreign key goes; status 'covered' and two columns come.

ALTER TABLE uplink_items DROP CONSTRAINT uplink_items_record_id_fkey;
ALTER TABLE uplink_items DROP CONSTRAINT uplink_items_status_check;
ALTER TABLE uplink_items ADD CONSTRAINT uplink_items_status_check
    CHECK (status IN ('pending', 'sent', 'acked', 'rejected', 'covered'));
ALTER TABLE uplink_items ADD COLUMN invitation_id TEXT;
ALTER TABLE uplink_items ADD COLUMN covered_by TEXT;
CREATE UNIQUE INDEX uplink_items_by_invitation ON uplink_items(invitation_id) WHERE invitation_id IS NOT NULL;

CREATE INDEX invitations_closed_unrated ON invitations(closed_ms)
    WHERE status IN ('unrated', 'expired', 'superseded');
