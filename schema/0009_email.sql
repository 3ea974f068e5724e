-- edge-idp schema, version 9: proven addresses, the one-use links sent by mail, and the outbox
-- that delivers mail.

-- When the address in `email` was proven (a verification link, or a password reset through it).
-- NULL: not proven. An email change sets the new address and the time together.
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;

-- One-use links sent by mail, kept only as the SHA-256 of their random 256-bit token.
-- `kind`: 'verify' (proves `email` belongs to `user_id`), 'reset' (sets a new password),
-- 'change' (makes `email` the user's address). `email` is the address the link was sent to:
-- a verification only counts while it is still the user's address. A link is used by a
-- conditional write at the primary (`used_at IS NULL AND expires_at > now`), so it works once
-- whichever instance receives it; that write stamps `used_by` with a random value of its own
-- batch, and the batch's later statements act only on the row carrying it, so a second use
-- in the same second changes nothing.
CREATE TABLE email_tokens (
    token_hash  BLOB PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('verify', 'reset', 'change')),
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    used_by     BLOB
);
CREATE INDEX email_tokens_user ON email_tokens(user_id, kind);
CREATE INDEX email_tokens_expiry ON email_tokens(expires_at);

-- Mail to send, written in the same transaction as the change that causes it. `sealed` is the
-- rendered message (subject, text and HTML parts), sealed with AES-256-GCM under a key derived
-- from the master key, because it carries a link's token; it is emptied once the message is
-- sent or given up. The sender claims a row by pushing `next_attempt_at` ahead before it talks
-- to the server, and marks it `sent_at` after; `attempts` counts the tries.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    sealed          BLOB,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    sent_at         INTEGER,
    failed_at       INTEGER
);
CREATE INDEX mail_outbox_due ON mail_outbox(next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

-- Named leases: one holder at a time across every instance, taken and renewed by a conditional
-- write (`holder = me OR expires_at <= now`). The mail sender holds 'mail_sender'.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- The devices (SHA-256 of the `User-Agent`) each account has signed in from, kept only when
-- `NEW_SIGN_IN_NOTICE` is on: a sign-in from one not listed mails a notice.
CREATE TABLE known_devices (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_hash BLOB NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_hash)
);
