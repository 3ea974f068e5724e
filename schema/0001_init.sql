-- edge-idp schema, version 1: accounts, organizations, sessions, refresh tokens, signing keys.
-- Ids are UUID strings, times are Unix seconds, token hashes are 32-byte SHA-256 blobs.
-- Applied files are never edited; changes go into a new numbered file.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL,
    name            TEXT,
    password_hash   TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    mfa_enabled     INTEGER NOT NULL DEFAULT 0,
    default_org_id  TEXT NOT NULL,
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    last_failed_at  INTEGER,
    last_login_at   INTEGER
);
-- Emails are stored lower-cased; uniqueness holds for every process sharing the database.
CREATE UNIQUE INDEX users_email ON users(email);

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE memberships (
    org_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);

-- A session is one refresh-token family; its id is the `sid` claim.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    active_org_id   TEXT NOT NULL,
    amr             TEXT NOT NULL,
    user_agent      TEXT,
    ip              TEXT,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    revoked_reason  TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expires ON sessions(expires_at);

-- Only hashes of refresh tokens are stored. `successor_sealed` holds the successor, sealed with
-- AES-256-GCM, during the grace replay window only.
CREATE TABLE refresh_tokens (
    token_hash        BLOB PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    generation        INTEGER NOT NULL,
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    used_at           INTEGER,
    successor_hash    BLOB,
    successor_sealed  BLOB
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens(expires_at);
CREATE INDEX refresh_tokens_successor ON refresh_tokens(successor_hash) WHERE successor_hash IS NOT NULL;
CREATE INDEX refresh_tokens_grace ON refresh_tokens(used_at) WHERE successor_sealed IS NOT NULL;

-- Signing keys; the PKCS#8 private key is sealed with AES-256-GCM, the kid as associated data.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    private_sealed  BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    activates_at    INTEGER NOT NULL,
    retires_at      INTEGER
);
