//! Notifications (SPEC §13): a user's channels (a Telegram bot and chat,
//! a signed webhook), the events each wants, and the events themselves,
//! queued in the transaction of the change that caused them and delivered
//! by the outbox's integrations worker through [`Courier`].
//!
//! The bot token is sealed under a key derived from the instance key and
//! bound to its user; the webhook secret is derived (instance key, user,
//! version) and never stored. Neither is ever answered whole after the
//! request that set it, nor logged.

use super::{money, money_text, parse_money};
use crate::base::Core;
use crate::clock::{self, Micros, MINUTE, SECOND};
use crate::crypto;
use crate::error::{Error, FieldErrors};
use crate::http_client;
use crate::i18n::Msg;
use crate::outbox::{self, Failure};
use crate::ratelimit::{self, Limit};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};

/// The events a channel can ask for.
pub const EVENTS: &[&str] =
    &["conversion", "daily_digest", "postback_rejected", "destination_down", "destination_up", "stop_loss"];
/// Refused postbacks (bad secret, unknown clickid) in [`REJECTED_WINDOW`]
/// that make an alert, at most one an hour.
pub const REJECTED_ALERT_AT: i64 = 5;
const REJECTED_WINDOW: Micros = 10 * MINUTE;
/// Tests a user may send.
const TESTS: Limit = Limit { max: 10, window: 10 * MINUTE };
/// How much of a provider's answer is kept.
const ANSWER_BYTES: u64 = 2048;

/// One channel's events, as stored (comma-separated).
fn events_text(events: &[String]) -> String {
    events.join(",")
}

fn events_of(text: &str) -> Vec<String> {
    text.split(',').filter(|e| EVENTS.contains(e)).map(str::to_string).collect()
}

#[derive(Debug, Clone, Default)]
pub struct Telegram {
    sealed_token: Vec<u8>,
    /// The bot's id and the token's last four characters.
    hint: String,
    pub chat_id: String,
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Webhook {
    pub url: String,
    pub events: Vec<String>,
}

/// A user's notification settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub telegram: Option<Telegram>,
    pub webhook: Option<Webhook>,
    /// Bumped to make a new webhook secret.
    secret_version: i64,
    pub digest_hour: u8,
    pub stop_loss_cents: Option<i64>,
    updated_at: Micros,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            telegram: None,
            webhook: None,
            secret_version: 0,
            digest_hour: 8,
            stop_loss_cents: None,
            updated_at: 0,
        }
    }
}

impl Settings {
    /// The channels that want `event`.
    fn channels_for(&self, event: &str) -> Vec<&'static str> {
        let wants = |events: &[String]| events.iter().any(|e| e == event);
        let mut out = Vec::new();
        if self.telegram.as_ref().is_some_and(|t| wants(&t.events)) {
            out.push("telegram");
        }
        if self.webhook.as_ref().is_some_and(|w| wants(&w.events)) {
            out.push("webhook");
        }
        out
    }
}

/// The user's settings; defaults (no channel) when never saved.
pub fn load(conn: &Connection, user_id: i64) -> rusqlite::Result<Settings> {
    let row = conn
        .prepare_cached(
            "SELECT telegram_token, telegram_token_hint, telegram_chat_id, telegram_events, webhook_url,
                    webhook_events, webhook_secret_version, digest_hour, stop_loss_cents, updated_at
             FROM notify_settings WHERE user_id = ?1",
        )?
        .query_row([user_id], |r| {
            let token: Option<Vec<u8>> = r.get(0)?;
            let chat_id: String = r.get(2)?;
            let url: String = r.get(4)?;
            Ok(Settings {
                telegram: token.filter(|_| !chat_id.is_empty()).map(|sealed_token| Telegram {
                    sealed_token,
                    hint: r.get(1).unwrap_or_default(),
                    chat_id: chat_id.clone(),
                    events: events_of(&r.get::<_, String>(3).unwrap_or_default()),
                }),
                webhook: Some(url)
                    .filter(|u| !u.is_empty())
                    .map(|url| Webhook { url, events: events_of(&r.get::<_, String>(5).unwrap_or_default()) }),
                secret_version: r.get(6)?,
                digest_hour: r.get::<_, i64>(7)?.clamp(0, 23) as u8,
                stop_loss_cents: r.get(8)?,
                updated_at: r.get(9)?,
            })
        })
        .optional()?;
    Ok(row.unwrap_or_default())
}

