-- edge-idp schema, version 7: the OpenID Connect provider's state. Every one-use secret here
-- (a browser-session cookie, an authorization code) is stored as its SHA-256 only, and every
-- one-use decision is a conditional write at the primary, so it holds across instances.

-- Browser sessions of the hosted pages: what the `edge_idp_session` cookie stands for (single
-- sign-on across clients). Ended by RP-initiated logout, by "log out everywhere" and password
-- changes, and at `expires_at` (`SESSION_MAX_TTL` after sign-in).
CREATE TABLE browser_sessions (
    id            TEXT PRIMARY KEY,
    token_hash    BLOB NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    amr           TEXT NOT NULL,
    auth_time     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX browser_sessions_user ON browser_sessions(user_id);

-- Authorization codes (RFC 6749 §4.1.2): at most 60 s, single-use, bound to everything the
-- authorization request decided. `session_id` records the refresh-token family (session) the
-- first exchange started, so that a second use revokes it (RFC 6749 §4.1.2).
CREATE TABLE oauth_codes (
    code_hash          BLOB PRIMARY KEY,
    client_id          TEXT NOT NULL,
    redirect_uri       TEXT NOT NULL,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    browser_session_id TEXT NOT NULL,
    scope              TEXT NOT NULL,
    nonce              TEXT,
    code_challenge     TEXT,
    auth_time          INTEGER NOT NULL,
    amr                TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    used_at            INTEGER,
    session_id         TEXT
);
CREATE INDEX oauth_codes_expires ON oauth_codes(expires_at);

-- Scopes a user granted a client on the consent page; asked again only for scopes not here.
CREATE TABLE oauth_consents (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    granted_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- A session (refresh-token family) started by the token endpoint belongs to its client: its
-- refresh tokens rotate only for that client (the condition is part of the rotation's
-- conditional write), and the scope it was granted travels with every rotation.
ALTER TABLE sessions ADD COLUMN client_id TEXT;
ALTER TABLE sessions ADD COLUMN scope TEXT;
ALTER TABLE sessions ADD COLUMN browser_session_id TEXT;
