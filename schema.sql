-- The apextrack schema, applied by the binary itself on every start.
--
-- Each "-- version: N" section is one upgrade step. A new database runs them
-- all in order; an existing one runs only those above its PRAGMA user_version,
-- each in its own transaction that also records the new version. A released
-- step is never edited: change the schema by appending the next step.
-- Timestamps are INTEGER microseconds since the Unix epoch, UTC.

-- version: 1
CREATE TABLE users (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL,
    email              TEXT NOT NULL COLLATE NOCASE UNIQUE,
    password_hash      TEXT NOT NULL,
    email_verified_at  INTEGER,
    account_status     TEXT NOT NULL DEFAULT 'active',
    language           TEXT NOT NULL DEFAULT 'id',
    currency           TEXT NOT NULL DEFAULT 'USD',
    phone              TEXT,
    two_factor_enabled INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

-- Sanctum-style login tokens: the client holds "<id>|<secret>", we keep only
-- the SHA-256 of the secret.
CREATE TABLE personal_access_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX personal_access_tokens_user ON personal_access_tokens(user_id);

-- Fixed-window counters (failed logins, resends, OTP tries), keyed by purpose
-- and subject, e.g. "login:<email>|<ip>".
CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    hits         INTEGER NOT NULL,
    window_start INTEGER NOT NULL
) WITHOUT ROWID;

-- version: 2
-- Secrets of this instance (e.g. the key that signs verification links),
-- generated on first start and never shown.
CREATE TABLE instance_keys (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- The one live email verification code of a user, as an HMAC, never in clear.
CREATE TABLE email_codes (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Mail (and later SMS) waiting for delivery, written in the same
-- transaction as the change that caused it. Bodies are wiped once sent.
CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    channel           TEXT NOT NULL DEFAULT 'mail',
    recipient         TEXT NOT NULL,
    subject           TEXT NOT NULL DEFAULT '',
    body_text         TEXT NOT NULL DEFAULT '',
    body_html         TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL DEFAULT 'pending',
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    last_error        TEXT,
    provider_response TEXT,
    created_at        INTEGER NOT NULL,
    sent_at           INTEGER
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