fn save(tx: &Connection, user_id: i64, s: &Settings, now: Micros) -> rusqlite::Result<()> {
    let tg = s.telegram.as_ref();
    let wh = s.webhook.as_ref();
    tx.execute(
        "INSERT INTO notify_settings (user_id, telegram_token, telegram_token_hint, telegram_chat_id, telegram_events,
                                      webhook_url, webhook_events, webhook_secret_version, digest_hour,
                                      stop_loss_cents, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (user_id) DO UPDATE SET
             telegram_token = excluded.telegram_token, telegram_token_hint = excluded.telegram_token_hint,
             telegram_chat_id = excluded.telegram_chat_id, telegram_events = excluded.telegram_events,
             webhook_url = excluded.webhook_url, webhook_events = excluded.webhook_events,
             webhook_secret_version = excluded.webhook_secret_version, digest_hour = excluded.digest_hour,
             stop_loss_cents = excluded.stop_loss_cents, updated_at = excluded.updated_at",
        params![
            user_id,
            tg.map(|t| t.sealed_token.clone()),
            tg.map_or("", |t| &t.hint),
            tg.map_or("", |t| &t.chat_id),
            tg.map_or(String::new(), |t| events_text(&t.events)),
            wh.map_or("", |w| &w.url),
            wh.map_or(String::new(), |w| events_text(&w.events)),
            s.secret_version,
            s.digest_hour,
            s.stop_loss_cents,
            now
        ],
    )?;
    Ok(())
}

/// The key bot tokens are sealed under, derived from the instance key.
fn token_key(core: &Core) -> [u8; 32] {
    crypto::hmac_sha256(&core.signing_key, b"apextrack notify: telegram bot tokens")
}

fn token_context(user_id: i64) -> Vec<u8> {
    format!("telegram token of user {user_id}").into_bytes()
}

fn bot_token(core: &Core, user_id: i64, telegram: &Telegram) -> Option<String> {
    let plain = crypto::open(&token_key(core), &token_context(user_id), &telegram.sealed_token)?;
    String::from_utf8(plain).ok()
}

/// The webhook's signing secret: derived, never stored.
pub fn webhook_secret(core: &Core, user_id: i64, version: i64) -> String {
    let mac =
        crypto::hmac_sha256(&core.signing_key, format!("apextrack webhook secret {user_id} {version}").as_bytes());
    format!("whsec_{}", crypto::hex(&mac))
}

fn mask_tail(text: &str) -> String {
    let tail: String = text.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

/// A bot token as @BotFather gives it: the bot's numeric id, a colon, and
/// 30 to 64 characters of `[A-Za-z0-9_-]`.
pub fn is_bot_token(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else { return false };
    (5..=16).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_digit())
        && (30..=64).contains(&secret.len())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A chat id: a (possibly negative) number, or a public channel's `@name`.
fn chat_id(value: &Value) -> Option<String> {
    let text = match value {
        Value::Number(n) => n.as_i64()?.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let digits = text.strip_prefix('-').unwrap_or(&text);
    let numeric = (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    let channel = text.strip_prefix('@').is_some_and(|name| {
        (5..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    (numeric || channel).then_some(text)
}

fn msg(field: &str, key: &'static str) -> Msg {
    Msg::new(key).arg("attribute", field.replace('_', " "))
}

fn events(at: &str, value: Option<&Value>, errors: &mut FieldErrors) -> Vec<String> {
    let list = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(list)) if list.len() <= 20 => list,
        Some(_) => {
            errors.add(at, msg(at, "validation.array"));
            return Vec::new();
        }
    };
    let mut out: Vec<String> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        match v.as_str() {
            Some(e) if EVENTS.contains(&e) => {
                if !out.iter().any(|x| x == e) {
                    out.push(e.to_string());
                }
            }
            _ => errors.add(&format!("{at}.{i}"), msg("event", "validation.in").arg("values", EVENTS.join(", "))),
        }
    }
    out
}

/// The webhook URL as it will be called, if a webhook may point at it: an
/// http(s) URL as a link's target must be, whose host is ASCII (IDNs as
/// punycode) and, unless the configuration allows private targets, not
/// on this machine or in a private network; else the message key of the
/// 422. Delivery checks again, on the address it connects to; this only
/// answers early.
fn webhook_url(core: &Core, text: &str) -> Result<String, &'static str> {
    let url = super::links::redirect_url(text).ok_or("validation.url")?;
    let host = http_client::host_of(&url);
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b)) {
        return Err("validation.url");
    }
    if core.config.tracking.allow_private_targets {
        return Ok(url);
    }
    let internal = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => http_client::is_internal(ip),
        Err(_) if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") => true,
        Err(_) => {
            use std::net::ToSocketAddrs;
            // A name that does not resolve now is let through: delivery
            // checks the address it connects to.
            (host, 80).to_socket_addrs().is_ok_and(|mut addrs| {
                let all: Vec<_> = addrs.by_ref().collect();
                !all.is_empty() && all.iter().all(|a| http_client::is_internal(a.ip()))
            })
        }
    };
    if internal {
        return Err("validation.private_url");
    }
    Ok(url)
}

/// What a `PUT /api/notifications` changed: the settings, and the new
/// webhook secret when this request made one (shown once).
pub struct Saved {
    pub settings: Settings,
    pub new_secret: Option<String>,
}

/// A channel in a `PUT`: left out, turned off, or set.
enum Change<T> {
    Keep,
    Off,
    Set(T),
}

struct TelegramInput {
    /// A new token; None keeps the stored one.
    token: Option<String>,
    chat_id: String,
    events: Vec<String>,
}

struct WebhookInput {
    url: String,
    events: Vec<String>,
    rotate_secret: bool,
}

