-- Users, their sessions and the refresh tokens that keep sessions alive.
-- Timestamps are UTC RFC 3339 with fixed microsecond precision, so text order is time order.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL,
    email_key      TEXT NOT NULL UNIQUE,     -- normalised, lower case: uniqueness ignores case
    username       TEXT NOT NULL,
    username_key   TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    locked_at      TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL,             -- absolute cap, whatever the refreshes
    user_agent    TEXT,
    ip            TEXT,
    revoked_at    TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Only a SHA-256 of each refresh token is stored; the token itself never is. When a token is
-- spent, its successor is kept sealed under a pad derived from the spent token (which only its
-- holder has), so a retry inside the grace window can be given the identical successor.
CREATE TABLE refresh_tokens (
    token_hash        TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    spent_at          TEXT,
    successor_hash    TEXT,
    successor_sealed  TEXT,
    successor_jti     TEXT,
    successor_iat     INTEGER
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
