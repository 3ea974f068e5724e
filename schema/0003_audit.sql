-- edge-idp schema, version 3: the audit trail.
-- Who did what, when, from where, under which request: never a secret. Pruned after
-- AUDIT_RETENTION_DAYS.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT,
    session_id  TEXT,
    org_id      TEXT,
    subject_id  TEXT,
    ip          TEXT,
    request_id  TEXT,
    detail      TEXT
);
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_user ON audit_events(user_id, at);