/// Saves of the settings a user may make in ten minutes (each may look up
/// a webhook's host name).
const SAVES: Limit = Limit { max: 30, window: 10 * MINUTE };

/// Reads and saves a `PUT /api/notifications` body: a top-level key left
/// out stays as it is; a channel set to null is turned off. Each try
/// counts against [`SAVES`]. The body is then checked (a webhook's host
/// looked up) with no lock held; the
/// settings are then read, changed and written in one transaction, so two
/// saves at once cannot undo each other (a secret shown is the one used).
pub fn update(core: &Core, user_id: i64, body: &Map<String, Value>) -> Result<Saved, Error> {
    // Counted before the body is looked at (which may look up a host name).
    let key = format!("notify-save:{user_id}");
    let started = core.clock.now();
    core.db.write_then_refuse(|tx| {
        if let Some(retry_after) = ratelimit::blocked(tx, &key, SAVES, started)? {
            let message = Msg::new("notify.too_many_saves").arg("seconds", retry_after);
            return Ok(Err(Error::TooManyRequests { message, retry_after }));
        }
        ratelimit::hit(tx, &key, SAVES, started)?;
        Ok(Ok(()))
    })?;
    let mut errors = FieldErrors::default();
    let telegram = match body.get("telegram") {
        None => Change::Keep,
        Some(Value::Null) => Change::Off,
        Some(Value::Object(tg)) => {
            let token = match tg.get("bot_token") {
                // Left out, empty, or sent back masked as GET showed it: the stored one.
                None | Some(Value::Null) => None,
                Some(Value::String(t)) if t.is_empty() || t.contains('…') => None,
                Some(Value::String(t)) if is_bot_token(t.trim()) => Some(t.trim().to_string()),
                Some(_) => {
                    errors.add("telegram.bot_token", msg("bot token", "validation.bot_token"));
                    None
                }
            };
            let chat = match tg.get("chat_id") {
                None | Some(Value::Null) => {
                    errors.add("telegram.chat_id", msg("chat id", "validation.required"));
                    None
                }
                Some(v) => {
                    let id = chat_id(v);
                    if id.is_none() {
                        errors.add("telegram.chat_id", msg("chat id", "validation.chat_id"));
                    }
                    id
                }
            };
            let events = events("telegram.events", tg.get("events"), &mut errors);
            match chat {
                Some(chat_id) => Change::Set(TelegramInput { token, chat_id, events }),
                None => Change::Keep,
            }
        }
        Some(_) => {
            errors.add("telegram", msg("telegram", "validation.object"));
            Change::Keep
        }
    };
    let webhook = match body.get("webhook") {
        None => Change::Keep,
        Some(Value::Null) => Change::Off,
        Some(Value::Object(wh)) => {
            let url = match wh.get("url") {
                Some(Value::String(u)) => match webhook_url(core, u) {
                    Ok(url) => Some(url),
                    Err(key) => {
                        errors.add("webhook.url", msg("url", key));
                        None
                    }
                },
                None | Some(Value::Null) => {
                    errors.add("webhook.url", msg("url", "validation.required"));
                    None
                }
                Some(_) => {
                    errors.add("webhook.url", msg("url", "validation.url"));
                    None
                }
            };
            let events = events("webhook.events", wh.get("events"), &mut errors);
            let rotate_secret = match wh.get("rotate_secret") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    errors.add("webhook.rotate_secret", msg("rotate secret", "validation.boolean"));
                    false
                }
            };
            match url {
                Some(url) => Change::Set(WebhookInput { url, events, rotate_secret }),
                None => Change::Keep,
            }
        }
        Some(_) => {
            errors.add("webhook", msg("webhook", "validation.object"));
            Change::Keep
        }
    };
    let digest_hour = match body.get("digest_hour") {
        None => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|h| h <= 23) => n.as_u64().map(|h| h as u8),
        Some(_) => {
            errors.add("digest_hour", msg("digest_hour", "validation.between").arg("min", 0).arg("max", 23));
            None
        }
    };
    let stop_loss = match body.get("stop_loss_amount") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => match parse_money(v).filter(|&c| c > 0) {
            Some(cents) => Some(Some(cents)),
            None => {
                errors.add("stop_loss_amount", msg("stop_loss_amount", "validation.money"));
                None
            }
        },
    };
    errors.into_result()?;
    let now = core.clock.now();
    core.db.write(|tx| {
        let current = load(tx, user_id)?;
        let mut s = current.clone();
        let mut errors = FieldErrors::default();
        match &telegram {
            Change::Keep => {}
            Change::Off => s.telegram = None,
            Change::Set(input) => {
                let (sealed_token, hint) = match (&input.token, current.telegram.as_ref()) {
                    (Some(t), _) => {
                        let bot = t.split(':').next().unwrap_or("");
                        let sealed = crypto::seal(&token_key(core), &token_context(user_id), t.as_bytes());
                        (sealed, format!("{bot}:{}", mask_tail(t)))
                    }
                    (None, Some(kept)) => (kept.sealed_token.clone(), kept.hint.clone()),
                    (None, None) => {
                        errors.add("telegram.bot_token", msg("bot token", "validation.required"));
                        (Vec::new(), String::new())
                    }
                };
                let (chat_id, events) = (input.chat_id.clone(), input.events.clone());
                s.telegram = Some(Telegram { sealed_token, hint, chat_id, events });
            }
        }
        let mut new_secret = false;
        match &webhook {
            Change::Keep => {}
            Change::Off => s.webhook = None,
            Change::Set(input) => {
                if current.webhook.is_none() || input.rotate_secret {
                    s.secret_version += 1;
                    new_secret = true;
                }
                s.webhook = Some(Webhook { url: input.url.clone(), events: input.events.clone() });
            }
        }
        if let Some(hour) = digest_hour {
            s.digest_hour = hour;
        }
        if let Some(cents) = stop_loss {
            s.stop_loss_cents = cents;
        }
        if !s.channels_for("stop_loss").is_empty() && s.stop_loss_cents.is_none() {
            errors.add("stop_loss_amount", msg("stop_loss_amount", "validation.stop_loss_needed"));
        }
        errors.into_result()?;
        save(tx, user_id, &s, now)?;
        // A digest chosen after today's digest hour starts tomorrow, rather
        // than sending yesterday's at once.
        let digest_before = !current.channels_for("daily_digest").is_empty();
        let digest_now = !s.channels_for("daily_digest").is_empty();
        if digest_now && !digest_before && super::clicks::local_hour(now, core.utc_offset) >= s.digest_hour {
            let yesterday = clock::local_date(now - clock::DAY, core.utc_offset);
            claim(tx, user_id, &format!("digest:{yesterday}"), now, None)?;
        }
        s.updated_at = now;
        let new_secret = new_secret.then(|| webhook_secret(core, user_id, s.secret_version));
        Ok(Saved { settings: s, new_secret })
    })
}

