//! The durable outbox: mail, SMS, source postbacks and notifications
//! queued in the same transaction as the change that caused them,
//! delivered by worker threads with retries and exponential backoff, so a
//! provider outage or a restart loses nothing.
//!
//! Two queues, each with its own worker: account messages (mail and SMS,
//! which a person is waiting for) and outgoing integrations (GETs of
//! users' source postbacks, Telegram messages and signed webhooks: URLs
//! and tokens anyone can set, so possibly slow or dead). An integration
//! that hangs never delays a verification mail; each owner has one
//! delivery under way at a time, each host one request, and up to
//! [`INTEGRATIONS_AT_ONCE`] go side by side, a slow one holding only its
//! own slot; each user has at most [`MAX_PENDING_POSTBACKS`] postbacks
//! and as many notifications waiting.
use crate::clock::{Clock, Micros, SECOND};
use crate::config::Config;
use crate::db::Db;
use crate::error::Error;
use crate::http_client;
use crate::log::Log;
use crate::mail::{self, Mail};
use rusqlite::{params, Connection, Row};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Tries before a mail is marked `failed`: backoff doubles from 5 s to an
/// hour, so this keeps trying for about a day.
pub const MAX_ATTEMPTS: u32 = 30;
const FIRST_RETRY: Micros = 5 * SECOND;
const LONGEST_RETRY: Micros = 3600 * SECOND;
/// The worker looks at the table at least this often, so rows queued or
/// retried by another process (the CLI) go out without a wake-up.
const POLL: Duration = Duration::from_secs(1);

/// Delay before try `attempts + 1`: 5 s, 10 s, 20 s, … capped at an hour.
pub fn backoff(attempts: u32) -> Micros {
    FIRST_RETRY.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(LONGEST_RETRY)
}

/// Postbacks (and, apart, notifications) a user may have waiting; more
/// are dropped (and logged) until the queue drains, so one user's dead
/// endpoint cannot fill the table.
pub const MAX_PENDING_POSTBACKS: i64 = 1000;
/// Integration deliveries under way at once, each to its own host.
const INTEGRATIONS_AT_ONCE: usize = 8;
/// Of those, the most that may be notifications (Telegram, webhooks).
const NOTIFICATION_SLOTS: usize = 6;
/// A notification still not delivered after this long (a provider that
/// keeps asking to wait, a receiver that keeps failing) is given up.
const MAX_AGE: Micros = 86_400 * SECOND;

/// The two queues and the channels each carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Mail and SMS to account holders.
    Account,
    /// GETs of users' source postback URLs, Telegram messages, webhooks.
    Integrations,
}

impl Queue {
    fn channels(self) -> &'static str {
        match self {
            Queue::Account => "('mail', 'sms')",
            Queue::Integrations => "('get', 'telegram', 'webhook')",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Queue::Account => "account",
            Queue::Integrations => "integrations",
        }
    }
}

/// Why a delivery failed, and so what the worker does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again after the usual backoff.
    Retry(String),
    /// Try again after this long, as the provider asked (Telegram's
    /// `retry_after`, a `Retry-After`); not counted as a try.
    After(String, Micros),
    /// No later try can succeed (a refused bot token, a chat that does not
    /// exist, a channel turned off): failed at once, and shown to the user.
    Final(String),
}

/// Delivers the notification channels (`telegram`, `webhook`), whose
/// settings and secrets belong to a layer above this one: whoever starts
/// the worker lends it one.
pub trait Courier: Sync {
    /// Sends `body` queued for `owner` on `channel`; Ok with what the
    /// provider answered.
    fn deliver(&self, channel: &str, owner: i64, body: &str) -> Result<String, Failure>;
}

