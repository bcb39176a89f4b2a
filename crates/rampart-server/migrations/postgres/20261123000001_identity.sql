-- Users, their sessions and the refresh tokens that keep sessions alive.
-- The same schema as the SQLite backend, so both stores run the same statements' logic and
-- the same behavioural test suite. Timestamps are UTC RFC 3339 text with fixed microsecond
-- precision (written by the application), so text order is time order on both backends.

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
-- Nodes poll for users changed since their last look (locks, role changes).
CREATE INDEX users_by_update ON users (updated_at);

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
-- Start-up loads the sessions revoked within the last access-token lifetime; nodes poll for
-- sessions revoked since their last look. Both seek these instead of scanning every session.
CREATE INDEX sessions_revoked_by_last_use ON sessions (last_used_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_by_revocation ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

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
    successor_iat     BIGINT
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
