//! The durable outbox: mail queued in the same transaction as the change
//! that caused it, delivered by one worker thread with retries and
//! exponential backoff, so a provider outage or a restart loses nothing.

use crate::app::App;
use crate::clock::{Micros, SECOND};
use crate::error::Error;
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

/// Queues a GET of `url` (a traffic source's postback) inside the caller's
/// transaction; delivered like mail, with the same retries.
pub fn enqueue_get(conn: &Connection, url: &str, now: Micros) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (channel, recipient, subject, next_attempt_at, created_at) VALUES ('get', ?1, 'postback', ?2, ?2)",
    )?
    .execute(params![url, now])?;
    Ok(conn.last_insert_rowid())
}

/// Queues a text message inside the caller's transaction.
pub fn enqueue_sms(conn: &Connection, to: &str, text: &str, now: Micros) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbox (channel, recipient, subject, body_text, next_attempt_at, created_at) VALUES ('sms', ?1, 'sms', ?2, ?3, ?3)",
    )?
    .execute(params![to, text, now])?;
    Ok(conn.last_insert_rowid())
}

/// The one HTTP client for everything sent out: a timeout, non-2xx as a
/// value rather than an error, and no pooled connections (deliveries are
/// occasional, and a pooled connection the far end dropped would hang).
pub fn http_agent() -> &'static ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            // A redirect could lead a postback into a private network.
            .max_redirects(0)
            .user_agent(concat!("apextrack/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    })
}

/// Whether `ip` is on this machine or a private network: the addresses a
/// user's postback URL must not make the server call.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]) // carrier-grade NAT
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(std::net::IpAddr::V4(v4)))
        }
    }
}

/// Refuses a URL whose host resolves to an internal address.
fn check_target(url: &str) -> Result<(), String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if url.starts_with("https://") { 443 } else { 80 };
    let has_port = if authority.starts_with('[') { authority.contains("]:") } else { authority.contains(':') };
    let target = if has_port { authority.to_string() } else { format!("{authority}:{default_port}") };
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = target.to_socket_addrs().map_err(|e| format!("{url}: cannot resolve: {e}"))?.collect();
    if addrs.iter().any(|a| is_internal(a.ip())) {
        return Err(format!("{url}: refused, it points into a private network (tracking.allow_private_targets)"));
    }
    Ok(())
}

/// GETs `url`; Ok with the status on 2xx, else a one-line reason.
fn get(url: &str, allow_internal: bool) -> Result<String, String> {
    if !allow_internal {
        check_target(url)?;
    }
    let response = http_agent().get(url).call().map_err(|e| format!("{url}: {e}"))?;
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
pub fn prune(conn: &Connection, now: Micros) -> rusqlite::Result<usize> {
    let wiped = conn.execute(
        "UPDATE outbox SET body_text = '', body_html = '' WHERE status = 'failed' AND body_text != '' AND created_at < ?1",
        [now - 86_400 * SECOND],
    )?;
    Ok(wiped
        + conn.execute("DELETE FROM outbox WHERE status = 'sent' AND sent_at < ?1", [now - 30 * 86_400 * SECOND])?)
}

/// Wakes the worker when something was queued, instead of waiting for its poll.
#[derive(Debug, Default)]
pub struct Wake {
    pending: Mutex<bool>,
    cond: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut pending, _) = self.cond.wait_timeout_while(guard, timeout, |p| !*p).unwrap_or_else(|e| e.into_inner());
        *pending = false;
    }
}

struct Due {
    id: i64,
    channel: String,
    attempts: u32,
    mail: Mail,
}

