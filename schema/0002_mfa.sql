-- edge-idp schema, version 2: TOTP multi-factor authentication.

-- One TOTP secret per user, sealed with AES-256-GCM (key derived from MFA_ENCRYPTION_KEY, the
-- user id as associated data). `pending` until a code confirms it. `last_step` is the highest
-- TOTP time step accepted; a step at or below it is never accepted again (replay), whichever
-- instance sees it.
CREATE TABLE mfa_secrets (
    user_id        TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret_sealed  BLOB NOT NULL,
    key_version    INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'enabled')),
    last_step      INTEGER,
    created_at     INTEGER NOT NULL,
    enabled_at     INTEGER
);

-- Single-use recovery codes, stored as SHA-256 of the normalised code.
CREATE TABLE mfa_recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

-- Login challenges: the opaque mfa_token (hash only), the organization requested at login,
-- five minutes of life, burned after five wrong codes, single use.
CREATE TABLE mfa_challenges (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    org_id      TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    used_at     INTEGER
);
CREATE INDEX mfa_challenges_expires ON mfa_challenges(expires_at);
