-- The incoming gate's per-device rate limit (gateway/incoming.py): how many messages of the
-- device were dropped for exceeding it, and when the last one was (`health` flags the device);
-- and until when its broker account is disabled for flooding (gateway/quench.py).
ALTER TABLE devices ADD COLUMN limited BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN limited_at BIGINT;
ALTER TABLE devices ADD COLUMN quenched_until BIGINT;