/// Queues a notification (`telegram` or `webhook`) for `owner` inside the
/// caller's transaction. `recipient` is what the log may show (a chat id,
/// a webhook's host); the channel's current settings are read when it is
/// sent. Returns None, queuing nothing, when the owner already has
/// [`MAX_PENDING_POSTBACKS`] waiting on that channel.
pub fn enqueue_notification(
    conn: &Connection,
    owner: i64,
    channel: &str,
    recipient: &str,
    subject: &str,
    body: &str,
    now: Micros,
) -> rusqlite::Result<Option<i64>> {
    // Each channel its own allowance: a dead webhook's backlog must not
    // crowd out Telegram messages that would go through.
    let pending: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM outbox INDEXED BY outbox_owner_channel
             WHERE owner_id = ?1 AND channel = ?2 AND status = 'pending'",
        )?
        .query_row(params![owner, channel], |r| r.get(0))?;
    if pending >= MAX_PENDING_POSTBACKS {
        return Ok(None);
    }
    // A channel held back after a failure holds this one back as long:
    // it waits its turn behind the older ones instead of trying alone.
    let held: Option<Micros> = conn
        .prepare_cached(
            "SELECT max(next_attempt_at) FROM outbox INDEXED BY outbox_owner_channel
             WHERE owner_id = ?1 AND channel = ?2 AND status = 'pending' AND last_error IS NOT NULL",
        )?
        .query_row(params![owner, channel], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO outbox (channel, recipient, subject, body_text, owner_id, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![channel, recipient, subject, body, owner, held.unwrap_or(now).max(now), now])?;
    Ok(Some(conn.last_insert_rowid()))
}

/// Queues a GET of `url` (a traffic source's postback for `owner`) inside
/// the caller's transaction; delivered with the same retries as mail.
/// Returns None, queuing nothing, when the owner already has
/// [`MAX_PENDING_POSTBACKS`] waiting.
pub fn enqueue_get(conn: &Connection, owner: i64, url: &str, now: Micros) -> rusqlite::Result<Option<i64>> {
    let pending: i64 = conn
        .prepare_cached("SELECT count(*) FROM outbox WHERE owner_id = ?1 AND status = 'pending' AND channel = 'get'")?
        .query_row([owner], |r| r.get(0))?;
    if pending >= MAX_PENDING_POSTBACKS {
        return Ok(None);
    }
    conn.prepare_cached(
        "INSERT INTO outbox (channel, recipient, subject, owner_id, next_attempt_at, created_at)
         VALUES ('get', ?1, 'postback', ?2, ?3, ?3)",
    )?
    .execute(params![url, owner, now])?;
    Ok(Some(conn.last_insert_rowid()))
}

/// Queues a text message inside the caller's transaction.
pub fn enqueue_sms(conn: &Connection, to: &str, text: &str, now: Micros) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (channel, recipient, subject, body_text, next_attempt_at, created_at) VALUES ('sms', ?1, 'sms', ?2, ?3, ?3)",
    )?
    .execute(params![to, text, now])?;
    Ok(conn.last_insert_rowid())
}

/// GETs `url`; Ok with the status on 2xx, else a one-line reason.
fn get(url: &str, allow_internal: bool) -> Result<String, Failure> {
    // Errors name the host only: the URL carries the user's click data and
    // maybe a token of the traffic source.
    let host = http_client::host_of(url);
    let response = http_client::postback_agent(allow_internal)
        .get(url)
        .call()
        .map_err(|e| Failure::Retry(format!("{host}: {e}")))?;
    let status = response.status().as_u16();
    let body = http_client::read_text(response.into_body(), 200);
    if (200..300).contains(&status) {
        Ok(format!("{status} {body}"))
    } else {
        Err(Failure::Retry(format!("HTTP {status}: {body}")))
    }
}

/// Queues `mail` inside the caller's transaction.
pub fn enqueue(conn: &Connection, mail: &Mail, now: Micros) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (channel, recipient, subject, body_text, body_html, next_attempt_at, created_at)
         VALUES ('mail', ?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![mail.to, mail.subject, mail.text, mail.html, now])?;
    Ok(conn.last_insert_rowid())
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub recipient: String,
    pub subject: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Micros,
    pub last_error: Option<String>,
    pub provider_response: Option<String>,
    pub created_at: Micros,
    pub sent_at: Option<Micros>,
}

const ENTRY_COLUMNS: &str =
    "id, recipient, subject, status, attempts, next_attempt_at, last_error, provider_response, created_at, sent_at";

