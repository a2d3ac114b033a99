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

-- version: 3
-- Tracking. A user's postback secret is derived (HMAC of the instance key,
-- the user id and this counter), never stored; rotating bumps the counter.
ALTER TABLE users ADD COLUMN postback_secret_version INTEGER NOT NULL DEFAULT 1;
-- IPs/CIDRs allowed to send this user's postbacks, comma-separated; '' = any.
ALTER TABLE users ADD COLUMN postback_allowlist TEXT NOT NULL DEFAULT '';

-- Links are never deleted (status 'deleted'), so their history stays.
CREATE TABLE links (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    url                 TEXT NOT NULL,
    slug                TEXT NOT NULL UNIQUE,
    payout_cents        INTEGER NOT NULL DEFAULT 0,
    status              TEXT NOT NULL DEFAULT 'active',
    source_postback_url TEXT NOT NULL DEFAULT '',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX links_user ON links(user_id, id);

-- Every click, bots included. `day` is the local date (server.utc_offset)
-- of the rollup rows it counts in.
CREATE TABLE clicks (
    id         INTEGER PRIMARY KEY,
    clickid    TEXT NOT NULL UNIQUE,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    link_id    INTEGER NOT NULL,
    sub1       TEXT NOT NULL DEFAULT '',
    sub2       TEXT NOT NULL DEFAULT '',
    sub3       TEXT NOT NULL DEFAULT '',
    sub4       TEXT NOT NULL DEFAULT '',
    sub5       TEXT NOT NULL DEFAULT '',
    ext_id     TEXT NOT NULL DEFAULT '',
    country    TEXT NOT NULL,
    device     TEXT NOT NULL,
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    is_unique  INTEGER NOT NULL,
    day        TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX clicks_user_time ON clicks(user_id, created_at);

-- Last click per link and visitor (hash of IP + User-Agent), for uniqueness.
CREATE TABLE click_fingerprints (
    link_id     INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,
    last_at     INTEGER NOT NULL,
    PRIMARY KEY (link_id, fingerprint)
) WITHOUT ROWID;

-- One lead per user and transaction id; sub_id, country and device come from its click.
CREATE TABLE leads (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    click_id     INTEGER NOT NULL,
    link_id      INTEGER NOT NULL,
    txid         TEXT NOT NULL,
    status       TEXT NOT NULL,
    payout_cents INTEGER NOT NULL,
    sub1         TEXT NOT NULL,
    country      TEXT NOT NULL,
    device       TEXT NOT NULL,
    day          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (user_id, txid)
);
CREATE INDEX leads_user_time ON leads(user_id, created_at);

-- Counters per user, dimension ('all', 'sub_id', 'country', 'device',
-- 'link'), value and local day, bumped in the same transaction as each
-- click and lead: reports read these, never the clicks table. Bot clicks
-- count only in bot_clicks. payout_cents is approved payout.
CREATE TABLE rollups (
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    dim            TEXT NOT NULL,
    value          TEXT NOT NULL,
    day            TEXT NOT NULL,
    clicks         INTEGER NOT NULL DEFAULT 0,
    unique_clicks  INTEGER NOT NULL DEFAULT 0,
    bot_clicks     INTEGER NOT NULL DEFAULT 0,
    leads          INTEGER NOT NULL DEFAULT 0,
    approved_leads INTEGER NOT NULL DEFAULT 0,
    pending_leads  INTEGER NOT NULL DEFAULT 0,
    rejected_leads INTEGER NOT NULL DEFAULT 0,
    payout_cents   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, dim, value, day)
) WITHOUT ROWID;

-- Every conversion postback received and what became of it.
CREATE TABLE postback_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER REFERENCES users(id) ON DELETE CASCADE,
    received_at INTEGER NOT NULL,
    method      TEXT NOT NULL,
    ip          TEXT NOT NULL,
    params      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER NOT NULL,
    lead_id     INTEGER
);
CREATE INDEX postback_log_user ON postback_log(user_id, id);

-- Payment notifications, one row per reference.
CREATE TABLE payments (
    reference    TEXT PRIMARY KEY,
    user_id      INTEGER REFERENCES users(id) ON DELETE SET NULL,
    email        TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- version: 4
-- Account settings. The TOTP secret, like the postback secret, is derived
-- from the instance key and a version (unbinding bumps it), never stored;
-- twofa_last_step stops a code from being used twice.
ALTER TABLE users ADD COLUMN twofa_secret_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN twofa_last_step INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX users_phone ON users(phone) WHERE phone IS NOT NULL;

-- Single-use 2FA recovery codes, as SHA-256.
CREATE TABLE recovery_codes (
    id        INTEGER PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   INTEGER
);
CREATE INDEX recovery_codes_user ON recovery_codes(user_id);

-- One live one-time code per user and purpose ('email', 'phone'), as an
-- HMAC; `target` is the address or number it was sent to.
CREATE TABLE otps (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    target     TEXT NOT NULL,
    code_hash  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, purpose)
) WITHOUT ROWID;

