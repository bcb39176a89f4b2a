-- The audit chain is keyed: rows written from now on are sealed with an HMAC under a key from
-- the keys file (`hmac-sha256`); rows written before keep their plain SHA-256 (`sha256`) and
-- still verify, but only as the chain's first rows.
ALTER TABLE audit_events ADD COLUMN alg TEXT NOT NULL DEFAULT 'sha256';