/// The last failed delivery of a channel since the settings were saved:
/// what the settings page shows (a refused bot token, a dead webhook).
fn last_error(conn: &Connection, user_id: i64, channel: &str, since: Micros) -> rusqlite::Result<Value> {
    let row: Option<(Option<String>, Micros)> = conn
        .prepare_cached(
            "SELECT last_error, created_at FROM outbox
             WHERE owner_id = ?1 AND channel = ?2 AND created_at >= ?3 AND (status != 'pending' OR last_error IS NOT NULL)
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![user_id, channel, since], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((Some(error), at)) => json!({"at": clock::format(at), "message": error}),
        _ => Value::Null,
    })
}

/// The settings as the API shows them: secrets masked, unless this answer
/// is the one that made the webhook's secret.
pub fn to_json(core: &Core, user_id: i64, s: &Settings, new_secret: Option<&str>) -> Result<Value, Error> {
    let (tg_error, wh_error) = core.db.read(|c| {
        Ok((last_error(c, user_id, "telegram", s.updated_at)?, last_error(c, user_id, "webhook", s.updated_at)?))
    })?;
    let telegram = s
        .telegram
        .as_ref()
        .map(|t| json!({"bot_token": t.hint, "chat_id": t.chat_id, "events": t.events, "last_error": tg_error}));
    let webhook = s.webhook.as_ref().map(|w| {
        let secret = match new_secret {
            Some(secret) => secret.to_string(),
            None => format!("whsec_{}", mask_tail(&webhook_secret(core, user_id, s.secret_version))),
        };
        json!({"url": w.url, "events": w.events, "secret": secret, "last_error": wh_error})
    });
    Ok(json!({
        "telegram": telegram,
        "webhook": webhook,
        "digest_hour": s.digest_hour,
        "stop_loss_amount": s.stop_loss_cents.map(money),
        "event_names": EVENTS,
    }))
}

/// An event for a user's channels: its name, its webhook `data`, and its
/// Telegram text (rendered in the user's language).
pub struct Event {
    pub name: &'static str,
    pub data: Value,
    pub text: Msg,
}

/// What the user reads money in, and the language of their messages.
fn user_prefs(conn: &Connection, user_id: i64) -> rusqlite::Result<(String, String)> {
    conn.prepare_cached("SELECT language, currency FROM users WHERE id = ?1")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map(Option::unwrap_or_default)
}

/// Queues `event` for every channel of `user_id` that wants it, inside the
/// caller's transaction. Returns how many messages were queued.
pub fn emit(tx: &Connection, core: &Core, user_id: i64, event: &Event, now: Micros) -> rusqlite::Result<usize> {
    let settings = load(tx, user_id)?;
    emit_to(tx, core, user_id, &settings, event, now)
}

