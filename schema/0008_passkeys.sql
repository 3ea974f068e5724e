-- edge-idp schema, version 8: passkeys (WebAuthn credentials) and their ceremonies.

-- A user's passkeys. `credential` is webauthn-rs's stored form of the credential (its public
-- key, sign counter, backup flags, transports, user-verification policy), as JSON; the columns
-- beside it are copies for listing and for the conditional writes. `credential_id` is unique
-- across all users: an authenticator's credential belongs to one account.
CREATE TABLE passkeys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_id   BLOB NOT NULL UNIQUE,
    credential      TEXT NOT NULL,
    name            TEXT NOT NULL,
    sign_count      INTEGER NOT NULL,
    backup_eligible INTEGER NOT NULL,
    backup_state    INTEGER NOT NULL,
    transports      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER
);
CREATE INDEX passkeys_user ON passkeys(user_id);

-- A begun ceremony: webauthn-rs's state (the challenge and what the finish must check), kept
-- under the SHA-256 of its `ceremony_id`, five minutes of life, used once: the finish claims
-- it with a conditional write at the primary before it checks anything, so a ceremony is
-- finished at most once whichever instance began or finishes it.
-- `kind`: 'register' (for `user_id`), 'login' (usernameless), 'second_factor' (for `user_id`,
-- after the password step whose `mfa_challenges` row is `mfa_token_hash`).
CREATE TABLE webauthn_ceremonies (
    id_hash         BLOB PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('register', 'login', 'second_factor')),
    user_id         TEXT REFERENCES users(id) ON DELETE CASCADE,
    mfa_token_hash  BLOB,
    state           TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER
);
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies(expires_at);
