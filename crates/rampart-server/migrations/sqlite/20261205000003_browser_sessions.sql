-- Browser sessions: the same sessions, listed, limited and revoked like any other, held by an
-- opaque cookie instead of tokens. Only a SHA-256 of the cookie's value is stored.
ALTER TABLE sessions ADD COLUMN cookie_hash TEXT;
CREATE UNIQUE INDEX sessions_by_cookie ON sessions (cookie_hash) WHERE cookie_hash IS NOT NULL;