fn emit_to(
    tx: &Connection,
    core: &Core,
    user_id: i64,
    settings: &Settings,
    event: &Event,
    now: Micros,
) -> rusqlite::Result<usize> {
    let channels = settings.channels_for(event.name);
    let mut queued = 0;
    for channel in channels {
        let (recipient, body) = match channel {
            "telegram" => {
                let (language, currency) = user_prefs(tx, user_id)?;
                let text = event.text.clone().arg("currency", currency).render(core.lang_of(&language));
                (settings.telegram.as_ref().map_or("", |t| t.chat_id.as_str()).to_string(), text)
            }
            _ => {
                let host = settings.webhook.as_ref().map_or("", |w| http_client::host_of(&w.url)).to_string();
                let body = json!({"event": event.name, "created_at": clock::format(now), "data": event.data});
                (host, body.to_string())
            }
        };
        match outbox::enqueue_notification(tx, user_id, channel, &recipient, event.name, &body, now)? {
            Some(_) => queued += 1,
            None => core.log.line(format!(
                "warning: {} notification of user {user_id} dropped: {} already waiting",
                event.name,
                outbox::MAX_PENDING_POSTBACKS
            )),
        }
    }
    Ok(queued)
}

/// Claims `key` for `user_id` unless it was claimed less than `every` ago
/// (None: ever, while its mark is kept). True when this call claimed it:
/// the alert it stands for goes out once.
fn claim(tx: &Connection, user_id: i64, key: &str, now: Micros, every: Option<Micros>) -> rusqlite::Result<bool> {
    let changed = tx
        .prepare_cached(
            "INSERT INTO notify_marks (user_id, key, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, key) DO UPDATE SET at = excluded.at WHERE ?4 IS NOT NULL AND at <= ?3 - ?4",
        )?
        .execute(params![user_id, key, now, every])?;
    Ok(changed == 1)
}

/// Deletes marks older than a week (no alert period is longer); run by
/// the maintenance thread.
pub fn prune_marks(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM notify_marks WHERE rowid IN (SELECT rowid FROM notify_marks WHERE at < ?1 LIMIT ?2)",
        params![now - 7 * clock::DAY, limit],
    )
}

/// After a refused postback (bad secret, unknown clickid) logged for
/// `user_id`: when the last ten minutes hold [`REJECTED_ALERT_AT`] or more
/// and no alert went out this hour, queues one.
pub fn postback_refused(tx: &Connection, core: &Core, user_id: i64, now: Micros) -> rusqlite::Result<()> {
    let settings = load(tx, user_id)?;
    if settings.channels_for("postback_rejected").is_empty() {
        return Ok(());
    }
    let recent: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM (SELECT outcome FROM postback_log WHERE user_id = ?1 AND received_at >= ?2
                                   ORDER BY id DESC LIMIT 1000)
             WHERE outcome IN ('bad_secret', 'unknown_click')",
        )?
        .query_row(params![user_id, now - REJECTED_WINDOW], |r| r.get(0))?;
    if recent < REJECTED_ALERT_AT || !claim(tx, user_id, "postback_rejected", now, Some(60 * MINUTE))? {
        return Ok(());
    }
    let event = Event {
        name: "postback_rejected",
        data: json!({"count": recent, "window_minutes": REJECTED_WINDOW / MINUTE}),
        text: Msg::new("notify.postback_rejected").arg("count", recent),
    };
    emit_to(tx, core, user_id, &settings, &event, now).map(|_| ())
}

/// What a conversion event says.
pub struct Conversion<'a> {
    pub clickid: &'a str,
    pub txid: &'a str,
    pub status: &'a str,
    pub previous_status: Option<&'a str>,
    pub payout_cents: i64,
    pub link_id: i64,
    pub sub_id: &'a str,
    pub country: &'a str,
}

