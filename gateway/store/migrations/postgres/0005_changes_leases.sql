-- The change feed running gateways poll (a re-keyed device must be refused with its old
-- secret at once, in every process), and leader leases (one instance runs the daily push,
-- the realtime push and invitation expiry at a time).

CREATE TABLE changes (
    id        BIGSERIAL PRIMARY KEY,
    kind      TEXT NOT NULL,              -- e.g. "device.key"
    subject   TEXT NOT NULL,              -- e.g. the device id
    at_ms     BIGINT NOT NULL
);

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,         -- e.g. "scheduler"
    holder      TEXT NOT NULL,            -- the instance's id
    expires_ms  BIGINT NOT NULL
);
