-- edge-idp schema, version 5: organization invitations.
-- An owner or admin invites a normalised email with a role; only an account with that email can
-- accept or decline, once, before `expires_at`. Accepting, declining and revoking are each a
-- conditional UPDATE on the three NULL end columns and `expires_at`, so one use wins across
-- processes. Expired rows are pruned with the other expired rows.
CREATE TABLE org_invitations (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    invited_by   TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    accepted_at  INTEGER,
    declined_at  INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX org_invitations_email ON org_invitations(email);
CREATE INDEX org_invitations_expires ON org_invitations(expires_at);