/// Queues the `conversion` event of a new lead or a status change.
pub fn conversion(tx: &Connection, core: &Core, user_id: i64, c: &Conversion, now: Micros) -> rusqlite::Result<()> {
    let settings = load(tx, user_id)?;
    if settings.channels_for("conversion").is_empty() {
        return Ok(());
    }
    let link_name: String = tx
        .prepare_cached("SELECT name FROM links WHERE id = ?1")?
        .query_row([c.link_id], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    let payout = money(c.payout_cents);
    let key = if c.previous_status.is_some() { "notify.conversion_changed" } else { "notify.conversion" };
    let event = Event {
        name: "conversion",
        data: json!({
            "clickid": c.clickid,
            "txid": c.txid,
            "status": c.status,
            "previous_status": c.previous_status,
            "payout": payout,
            "link": {"id": c.link_id, "name": link_name},
            "sub_id": c.sub_id,
            "country": c.country,
        }),
        text: Msg::new(key)
            .arg("status", c.status)
            .arg("payout", money_text(c.payout_cents))
            .arg("link", quoted(&link_name))
            .arg("sub_id", if c.sub_id.is_empty() { "-".to_string() } else { quoted(c.sub_id) })
            .arg("country", if c.country.is_empty() { "-" } else { c.country })
            .arg("txid", quoted(c.txid)),
    };
    emit_to(tx, core, user_id, &settings, &event, now).map(|_| ())
}

/// Scopes a stop-loss message names; more are counted.
const MAX_LISTED: usize = 20;

/// A value from a visitor (a sub_id) or a user, as a message shows it:
/// quoted, on one line, and short, so a crafted sub_id cannot pass for a
/// message of its own.
fn quoted(text: &str) -> String {
    let mut one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(40).collect();
    if text.chars().count() > 40 {
        one_line.push('…');
    }
    format!("\"{one_line}\"")
}

/// Users whose digest is due now: those with a channel wanting it, at or
/// past their hour today (in the server's offset), whose digest of
/// yesterday has not gone out. A server that was down at that hour sends
/// it when it is back.
fn digests_due(core: &Core, now: Micros) -> Result<Vec<i64>, Error> {
    let hour = i64::from(super::clicks::local_hour(now, core.utc_offset));
    let yesterday = clock::local_date(now - clock::DAY, core.utc_offset);
    core.db.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT user_id FROM notify_settings s
             WHERE digest_hour <= ?1 AND (telegram_events LIKE '%daily_digest%' OR webhook_events LIKE '%daily_digest%')
               AND NOT EXISTS (SELECT 1 FROM notify_marks m WHERE m.user_id = s.user_id AND m.key = 'digest:' || ?2)",
        )?;
        let rows = stmt.query_map(params![hour, yesterday], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
}

/// Yesterday's digest of `user_id`: clicks, conversions, revenue, cost,
/// profit, and the top three sub_ids by clicks.
fn digest(core: &Core, user_id: i64, day: &str) -> Result<Event, Error> {
    let range = super::dashboard::Range { from: Some(day.to_string()), to: Some(day.to_string()) };
    let total = super::dashboard::report(core, user_id, "day", &range, 1)?.into_iter().next().unwrap_or_default();
    let top = super::dashboard::report(core, user_id, "sub_id", &range, 3)?;
    let profit = |r: &super::dashboard::Row| r.payout_cents - super::micros_to_cents(r.cost_micros);
    let top_json: Vec<Value> = top
        .iter()
        .map(|r| {
            json!({"sub_id": r.group, "clicks": r.clicks, "conversions": r.approved_leads,
                   "revenue": money(r.payout_cents), "profit": money(profit(r))})
        })
        .collect();
    let top_text: Vec<String> = top
        .iter()
        .map(|r| {
            format!(
                "{} ({} / {} / {})",
                if r.group.is_empty() { "-" } else { &r.group },
                r.clicks,
                r.approved_leads,
                money_text(profit(r))
            )
        })
        .collect();
    let cost_cents = super::micros_to_cents(total.cost_micros);
    Ok(Event {
        name: "daily_digest",
        data: json!({
            "day": day,
            "clicks": total.clicks,
            "conversions": total.leads,
            "approved_conversions": total.approved_leads,
            "revenue": money(total.payout_cents),
            "cost": money(cost_cents),
            "profit": money(profit(&total)),
            "top_sub_ids": top_json,
        }),
        text: Msg::new("notify.digest")
            .arg("day", day)
            .arg("clicks", total.clicks)
            .arg("conversions", total.leads)
            .arg("approved", total.approved_leads)
            .arg("revenue", money_text(total.payout_cents))
            .arg("cost", money_text(cost_cents))
            .arg("profit", money_text(profit(&total)))
            .arg("top", if top_text.is_empty() { "-".to_string() } else { top_text.join(", ") }),
    })
}

/// Scopes (a link, a sub_id) of `user_id` that spent the stop-loss today
/// with no approved conversion: (dimension, value, cost in micro-units).
fn stop_losses(conn: &Connection, user_id: i64, day: &str, cents: i64) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT dim, value, cost_micros FROM rollups r
         WHERE user_id = ?1 AND dim IN ('link', 'sub_id') AND day = ?2 AND value != ''
           AND cost_micros >= ?3 AND approved_leads = 0
           AND NOT EXISTS (SELECT 1 FROM notify_marks m
                           WHERE m.user_id = ?1 AND m.key = 'stop_loss:' || r.dim || ':' || r.value || ':' || ?2)
         ORDER BY cost_micros DESC",
    )?;
    let rows =
        stmt.query_map(params![user_id, day, cents.saturating_mul(10_000)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// The minute's work of the notifier: due digests, and stop-losses
/// reached. Returns how many messages were queued.
pub fn tick(core: &Core, now: Micros) -> Result<usize, Error> {
    let mut queued = 0;
    let yesterday = clock::local_date(now - clock::DAY, core.utc_offset);
    for user_id in digests_due(core, now)? {
        let event = digest(core, user_id, &yesterday)?;
        queued += core.db.write(|tx| {
            if !claim(tx, user_id, &format!("digest:{yesterday}"), now, None)? {
                return Ok(0);
            }
            Ok(emit(tx, core, user_id, &event, now)?)
        })?;
    }
    let today = clock::local_date(now, core.utc_offset);
    let watchers: Vec<(i64, i64)> = core.db.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT user_id, stop_loss_cents FROM notify_settings
             WHERE stop_loss_cents IS NOT NULL AND (telegram_events LIKE '%stop_loss%' OR webhook_events LIKE '%stop_loss%')",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })?;
    for (user_id, cents) in watchers {
        // Scopes already alerted today are left out by the read: a quiet
        // minute costs no write.
        let reached = core.db.read(|c| Ok(stop_losses(c, user_id, &today, cents)?))?;
        if reached.is_empty() {
            continue;
        }
        queued += core.db.write(|tx| {
            let mut scopes = Vec::new();
            let mut lines = Vec::new();
            for (dim, value, cost_micros) in &reached {
                if !claim(tx, user_id, &format!("stop_loss:{dim}:{value}:{today}"), now, None)? {
                    continue;
                }
                let cost = super::micros_to_cents(*cost_micros);
                if dim == "link" {
                    let name: String = tx
                        .query_row("SELECT name FROM links WHERE id = CAST(?1 AS INTEGER)", [value], |r| r.get(0))
                        .optional()?
                        .unwrap_or_else(|| value.clone());
                    let id = value.parse::<i64>().unwrap_or(0);
                    scopes.push(json!({"scope": "link", "link": {"id": id, "name": name}, "cost": money(cost)}));
                    lines.push(format!("link {} {}", quoted(&name), money_text(cost)));
                } else {
                    scopes.push(json!({"scope": "sub_id", "sub_id": value, "cost": money(cost)}));
                    lines.push(format!("sub ID {} {}", quoted(value), money_text(cost)));
                }
            }
            if scopes.is_empty() {
                return Ok(0);
            }
            // One message for what this minute found, however many scopes.
            let more = lines.len().saturating_sub(MAX_LISTED);
            lines.truncate(MAX_LISTED);
            if more > 0 {
                lines.push(format!("+{more}"));
            }
            let event = Event {
                name: "stop_loss",
                data: json!({"day": today, "stop_loss_amount": money(cents), "scopes": scopes}),
                text: Msg::new("notify.stop_loss").arg("amount", money_text(cents)).arg("list", lines.join("\n")),
            };
            Ok(emit(tx, core, user_id, &event, now)?)
        })?;
    }
    if queued > 0 {
        core.outbox_wake.notify();
    }
    Ok(queued)
}

/// What a provider said to one send.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The HTTP status; None when no answer came.
    pub status: Option<u16>,
    pub response: String,
    /// Seconds the provider asked to wait (429).
    pub retry_after: Option<u64>,
}

impl Sent {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What came back from `host`: the status and the provider's own words,
/// with `scrub` (a bot token) never in them.
fn answer_of(host: &str, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, scrub: &str) -> Sent {
    // The token is taken out before anything is cut short, so no part of
    // it can survive at the cut.
    let clean = |text: String| -> String {
        let text = if scrub.is_empty() { text } else { text.replace(scrub, "<token>") };
        text.chars().take(300).collect()
    };
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = http_client::read_text(response.into_body(), ANSWER_BYTES);
            // Telegram says why, and how long to wait, in its JSON.
            let json: Option<Value> = serde_json::from_str(&body).ok();
            let description = json.as_ref().and_then(|j| j["description"].as_str()).map(str::to_string);
            let retry_after = json.as_ref().and_then(|j| j["parameters"]["retry_after"].as_u64());
            Sent { status: Some(status), response: clean(description.unwrap_or(body)), retry_after }
        }
        Err(e) => Sent { status: None, response: clean(format!("{host}: {e}")), retry_after: None },
    }
}

