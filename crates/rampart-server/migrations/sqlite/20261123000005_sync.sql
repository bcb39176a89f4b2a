-- `changes_since` (the multi-node poll, and the same store contract on both backends) seeks
-- recent revocations and user changes instead of scanning.
CREATE INDEX sessions_by_revocation ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX users_by_update ON users (updated_at);
