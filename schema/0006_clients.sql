-- edge-idp schema, version 6: OAuth 2.0 / OpenID Connect clients, registered by an operator
-- (`edge-idp clients create`). A confidential client's secret is 256 random bits, stored as
-- its SHA-256 only (shown once at creation or rotation); a public client has none and must use
-- PKCE. Redirect URIs are matched exactly, never by prefix (RFC 9700 §2.1).
CREATE TABLE oauth_clients (
    client_id                 TEXT PRIMARY KEY,
    name                      TEXT NOT NULL,
    secret_hash               BLOB,
    redirect_uris             TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    grant_types               TEXT NOT NULL,
    scopes                    TEXT NOT NULL,
    first_party               INTEGER NOT NULL,
    require_pkce              INTEGER NOT NULL,
    created_at                INTEGER NOT NULL,
    secret_rotated_at         INTEGER
);