/// `POST <notify.telegram_api>/bot<token>/sendMessage` with `{chat_id, text}`.
fn send_telegram(core: &Core, token: &str, chat_id: &str, text: &str) -> Sent {
    let url = format!("{}/bot{token}/sendMessage", core.config.notify.telegram_api.trim_end_matches('/'));
    let chat: Value = chat_id.parse::<i64>().map_or_else(|_| json!(chat_id), |n| json!(n));
    let body = json!({"chat_id": chat, "text": text}).to_string();
    let result = http_client::http_agent().post(&url).header("Content-Type", "application/json").send(body.as_bytes());
    answer_of(http_client::host_of(&core.config.notify.telegram_api), result, token)
}

/// The `X-Apextrack-Signature` of `body` sent at unix second `t`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mac = crypto::hmac_sha256(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", crypto::hex(&mac))
}

/// `POST url` with the JSON body, signed at the moment of sending (so a
/// retry carries a fresh `t` a receiver accepts).
fn send_webhook(core: &Core, user_id: i64, url: &str, version: i64, body: &str) -> Sent {
    let secret = webhook_secret(core, user_id, version);
    let t = core.clock.now() / SECOND;
    let result = http_client::postback_agent(core.config.tracking.allow_private_targets)
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Apextrack-Signature", &signature(&secret, t, body))
        .send(body.as_bytes());
    answer_of(http_client::host_of(url), result, "")
}

/// Delivers the outbox's `telegram` and `webhook` items with the owner's
/// settings as they are when sent.
pub struct Courier<'a>(pub &'a Core);

