-- A second factor: TOTP (RFC 6238) with single-use recovery codes, and the challenges a correct
-- password opens for an account that has it. Nothing secret is stored readable: the TOTP
-- secret is sealed (XChaCha20-Poly1305 under a key derived from the keys file, bound to its
-- user), and recovery codes and challenge tokens are stored only as SHA-256 hashes.

-- Set when the account's TOTP is confirmed; cleared when it is removed.
ALTER TABLE users ADD COLUMN mfa_enabled_at TEXT;

-- One row per account: pending until confirmed. `last_step` is the newest 30-second step whose
-- code was accepted; a code is accepted only for a later step, so each code works once.
CREATE TABLE mfa_totp (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    confirmed_at  TEXT,
    last_step     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE mfa_recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    used_at    TEXT,
    PRIMARY KEY (user_id, code_hash)
);

-- Opened by a correct password for an account with MFA; spent by the code that completes the
-- login. `credential` is a SHA-256 of the password hash it was opened on, so a password
-- change in between leaves it unusable.
CREATE TABLE mfa_challenges (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    failures    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX mfa_challenges_by_user ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges (expires_at);