-- Numbers refused for binding after repeated wrong codes.
CREATE TABLE phone_blacklist (
    phone      TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- API keys. The secret is derived from the instance key and the api_key,
-- shown once, never stored.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    api_key      TEXT NOT NULL UNIQUE,
    permissions  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX api_keys_user ON api_keys(user_id, id);

-- version: 5
-- Pruning through indexes instead of scans; postbacks queued per owner
-- (capped per user); numbers an account guessed codes for too often.
-- Email verification codes join the other one-time codes in `otps`
-- (purpose 'verify-email'); a code mailed before the upgrade stops working,
-- the link in the same mail still does, and a resend makes a new code.
DROP TABLE email_codes;
CREATE INDEX click_fingerprints_last_at ON click_fingerprints(last_at);
CREATE INDEX postback_log_received ON postback_log(received_at);
ALTER TABLE outbox ADD COLUMN owner_id INTEGER;
CREATE INDEX outbox_owner ON outbox(owner_id, status) WHERE owner_id IS NOT NULL;
CREATE TABLE phone_blocks (
    phone      TEXT NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (phone, user_id)
) WITHOUT ROWID;

-- version: 6
-- Compact clicks (tens of bytes a click, indexes included, instead of
-- hundreds): User-Agents and sub values interned in lookup tables, the
-- address as 4 or 16 bytes, the time in milliseconds, the device as a
-- number, and no clickid text: a clickid is its 96 random bits (`secret`)
-- followed by the row id, so the row id finds it with no second index.
-- Clickids handed out before this step keep working through
-- legacy_clickids; rows moved here keep their address as text.
CREATE TABLE user_agents (
    id   INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
);
CREATE TABLE click_values (
    id   INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
);
-- Click ids are handed out in blocks before the row is written (the
-- clickid is in the redirect): the next one not yet reserved.
CREATE TABLE id_blocks (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE legacy_clickids (
    click_id INTEGER PRIMARY KEY,
    clickid  TEXT NOT NULL UNIQUE
);
INSERT INTO user_agents (text) SELECT DISTINCT user_agent FROM clicks;
INSERT OR IGNORE INTO click_values (text)
    SELECT sub1 FROM clicks WHERE sub1 != '' UNION SELECT sub2 FROM clicks WHERE sub2 != ''
    UNION SELECT sub3 FROM clicks WHERE sub3 != '' UNION SELECT sub4 FROM clicks WHERE sub4 != ''
    UNION SELECT sub5 FROM clicks WHERE sub5 != '' UNION SELECT ext_id FROM clicks WHERE ext_id != '';
INSERT INTO legacy_clickids (click_id, clickid) SELECT id, clickid FROM clicks;
CREATE TABLE clicks_compact (
    id        INTEGER PRIMARY KEY,
    secret    BLOB NOT NULL,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    link_id   INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    ip        BLOB NOT NULL,
    ua        INTEGER NOT NULL,
    country   TEXT NOT NULL,
    device    INTEGER NOT NULL,
    is_unique INTEGER NOT NULL,
    sub1      INTEGER,
    sub2      INTEGER,
    sub3      INTEGER,
    sub4      INTEGER,
    sub5      INTEGER,
    ext_id    INTEGER
);
INSERT INTO clicks_compact (id, secret, user_id, link_id, at, ip, ua, country, device, is_unique,
                            sub1, sub2, sub3, sub4, sub5, ext_id)
    SELECT c.id, randomblob(12), c.user_id, c.link_id, c.created_at / 1000, c.ip,
           (SELECT id FROM user_agents WHERE text = c.user_agent), c.country,
           CASE c.device WHEN 'desktop' THEN 0 WHEN 'mobile' THEN 1 WHEN 'tablet' THEN 2 ELSE 3 END, c.is_unique,
           (SELECT id FROM click_values WHERE text = c.sub1), (SELECT id FROM click_values WHERE text = c.sub2),
           (SELECT id FROM click_values WHERE text = c.sub3), (SELECT id FROM click_values WHERE text = c.sub4),
           (SELECT id FROM click_values WHERE text = c.sub5), (SELECT id FROM click_values WHERE text = c.ext_id)
    FROM clicks c ORDER BY c.id;
DROP TABLE clicks;
ALTER TABLE clicks_compact RENAME TO clicks;
CREATE INDEX clicks_user_time ON clicks(user_id, at);
INSERT INTO id_blocks (name, next) VALUES ('clicks', coalesce((SELECT max(id) FROM clicks), 0) + 1);
-- Who clicked which link in the last day is kept in memory (rebuilt at
-- start from the last day's clicks): a table of it took a random write
-- into a big index for every new visitor.
DROP TABLE click_fingerprints;

-- version: 7
-- Rollups keyed by day before value, so a range of days is one stretch of
-- the table (today's rows, written on every click, sit together too), and
-- all-time counters: each row also counts in a row with day = '' (no date
-- sorts before it), so the dashboard and a report over a user's whole
-- history read one row per sub_id, country, device or link instead of one
-- per value and day.
CREATE TABLE rollups_by_day (
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    dim            TEXT NOT NULL,
    day            TEXT NOT NULL,
    value          TEXT NOT NULL,
    clicks         INTEGER NOT NULL DEFAULT 0,
    unique_clicks  INTEGER NOT NULL DEFAULT 0,
    bot_clicks     INTEGER NOT NULL DEFAULT 0,
    leads          INTEGER NOT NULL DEFAULT 0,
    approved_leads INTEGER NOT NULL DEFAULT 0,
    pending_leads  INTEGER NOT NULL DEFAULT 0,
    rejected_leads INTEGER NOT NULL DEFAULT 0,
    payout_cents   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, dim, day, value)
) WITHOUT ROWID;
INSERT INTO rollups_by_day (user_id, dim, day, value, clicks, unique_clicks, bot_clicks, leads,
                            approved_leads, pending_leads, rejected_leads, payout_cents)
    SELECT user_id, dim, day, value, clicks, unique_clicks, bot_clicks, leads,
           approved_leads, pending_leads, rejected_leads, payout_cents
    FROM rollups WHERE day <> ''
    UNION ALL
    SELECT user_id, dim, '', value, sum(clicks), sum(unique_clicks), sum(bot_clicks), sum(leads),
           sum(approved_leads), sum(pending_leads), sum(rejected_leads), sum(payout_cents)
    FROM rollups WHERE day <> '' GROUP BY user_id, dim, value;
DROP TABLE rollups;
ALTER TABLE rollups_by_day RENAME TO rollups;
-- A user's sub_ids over all time, biggest first: the dashboard's top 50 of
-- 20 000 without sorting them all.
CREATE INDEX rollups_top_sub_ids ON rollups(user_id, clicks DESC, payout_cents DESC, value)
    WHERE dim = 'sub_id' AND day = '';

-- version: 8
-- Smart links: a link's destinations (offers and landers, by weight, with
-- caps and a status) and its rules. A destination keeps its id while its
-- name stays, so its history stays; one taken out of the routing keeps
-- its row with status 'removed'. Every link starts with one offer, its url.
CREATE TABLE destinations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    link_id      INTEGER NOT NULL REFERENCES links(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    kind         TEXT NOT NULL DEFAULT 'offer',
    name         TEXT NOT NULL,
    url          TEXT NOT NULL,
    weight       INTEGER NOT NULL DEFAULT 100,
    payout_cents INTEGER,
    daily_cap    INTEGER,
    status       TEXT NOT NULL DEFAULT 'active',
    UNIQUE (link_id, name)
);
-- mode: 'weighted' or 'optimize'; rules: JSON, naming destinations.
ALTER TABLE links ADD COLUMN mode TEXT NOT NULL DEFAULT 'weighted';
ALTER TABLE links ADD COLUMN fallback_url TEXT NOT NULL DEFAULT '';
ALTER TABLE links ADD COLUMN rules TEXT NOT NULL DEFAULT '[]';
INSERT INTO destinations (link_id, position, kind, name, url) SELECT id, 0, 'offer', 'Offer 1', url FROM links;
-- The offer a click went to (set when it leaves a lander), the lander it
-- saw, and the matched rule's name (interned). Clicks of before this step
-- have none: they went to their link's first destination.
ALTER TABLE clicks ADD COLUMN destination_id INTEGER;
ALTER TABLE clicks ADD COLUMN lander_id INTEGER;
ALTER TABLE clicks ADD COLUMN rule INTEGER;
ALTER TABLE leads ADD COLUMN destination_id INTEGER;
UPDATE leads SET destination_id = (SELECT d.id FROM destinations d WHERE d.link_id = leads.link_id);
-- Rows of dimension 'destination' (value: its id): clicks are an offer's
-- visitors or a lander's views; lander_clicks are a lander's click-throughs.
ALTER TABLE rollups ADD COLUMN lander_clicks INTEGER NOT NULL DEFAULT 0;
INSERT INTO rollups (user_id, dim, day, value, clicks, unique_clicks, bot_clicks, leads,
                     approved_leads, pending_leads, rejected_leads, payout_cents)
    SELECT r.user_id, 'destination', r.day, d.id, r.clicks, r.unique_clicks, r.bot_clicks, r.leads,
           r.approved_leads, r.pending_leads, r.rejected_leads, r.payout_cents
    FROM rollups r JOIN destinations d ON d.link_id = CAST(r.value AS INTEGER)
    WHERE r.dim = 'link';

-- version: 9
-- Money: a link's cost model ('none', 'cpc' with cost_value_micros per
-- non-bot click, 'param' from the click's `cost` parameter), the cost each
-- click carried (micro-units, NULL for none), counters of cost, and the
-- click's OS and local hour kept with its lead (reports by os and hour).
ALTER TABLE links ADD COLUMN cost_model TEXT NOT NULL DEFAULT 'none';
ALTER TABLE links ADD COLUMN cost_value_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clicks ADD COLUMN cost INTEGER;
ALTER TABLE rollups ADD COLUMN cost_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leads ADD COLUMN os TEXT;
ALTER TABLE leads ADD COLUMN hour INTEGER;

-- version: 10
-- Spend known later: a day's total cost for a link (sub_id '') or one
-- sub_id of it, and what each entry changed in the rollups of the link's
-- day (per dimension and value), so a new or removed entry moves only the
-- difference.
CREATE TABLE cost_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    link_id       INTEGER NOT NULL REFERENCES links(id) ON DELETE CASCADE,
    day           TEXT NOT NULL,
    sub_id        TEXT NOT NULL DEFAULT '',
    amount_micros INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (link_id, day, sub_id)
);
CREATE INDEX cost_entries_user_day ON cost_entries(user_id, day);
CREATE TABLE cost_adjustments (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    link_id INTEGER NOT NULL,
    day     TEXT NOT NULL,
    dim     TEXT NOT NULL,
    value   TEXT NOT NULL,
    micros  INTEGER NOT NULL,
    PRIMARY KEY (link_id, day, dim, value)
) WITHOUT ROWID;

-- version: 11
-- Notifications (SPEC §13): a user's channels and choices. The Telegram
-- bot token is sealed (XChaCha20-Poly1305 under a key derived from the
-- instance key, bound to the user); the webhook secret is derived from the
-- instance key, the user and webhook_secret_version, never stored.
CREATE TABLE notify_settings (
    user_id                INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    telegram_token         BLOB,
    telegram_token_hint    TEXT NOT NULL DEFAULT '',
    telegram_chat_id       TEXT NOT NULL DEFAULT '',
    telegram_events        TEXT NOT NULL DEFAULT '',
    webhook_url            TEXT NOT NULL DEFAULT '',
    webhook_events         TEXT NOT NULL DEFAULT '',
    webhook_secret_version INTEGER NOT NULL DEFAULT 0,
    digest_hour            INTEGER NOT NULL DEFAULT 8,
    stop_loss_cents        INTEGER,
    updated_at             INTEGER NOT NULL
);
-- Alerts sent once per scope and period (a day's digest, a stop-loss per
-- link or sub_id and day, refused postbacks per hour): the key says which.
CREATE TABLE notify_marks (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE INDEX notify_marks_at ON notify_marks(at);
-- Offer monitoring: 'unknown' until checked, then 'up' or 'down' (after two
-- failures in a row); monitor_changed_at tells a running server which
-- links to read again when another process (the CLI) changed a state.
ALTER TABLE destinations ADD COLUMN monitor_state TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE destinations ADD COLUMN monitor_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE destinations ADD COLUMN monitor_checked_at INTEGER;
ALTER TABLE destinations ADD COLUMN monitor_error TEXT;
ALTER TABLE destinations ADD COLUMN monitor_changed_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX destinations_monitor_changed ON destinations(monitor_changed_at) WHERE monitor_changed_at > 0;

-- version: 12
-- Sliding-window limits: one row per counted event (a registration, a
-- verification mail), per key such as an address; rows older than a day
-- are pruned.
CREATE TABLE rate_events (
    key TEXT NOT NULL,
    at  INTEGER NOT NULL
);
CREATE INDEX rate_events_key ON rate_events(key, at);
CREATE INDEX rate_events_at ON rate_events(at);

-- version: 13
-- Offer monitoring's changes between up and down are numbered from a
-- counter that never goes back (a deleted row cannot lower it), in the
-- order they are written, so a running server finds every link to read
-- again after another process (the CLI) changed one. monitor_changed_at
-- of step 11 is no longer used.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('monitor_change', 0);
ALTER TABLE destinations ADD COLUMN monitor_change INTEGER NOT NULL DEFAULT 0;
DROP INDEX destinations_monitor_changed;
CREATE INDEX destinations_monitor_change ON destinations(monitor_change) WHERE monitor_change > 0;
-- A user's latest delivery per channel (the settings page's last error).
CREATE INDEX outbox_owner_channel ON outbox(owner_id, channel, id) WHERE owner_id IS NOT NULL;
