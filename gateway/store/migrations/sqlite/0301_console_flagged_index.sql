-- The console's ratings list filtered by a flag (连续按键, 非办公时间, ...) over a long period:
-- flagged presses are a small share, so an index of those alone (by press time) lets the
-- filter read only them instead of every record. Unflagged records (the bulk) are not in it,
-- so ingest pays for it only on the rare flagged insert.
CREATE INDEX records_flagged_by_press ON records(pressed_at_ms) WHERE flags <> '';
