-- Links sent by mail: password reset and address verification. Only a SHA-256 of each token is
-- stored. A token is spent by deleting its row; issuing a new one of a purpose deletes the
-- user's older ones, and a password change deletes the reset tokens.

-- Set when the user proved they read mail at `email` (a verification or reset link).
ALTER TABLE users ADD COLUMN email_verified_at TEXT;

CREATE TABLE email_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('reset', 'verify')),
    email       TEXT NOT NULL,             -- the address the link was sent to
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id, purpose);
CREATE INDEX email_tokens_by_expiry ON email_tokens (expires_at);
