-- Start-up loads the sessions revoked within the last access-token lifetime into memory; this
-- keeps that query from scanning every session ever opened.
CREATE INDEX sessions_revoked_by_last_use ON sessions (last_used_at) WHERE revoked_at IS NOT NULL;
