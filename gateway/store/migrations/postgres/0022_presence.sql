-- (PostgreSQL form of sqlite/0022_presence.sql.) Which devices were heard in which hour (issue 17, supervision: devices silent during opening
-- hours). The service notes, every [supervision] presence_every_s, the hour of each device's
-- last message; an hour without a row is an hour the device was silent. hour_ms: UTC epoch ms
-- of the hour's start.

CREATE TABLE device_presence (
    device_id  TEXT NOT NULL,
    hour_ms    BIGINT NOT NULL,
    PRIMARY KEY (device_id, hour_ms)
);
CREATE INDEX device_presence_by_hour ON device_presence(hour_ms);