fn entry(r: &Row) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        recipient: r.get(1)?,
        subject: r.get(2)?,
        status: r.get(3)?,
        attempts: r.get(4)?,
        next_attempt_at: r.get(5)?,
        last_error: r.get(6)?,
        provider_response: r.get(7)?,
        created_at: r.get(8)?,
        sent_at: r.get(9)?,
    })
}

/// Entries, newest first, optionally of one status.
pub fn list(conn: &Connection, status: Option<&str>) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt =
        conn.prepare(&format!("SELECT {ENTRY_COLUMNS} FROM outbox WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC"))?;
    let rows = stmt.query_map([status], entry)?;
    rows.collect()
}

/// Puts failed mails (all of them, or those in `ids`) back in the queue
/// with a fresh set of tries, unless their bodies were already wiped.
/// Returns how many.
pub fn retry(conn: &Connection, ids: &[i64], now: Micros) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2, last_error = NULL
         WHERE status = 'failed' AND body_text != '' AND (?1 IS NULL OR id = ?1)",
    )?;
    if ids.is_empty() {
        return stmt.execute(params![None::<i64>, now]);
    }
    ids.iter().map(|id| stmt.execute(params![id, now])).sum()
}

/// Deletes delivered mail older than 30 days, wipes the bodies of mail
/// that failed more than a day ago (their codes are long dead), and
/// deletes what failed more than 30 days ago.
pub fn prune(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    let wiped = conn.execute(
        "UPDATE outbox SET body_text = '', body_html = '' WHERE id IN
             (SELECT id FROM outbox WHERE status = 'failed' AND body_text != '' AND created_at < ?1 LIMIT ?2)",
        params![now - 86_400 * SECOND, limit],
    )?;
    let room = limit - wiped as i64;
    Ok(wiped
        + conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
                 WHERE (status = 'sent' AND sent_at < ?1) OR (status = 'failed' AND created_at < ?1) LIMIT ?2)",
            params![now - 30 * 86_400 * SECOND, room],
        )?)
}

/// Wakes the workers when something was queued, instead of waiting for
/// their poll. Each worker remembers the last wake-up it saw, so none is
/// lost between its look at the table and its wait, and one worker taking
/// a wake-up does not hide it from the other.
#[derive(Debug, Default)]
pub struct Wake {
    generation: Mutex<u64>,
    cond: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cond.notify_all();
    }

    fn wait(&self, seen: &mut u64, timeout: Duration) {
        let guard = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, _) =
            self.cond.wait_timeout_while(guard, timeout, |g| *g == *seen).unwrap_or_else(|e| e.into_inner());
        *seen = *generation;
    }
}

/// What the worker threads need: the database, the configuration (for
/// the providers), the clock, the log, the wake-up, and who delivers the
/// notification channels.
pub struct Worker<'a> {
    pub db: &'a Db,
    pub config: &'a Config,
    pub clock: &'a Clock,
    pub log: &'a Log,
    pub wake: &'a Wake,
    pub courier: Box<dyn Courier + 'a>,
}

/// What is full among the integrations' deliveries under way.
#[derive(Debug, Default, Clone, Copy)]
struct Filled {
    telegram: bool,
    notifications: bool,
}

/// A delivery of the integrations' worker, under way or just done.
struct Slot {
    id: i64,
    owner: i64,
    host: String,
    notification: bool,
    /// The count of finished deliveries when this one finished.
    done: Option<u64>,
}

/// Marks its slot done when its delivery thread ends, panic or not, and
/// wakes the worker to fill it.
struct Release<'a> {
    slots: &'a Mutex<Vec<Slot>>,
    finished: &'a AtomicU64,
    wake: &'a Wake,
    id: i64,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let count = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.iter_mut().find(|s| s.id == self.id) {
            slot.done = Some(count);
        }
        drop(slots);
        self.wake.notify();
    }
}

struct Due {
    id: i64,
    channel: String,
    owner: i64,
    created_at: Micros,
    attempts: u32,
    mail: Mail,
}

