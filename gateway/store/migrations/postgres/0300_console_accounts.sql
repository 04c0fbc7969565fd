-- Web console accounts and their sessions: PostgreSQL form of sqlite/0300 (BIGINT epoch ms).
-- A password is stored only as its Argon2id hash; a session only as the SHA-256 of the
-- cookie's random token, so neither a copy of the store nor its backups let anyone log in.
-- Scope: comma lists of hall ids and department codes ('' = every hall / department).

CREATE TABLE console_accounts (
    name            TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
    display_name    TEXT NOT NULL DEFAULT '',
    role            TEXT NOT NULL CHECK (role IN ('admin', 'liaison', 'supervisor', 'readonly')),
    halls           TEXT NOT NULL DEFAULT '',
    depts           TEXT NOT NULL DEFAULT '',
    password_hash   TEXT NOT NULL,
    must_change     INTEGER NOT NULL DEFAULT 0,   -- 1: the next login must set a new password
    disabled        INTEGER NOT NULL DEFAULT 0,
    failed_logins   INTEGER NOT NULL DEFAULT 0,   -- consecutive, reset by a good login
    locked_until_ms BIGINT,                      -- login refused until then (throttle)
    created_ms      BIGINT NOT NULL,
    password_ms     BIGINT NOT NULL,             -- when the password was last set
    last_login_ms   BIGINT
);

CREATE TABLE console_sessions (
    token_hash      TEXT PRIMARY KEY,             -- sha256 hex of the cookie's token
    account         TEXT NOT NULL REFERENCES console_accounts(name),
    csrf            TEXT NOT NULL,                -- the session's anti-forgery token
    created_ms      BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL,             -- idle expiry counts from here
    expires_ms      BIGINT NOT NULL,             -- absolute expiry
    remote          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX console_sessions_by_account ON console_sessions(account);
CREATE INDEX console_sessions_by_expiry ON console_sessions(expires_ms);

-- The audit-log page filters by who and by what, newest first, over a log that grows with
-- every invitation: without these, a filter is a scan of the whole log.
CREATE INDEX audit_log_by_actor ON audit_log(actor, id);
CREATE INDEX audit_log_by_action ON audit_log(action, id);