impl outbox::Courier for Courier<'_> {
    fn deliver(&self, channel: &str, owner: i64, body: &str) -> Result<String, Failure> {
        let core = self.0;
        let settings =
            core.db.read(|c| Ok(load(c, owner)?)).map_err(|e| Failure::Retry(format!("settings unreadable: {e}")))?;
        let sent = match channel {
            "telegram" => {
                let Some(tg) = settings.telegram.as_ref() else {
                    return Err(Failure::Final("Telegram was turned off".into()));
                };
                let Some(token) = bot_token(core, owner, tg) else {
                    return Err(Failure::Final("the stored bot token cannot be read; save it again".into()));
                };
                send_telegram(core, &token, &tg.chat_id, body)
            }
            _ => {
                let Some(wh) = settings.webhook.as_ref() else {
                    return Err(Failure::Final("the webhook was turned off".into()));
                };
                send_webhook(core, owner, &wh.url, settings.secret_version, body)
            }
        };
        let what = match sent.status {
            Some(status) => format!("{status} {}", sent.response),
            None => sent.response.clone(),
        };
        match (channel, sent.status) {
            (_, Some(s)) if (200..300).contains(&s) => Ok(what),
            // Telegram's flood control says how long to wait.
            ("telegram", Some(429)) if sent.retry_after.is_some() => {
                let seconds = sent.retry_after.unwrap_or(1).min(3600) as Micros;
                Err(Failure::After(what, seconds.saturating_mul(SECOND)))
            }
            // Telegram's other 4xx are for good: a refused token (401), a
            // bot blocked or removed from the chat (403), no such chat (400).
            ("telegram", Some(s)) if (400..500).contains(&s) && s != 429 => Err(Failure::Final(what)),
            // A receiver that says the hook is gone.
            ("webhook", Some(410)) => Err(Failure::Final(what)),
            _ => Err(Failure::Retry(what)),
        }
    }
}

/// `POST /api/notifications/test`: a test message to every configured
/// channel, sent now (not queued), with what each provider answered.
pub fn test(core: &Core, user_id: i64) -> Result<Vec<Value>, Error> {
    let now = core.clock.now();
    let key = format!("notify-test:{user_id}");
    core.db.write_then_refuse(|tx| {
        if let Some(retry_after) = ratelimit::blocked(tx, &key, TESTS, now)? {
            let message = Msg::new("notify.too_many_tests").arg("seconds", retry_after);
            return Ok(Err(Error::TooManyRequests { message, retry_after }));
        }
        ratelimit::hit(tx, &key, TESTS, now)?;
        Ok(Ok(()))
    })?;
    let (settings, (language, _)) = core.db.read(|c| Ok((load(c, user_id)?, user_prefs(c, user_id)?)))?;
    if settings.telegram.is_none() && settings.webhook.is_none() {
        return Err(FieldErrors::single("channels", Msg::new("notify.no_channel")));
    }
    let mut results = Vec::new();
    let result = |channel: &str, sent: Sent| json!({"channel": channel, "ok": sent.ok(), "status": sent.status, "response": sent.response});
    let text = Msg::new("notify.test").render(core.lang_of(&language));
    if let Some(tg) = settings.telegram.as_ref() {
        let sent = match bot_token(core, user_id, tg) {
            Some(token) => send_telegram(core, &token, &tg.chat_id, &text),
            None => Sent {
                status: None,
                response: "the stored bot token cannot be read; save it again".into(),
                retry_after: None,
            },
        };
        results.push(result("telegram", sent));
    }
    if let Some(wh) = settings.webhook.as_ref() {
        let body = json!({"event": "test", "created_at": clock::format(now), "data": {"message": text}}).to_string();
        results.push(result("webhook", send_webhook(core, user_id, &wh.url, settings.secret_version, &body)));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_tokens_and_chat_ids_have_telegrams_shapes() {
        assert!(is_bot_token("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"));
        assert!(is_bot_token("12345:abcdefghijklmnopqrstuvwxyz_-0123"));
        for bad in [
            "",
            "abc",
            "123456789",
            ":AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "12a45:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "123456789:short",
            "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALD saw",
            "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/../x",
        ] {
            assert!(!is_bot_token(bad), "{bad}");
        }
        assert_eq!(chat_id(&json!(-1001234567890i64)).as_deref(), Some("-1001234567890"));
        assert_eq!(chat_id(&json!(" 42 ")).as_deref(), Some("42"));
        assert_eq!(chat_id(&json!("@my_channel")).as_deref(), Some("@my_channel"));
        for bad in [
            json!(""),
            json!("-"),
            json!("@ab"),
            json!("@1abcde"),
            json!("12 34"),
            json!(1.5),
            json!(true),
            json!("1'; DROP TABLE"),
        ] {
            assert_eq!(chat_id(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_signature_is_hmac_sha256_of_the_time_a_dot_and_the_body() {
        // Worked by hand: HMAC-SHA256("whsec_x", "1700000000.{}").
        let sig = signature("whsec_x", 1_700_000_000, "{}");
        let expected = crypto::hex(&crypto::hmac_sha256(b"whsec_x", b"1700000000.{}"));
        assert_eq!(sig, format!("t=1700000000,v1={expected}"));
        assert!(crypto::hmac_sha256_verify(b"whsec_x", b"1700000000.{}", sig.split("v1=").nth(1).unwrap()));
    }

    #[test]
    fn masks_keep_only_the_last_four_characters() {
        assert_eq!(mask_tail("whsec_0123456789abcdef"), "…cdef");
        assert_eq!(mask_tail("ab"), "…ab");
        assert_eq!(money_text(-1234), "-12.34");
        assert_eq!(money_text(5), "0.05");
    }
}