/// Sends every mail that is due, one at a time. Returns how many were sent.
pub fn deliver_due(app: &App, stop: &AtomicBool) -> Result<usize, Error> {
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = app.clock.now();
        let due: Vec<Due> = app.db.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, attempts, recipient, subject, body_text, body_html, channel FROM outbox
                 WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY id LIMIT 20",
            )?;
            let rows = stmt.query_map([now], |r| {
                Ok(Due {
                    id: r.get(0)?,
                    channel: r.get(6)?,
                    attempts: r.get(1)?,
                    mail: Mail { to: r.get(2)?, subject: r.get(3)?, text: r.get(4)?, html: r.get(5)? },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        if due.is_empty() {
            break;
        }
        for item in due {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let key = format!("apextrack-outbox-{}", item.id);
            let outcome = match item.channel.as_str() {
                "get" => get(&item.mail.to, app.config.tracking.allow_private_targets),
                "sms" => crate::sms::send(&app.config.sms, &app.log, &item.mail.to, &item.mail.text, &key),
                _ => mail::send(&app.config.mail, &app.log, &item.mail, &key)
                    .map(|delivery| format!("{} {}", delivery.status, delivery.response)),
            };
            let now = app.clock.now();
            let attempts = item.attempts + 1;
            match outcome {
                Ok(response) => {
                    sent += 1;
                    // Delivered: the body (with its code) is no longer needed.
                    record(app, stop, |tx| {
                        tx.execute(
                            "UPDATE outbox SET status = 'sent', attempts = ?2, sent_at = ?3, provider_response = ?4,
                                 last_error = NULL, body_text = '', body_html = '' WHERE id = ?1",
                            params![item.id, attempts, now, response],
                        )
                    });
                }
                Err(reason) => {
                    let status = if attempts >= MAX_ATTEMPTS { "failed" } else { "pending" };
                    app.log.line(format!(
                        "warning: outbox {} to {} not delivered (try {attempts}/{MAX_ATTEMPTS}): {reason}",
                        item.id, item.mail.to
                    ));
                    record(app, stop, |tx| {
                        tx.execute(
                            "UPDATE outbox SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5
                             WHERE id = ?1",
                            params![item.id, status, attempts, now + backoff(attempts), reason],
                        )
                    });
                }
            }
        }
    }
    Ok(sent)
}

/// Writes the outcome of a send, retrying while the database is busy: a
/// lost "sent" would send the mail again, a lost failure would retry it
/// without backoff. Gives up only when the server stops (the mail is then
/// sent again on the next start: delivery is at least once).
fn record(app: &App, stop: &AtomicBool, write: impl Fn(&Connection) -> rusqlite::Result<usize>) {
    loop {
        match app.db.write(|tx| Ok(write(tx)?)) {
            Ok(_) => return,
            Err(e) => {
                app.log.line(format!("warning: outbox: cannot record a delivery yet: {e}"));
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// The worker loop: deliver what is due, then sleep until the next retry
/// is due, something is queued, or a second passes; until `stop`.
pub fn run(app: &App, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = deliver_due(app, stop) {
            app.log.line(format!("warning: outbox: {e}"));
            app.outbox_wake.wait(POLL);
            continue;
        }
        let next: Option<Micros> = app
            .db
            .read(|c| {
                Ok(c.query_row("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'", [], |r| r.get(0))?)
            })
            .unwrap_or(None);
        let wait = next
            .map_or(POLL, |at| Duration::from_micros((at - app.clock.now()).clamp(0, POLL.as_micros() as i64) as u64));
        if !wait.is_zero() {
            app.outbox_wake.wait(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.7", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
        assert!(check_target("http://127.0.0.1:9/x").unwrap_err().contains("private network"));
        assert!(check_target("http://user@[::1]/x").unwrap_err().contains("private network"));
    }

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_an_hour() {
        let secs: Vec<i64> = (1..=11).map(|a| backoff(a) / SECOND).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
        let total: i64 = (1..MAX_ATTEMPTS).map(backoff).sum();
        assert!((20 * 3600..30 * 3600).contains(&(total / SECOND)), "{total}");
        assert_eq!(backoff(u32::MAX), LONGEST_RETRY);
    }
}
