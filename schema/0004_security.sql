-- edge-idp schema, version 4: account lockout and the second-factor failure cap.

-- Consecutive wrong passwords per account key (a hash of the normalised email), for known and
-- unknown addresses alike, so that neither the lock nor the write it takes reveals whether an
-- account exists. A row exists only while failures are being counted; a successful login
-- deletes it. `locked_until` is when the current lock ends (Unix seconds).
CREATE TABLE login_lockouts (
    account_key     BLOB PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL DEFAULT 0
);

-- Wrong second-factor answers of one user across every endpoint that checks one (MFA verify,
-- confirm, disable): counted in a fixed window that starts at the first failure. An attempt is
-- counted before its code is checked, in the same conditional write that refuses it when the
-- cap is reached, so concurrent guesses cannot pass the cap.
CREATE TABLE mfa_failures (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    attempts      INTEGER NOT NULL,
    window_start  INTEGER NOT NULL
);