impl Worker<'_> {
    /// Items due on `queue`, leaving out the kinds of `busy` owners, and
    /// what could not start anyway: Telegram messages while one is under
    /// way (one host), notifications while their slots are full. So a
    /// backlog that cannot move does not fill the list and hide the rest.
    fn due(&self, queue: Queue, now: Micros, busy: &[String], filled: Filled) -> Result<Vec<Due>, Error> {
        let sql = match queue {
            Queue::Account => {
                "SELECT id, attempts, recipient, subject, body_text, body_html, channel, owner_id, created_at FROM outbox
                 WHERE status = 'pending' AND next_attempt_at <= ?1 AND channel IN ('mail', 'sms')
                   AND ?2 = ?2 AND ?3 = ?3 AND ?4 = ?4
                 ORDER BY id LIMIT 50"
            }
            // Owners take turns: only the oldest due postback and the oldest
            // due notification of each owner not already being served are
            // offered, so one user's thousand postbacks to a dead host hold
            // one slot, not the whole queue, and a user's postbacks never
            // wait behind their own Telegram messages. `?2` lists the busy
            // as "owner:1" (postbacks) and "owner:0" (notifications).
            Queue::Integrations => {
                "SELECT id, attempts, recipient, subject, body_text, body_html, channel, owner_id, created_at FROM outbox
                 WHERE id IN (SELECT min(id) FROM outbox
                              WHERE status = 'pending' AND next_attempt_at <= ?1
                                AND channel IN ('get', 'telegram', 'webhook')
                                AND owner_id || ':' || (channel = 'get') NOT IN (SELECT value FROM json_each(?2))
                                AND NOT (?3 AND channel = 'telegram') AND NOT (?4 AND channel != 'get')
                              GROUP BY owner_id, channel = 'get')
                 ORDER BY id LIMIT 1000"
            }
        };
        let busy = serde_json::to_string(busy).unwrap_or_else(|_| "[]".into());
        self.db.read(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(params![now, busy, filled.telegram, filled.notifications], |r| {
                Ok(Due {
                    id: r.get(0)?,
                    channel: r.get(6)?,
                    owner: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                    attempts: r.get(1)?,
                    created_at: r.get(8)?,
                    mail: Mail { to: r.get(2)?, subject: r.get(3)?, text: r.get(4)?, html: r.get(5)? },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Sends what is due on the account queue, one after another. Returns
    /// how many were delivered.
    pub fn deliver_due(&self, stop: &AtomicBool) -> Result<usize, Error> {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = self.due(Queue::Account, self.clock.now(), &[], Filled::default())?;
            if due.is_empty() {
                break;
            }
            sent += due.iter().take_while(|_| !stop.load(Ordering::Relaxed)).filter(|d| self.send(d, stop)).count();
        }
        Ok(sent)
    }

    /// The integrations' worker: up to [`INTEGRATIONS_AT_ONCE`] deliveries
    /// side by side, one per owner and one per host (all Telegram messages
    /// go to one host), at most [`NOTIFICATION_SLOTS`] of them
    /// notifications so source postbacks always have room. A new one
    /// starts as soon as a slot is free, so a webhook that takes its full
    /// time-out holds its own slot only. Until `stop`; deliveries under way
    /// are finished and recorded.
    fn run_integrations(&self, stop: &AtomicBool) {
        let slots: Mutex<Vec<Slot>> = Mutex::new(Vec::new());
        let lock = || slots.lock().unwrap_or_else(|e| e.into_inner());
        // Counts finished deliveries; a slot stays (its item skipped) until a
        // look at the table that began after its outcome was written.
        let finished = AtomicU64::new(0);
        let telegram_host = http_client::authority_of(&self.config.notify.telegram_api).to_ascii_lowercase();
        let mut seen = 0;
        std::thread::scope(|scope| {
            while !stop.load(Ordering::Relaxed) {
                let now = self.clock.now();
                let looked_at = finished.load(Ordering::SeqCst);
                let busy: Vec<String> = lock()
                    .iter()
                    .filter(|s| s.done.is_none())
                    .map(|s| format!("{}:{}", s.owner, u8::from(!s.notification)))
                    .collect();
                if busy.len() >= INTEGRATIONS_AT_ONCE {
                    // Every slot taken: nothing could start; wait for one.
                    self.wake.wait(&mut seen, POLL);
                    continue;
                }
                let filled = {
                    let held = lock();
                    let running = || held.iter().filter(|s| s.done.is_none());
                    Filled {
                        telegram: running().any(|s| s.host == telegram_host),
                        notifications: running().filter(|s| s.notification).count() >= NOTIFICATION_SLOTS,
                    }
                };
                let due = self.due(Queue::Integrations, now, &busy, filled);
                lock().retain(|s| s.done.is_none_or(|done| done > looked_at));
                let mut started = 0;
                match due {
                    Ok(due) => {
                        for item in due {
                            let host = match item.channel.as_str() {
                                "telegram" => telegram_host.clone(),
                                _ => http_client::authority_of(&item.mail.to).to_ascii_lowercase(),
                            };
                            let notification = item.channel != "get";
                            let mut held = lock();
                            let running: Vec<&Slot> = held.iter().filter(|s| s.done.is_none()).collect();
                            if running.len() >= INTEGRATIONS_AT_ONCE {
                                break;
                            }
                            let taken =
                                |s: &&Slot| (s.owner == item.owner && s.notification == notification) || s.host == host;
                            if held.iter().any(|s| s.id == item.id)
                                || running.iter().any(taken)
                                || notification
                                    && running.iter().filter(|s| s.notification).count() >= NOTIFICATION_SLOTS
                            {
                                continue;
                            }
                            held.push(Slot { id: item.id, owner: item.owner, host, notification, done: None });
                            drop(held);
                            started += 1;
                            let release = Release { slots: &slots, finished: &finished, wake: self.wake, id: item.id };
                            scope.spawn(move || {
                                let _release = release;
                                self.send(&item, stop);
                            });
                        }
                    }
                    Err(e) => self.log.line(format!("warning: outbox (integrations): {e}")),
                }
                if started > 0 {
                    continue;
                }
                // Nothing new could start: wait for a slot to free, a new
                // item, the next retry, or the poll.
                self.wake.wait(&mut seen, self.until_next(Queue::Integrations, now));
            }
        });
    }

    /// How long until the next retry on `queue` after `now` is due: at
    /// most [`POLL`], so rows queued by another process go out too.
    fn until_next(&self, queue: Queue, now: Micros) -> Duration {
        let sql = format!(
            "SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending' AND next_attempt_at > ?1 AND channel IN {}",
            queue.channels()
        );
        let next: Option<Micros> =
            self.db.read(|c| Ok(c.prepare_cached(&sql)?.query_row([now], |r| r.get(0))?)).unwrap_or(None);
        next.map_or(POLL, |at| {
            Duration::from_micros((at - self.clock.now()).clamp(1000, POLL.as_micros() as i64) as u64)
        })
    }

    /// Sends one item and records the outcome; true when delivered.
    fn send(&self, item: &Due, stop: &AtomicBool) -> bool {
        let key = format!("apextrack-outbox-{}", item.id);
        let attempt = || match item.channel.as_str() {
            "get" => get(&item.mail.to, self.config.tracking.allow_private_targets),
            "telegram" | "webhook" => self.courier.deliver(&item.channel, item.owner, &item.mail.text),
            "sms" => crate::sms::send(&self.config.sms, self.log, &item.mail.to, &item.mail.text, &key)
                .map_err(Failure::Retry),
            _ => mail::send(&self.config.mail, self.log, &item.mail, &key)
                .map(|delivery| format!("{} {}", delivery.status, delivery.response))
                .map_err(Failure::Retry),
        };
        // A bug met while sending is a failed try like any other, with its
        // back-off, not a hot loop of the same item.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt))
            .unwrap_or_else(|_| Err(Failure::Retry("internal error while sending (see the server log)".into())));
        let now = self.clock.now();
        let attempts = item.attempts + 1;
        match outcome {
            Ok(response) => {
                // Delivered: the body (with its code) is no longer needed.
                self.record(stop, |tx| {
                    tx.execute(
                        "UPDATE outbox SET status = 'sent', attempts = ?2, sent_at = ?3, provider_response = ?4,
                             last_error = NULL, body_text = '', body_html = '' WHERE id = ?1",
                        params![item.id, attempts, now, response],
                    )
                });
                true
            }
            Err(failure) => {
                let notification = matches!(item.channel.as_str(), "telegram" | "webhook");
                let stale = now - item.created_at >= MAX_AGE;
                let (status, attempts, next, reason) = match failure {
                    // A notification a day old is news no more: given up,
                    // with every other one that old on its channel (below).
                    Failure::Retry(reason) if attempts < MAX_ATTEMPTS && !(notification && stale) => {
                        ("pending", attempts, now + backoff(attempts), reason)
                    }
                    Failure::After(reason, wait) if now - item.created_at < MAX_AGE => {
                        ("pending", item.attempts, now + wait.clamp(SECOND, LONGEST_RETRY), reason)
                    }
                    Failure::Retry(reason) | Failure::After(reason, _) | Failure::Final(reason) => {
                        ("failed", attempts, now, reason)
                    }
                };
                self.log.line(format!(
                    "warning: outbox {} ({}) to {} not delivered (try {attempts}/{MAX_ATTEMPTS}, now {status}): {reason}",
                    item.id,
                    item.channel,
                    loggable_recipient(&item.channel, &item.mail.to)
                ));
                self.record(stop, |tx| {
                    let n = tx.execute(
                        "UPDATE outbox SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5
                         WHERE id = ?1",
                        params![item.id, status, attempts, next, reason],
                    )?;
                    // A channel that failed is failing for the owner's other
                    // messages too: they wait as long, instead of each taking
                    // a slot to find out.
                    if notification && status == "pending" {
                        tx.execute(
                            "UPDATE outbox SET next_attempt_at = max(next_attempt_at, ?4)
                             WHERE owner_id = ?2 AND channel = ?3 AND status = 'pending' AND id != ?1",
                            params![item.id, item.owner, item.channel, next],
                        )?;
                    }
                    // Given up: so is every message of the channel as old,
                    // rather than each waiting its own day of tries.
                    if notification && status == "failed" {
                        tx.execute(
                            "UPDATE outbox SET status = 'failed', last_error = ?5
                             WHERE owner_id = ?2 AND channel = ?3 AND status = 'pending' AND created_at <= ?4",
                            params![item.id, item.owner, item.channel, now - MAX_AGE, reason],
                        )?;
                    }
                    Ok(n)
                });
                false
            }
        }
    }

    /// Writes the outcome of a send, retrying while the database is busy: a
    /// lost "sent" would send the mail again, a lost failure would retry it
    /// without backoff. Gives up only when the server stops (the mail is then
    /// sent again on the next start: delivery is at least once).
    fn record(&self, stop: &AtomicBool, write: impl Fn(&Connection) -> rusqlite::Result<usize>) {
        loop {
            match self.db.write(|tx| Ok(write(tx)?)) {
                Ok(_) => return,
                Err(e) => {
                    self.log.line(format!("warning: outbox: cannot record a delivery yet: {e}"));
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// The worker loop of `queue`: deliver what is due, then sleep until the
    /// next retry is due, something is queued, or a second passes; until `stop`.
    pub fn run(&self, queue: Queue, stop: &AtomicBool) {
        if queue == Queue::Integrations {
            return self.run_integrations(stop);
        }
        let mut seen = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.deliver_due(stop) {
                self.log.line(format!("warning: outbox ({}): {e}", queue.name()));
                self.wake.wait(&mut seen, POLL);
                continue;
            }
            // All that was due went out (or was put off): sleep until the next.
            self.wake.wait(&mut seen, self.until_next(queue, self.clock.now()));
        }
    }
}

/// A postback URL carries the user's click data: the log names its host only.
fn loggable_recipient<'a>(channel: &str, to: &'a str) -> &'a str {
    if channel == "get" {
        http_client::host_of(to)
    } else {
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_an_hour() {
        let secs: Vec<i64> = (1..=11).map(|a| backoff(a) / SECOND).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
        let total: i64 = (1..MAX_ATTEMPTS).map(backoff).sum();
        assert!((20 * 3600..30 * 3600).contains(&(total / SECOND)), "{total}");
        assert_eq!(backoff(u32::MAX), LONGEST_RETRY);
    }
}
