//! The durable outbox: mail, SMS and source postbacks queued in the same
//! transaction as the change that caused them, delivered by worker threads
//! with retries and exponential backoff, so a provider outage or a restart
//! loses nothing.
//!
//! Two queues, each with its own worker: account messages (mail and SMS,
//! which a person is waiting for) and postbacks to users' traffic sources
//! (URLs anyone can set, so possibly slow or dead). A postback that hangs
//! never delays a verification mail, postbacks to one host go one at a
//! time while other hosts are served beside them, and each user has at
//! most [`MAX_PENDING_POSTBACKS`] waiting.

use crate::clock::{Clock, Micros, SECOND};
use crate::config::Config;
use crate::db::Db;
use crate::error::Error;
use crate::http_client;
use crate::log::Log;
use crate::mail::{self, Mail};
use rusqlite::{params, Connection, Row};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Postbacks a user may have waiting; more are dropped (and logged) until
/// the queue drains, so one user's dead endpoint cannot fill the table.
pub const MAX_PENDING_POSTBACKS: i64 = 1000;
/// Hosts served at once by the postback worker, one request each.
const POSTBACK_HOSTS_AT_ONCE: usize = 8;

/// The two queues and the channels each carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Mail and SMS to account holders.
    Account,
    /// GETs of users' source postback URLs.
    Postbacks,
}

impl Queue {
    fn channels(self) -> &'static str {
        match self {
            Queue::Account => "('mail', 'sms')",
            Queue::Postbacks => "('get')",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Queue::Account => "account",
            Queue::Postbacks => "postbacks",
        }
    }
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
fn get(url: &str, allow_internal: bool) -> Result<String, String> {
    // Errors name the host only: the URL carries the user's click data and
    // maybe a token of the traffic source.
    let host = http_client::host_of(url);
    let response = http_client::postback_agent(allow_internal).get(url).call().map_err(|e| format!("{host}: {e}"))?;
    let status = response.status().as_u16();
    let body: String = response.into_body().read_to_string().unwrap_or_default().chars().take(200).collect();
    if (200..300).contains(&status) {
        Ok(format!("{status} {body}"))
    } else {
        Err(format!("HTTP {status}: {body}"))
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

/// Deletes delivered mail older than 30 days, and wipes the bodies of
/// mail that failed more than a day ago: their codes are long dead.
pub fn prune(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    let wiped = conn.execute(
        "UPDATE outbox SET body_text = '', body_html = '' WHERE id IN
             (SELECT id FROM outbox WHERE status = 'failed' AND body_text != '' AND created_at < ?1 LIMIT ?2)",
        params![now - 86_400 * SECOND, limit],
    )?;
    let room = limit - wiped as i64;
    Ok(wiped
        + conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status = 'sent' AND sent_at < ?1 LIMIT ?2)",
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
/// the providers), the clock, the log and the wake-up.
pub struct Worker<'a> {
    pub db: &'a Db,
    pub config: &'a Config,
    pub clock: &'a Clock,
    pub log: &'a Log,
    pub wake: &'a Wake,
}

struct Due {
    id: i64,
    channel: String,
    attempts: u32,
    mail: Mail,
}

impl Worker<'_> {
    fn due(&self, queue: Queue, now: Micros) -> Result<Vec<Due>, Error> {
        let sql = match queue {
            Queue::Account => {
                "SELECT id, attempts, recipient, subject, body_text, body_html, channel FROM outbox
                 WHERE status = 'pending' AND next_attempt_at <= ?1 AND channel IN ('mail', 'sms') ORDER BY id LIMIT 50"
            }
            // Owners take turns: each round sends the oldest due postback of
            // each owner, so one user's thousand postbacks to a dead host
            // hold one slot a round, not the whole queue.
            Queue::Postbacks => {
                "SELECT id, attempts, recipient, subject, body_text, body_html, channel FROM outbox
                 WHERE id IN (SELECT min(id) FROM outbox
                              WHERE status = 'pending' AND next_attempt_at <= ?1 AND channel = 'get' GROUP BY owner_id)
                 ORDER BY id LIMIT 50"
            }
        };
        self.db.read(|c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map([now], |r| {
                Ok(Due {
                    id: r.get(0)?,
                    channel: r.get(6)?,
                    attempts: r.get(1)?,
                    mail: Mail { to: r.get(2)?, subject: r.get(3)?, text: r.get(4)?, html: r.get(5)? },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Sends what is due on `queue`. Returns how many were delivered.
    pub fn deliver_due(&self, queue: Queue, stop: &AtomicBool) -> Result<usize, Error> {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = self.due(queue, self.clock.now())?;
            if due.is_empty() {
                break;
            }
            sent += match queue {
                Queue::Account => {
                    due.iter().take_while(|_| !stop.load(Ordering::Relaxed)).filter(|d| self.send(d, stop)).count()
                }
                Queue::Postbacks => self.send_by_host(due, stop),
            };
        }
        Ok(sent)
    }

    /// Postbacks: at most one request per host (and port) at a time, up to
    /// [`POSTBACK_HOSTS_AT_ONCE`] hosts side by side; a host's later
    /// postbacks wait for the next round.
    fn send_by_host(&self, due: Vec<Due>, stop: &AtomicBool) -> usize {
        let mut hosts: Vec<(String, Due)> = Vec::new();
        for item in due {
            let host = http_client::authority_of(&item.mail.to).to_ascii_lowercase();
            if hosts.len() < POSTBACK_HOSTS_AT_ONCE && !hosts.iter().any(|(h, _)| *h == host) {
                hosts.push((host, item));
            }
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = hosts.iter().map(|(_, item)| scope.spawn(|| self.send(item, stop))).collect();
            running.into_iter().map(|t| t.join()).filter(|sent| matches!(sent, Ok(true))).count()
        })
    }

    /// Sends one item and records the outcome; true when delivered.
    fn send(&self, item: &Due, stop: &AtomicBool) -> bool {
        let key = format!("apextrack-outbox-{}", item.id);
        let outcome = match item.channel.as_str() {
            "get" => get(&item.mail.to, self.config.tracking.allow_private_targets),
            "sms" => crate::sms::send(&self.config.sms, self.log, &item.mail.to, &item.mail.text, &key),
            _ => mail::send(&self.config.mail, self.log, &item.mail, &key)
                .map(|delivery| format!("{} {}", delivery.status, delivery.response)),
        };
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
            Err(reason) => {
                let status = if attempts >= MAX_ATTEMPTS { "failed" } else { "pending" };
                self.log.line(format!(
                    "warning: outbox {} to {} not delivered (try {attempts}/{MAX_ATTEMPTS}): {reason}",
                    item.id,
                    loggable_recipient(&item.channel, &item.mail.to)
                ));
                self.record(stop, |tx| {
                    tx.execute(
                        "UPDATE outbox SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5
                         WHERE id = ?1",
                        params![item.id, status, attempts, now + backoff(attempts), reason],
                    )
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
        let next_sql = format!(
            "SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending' AND channel IN {}",
            queue.channels()
        );
        let mut seen = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.deliver_due(queue, stop) {
                self.log.line(format!("warning: outbox ({}): {e}", queue.name()));
                self.wake.wait(&mut seen, POLL);
                continue;
            }
            let next: Option<Micros> = self.db.read(|c| Ok(c.query_row(&next_sql, [], |r| r.get(0))?)).unwrap_or(None);
            let wait = next.map_or(POLL, |at| {
                Duration::from_micros((at - self.clock.now()).clamp(0, POLL.as_micros() as i64) as u64)
            });
            if !wait.is_zero() {
                self.wake.wait(&mut seen, wait);
            }
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
