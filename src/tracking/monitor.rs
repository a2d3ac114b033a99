//! Offer monitoring (SPEC §13): every `monitor.interval_minutes` each
//! active offer of an active link gets a GET (macros filled with
//! placeholders, 10 s in all, at most 64 KiB read). Two failures in a row
//! (no connection, 5xx, 404, 410) mark it `down` and alert its owner; its
//! first success after that marks it `up` again and says so. With
//! `monitor.auto_pause` a down offer leaves the rotation until then
//! (`routing::Routing::pause_down`, applied where the click path loads a link).

use super::notify::{self, Event};
use crate::base::Core;
use crate::clock::Micros;
use crate::error::Error;
use crate::http_client;
use crate::i18n::Msg;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Failures in a row that make an offer down.
pub const FAILURES_FOR_DOWN: i64 = 2;
/// Most of a page read.
const MAX_READ: u64 = 64 * 1024;
/// Hosts checked side by side (one request at a time per host).
const AT_ONCE: usize = 8;
/// Distinct URLs of one user checked per run, those checked longest ago
/// first: a user with thousands of offers cannot turn the server into a
/// crawler, and the rest are checked on later runs.
pub const MAX_URLS_PER_USER: usize = 100;
/// Offers' rows written per transaction.
const WRITE_BATCH: usize = 500;

struct Offer {
    id: i64,
    name: String,
    /// Its URL as checked ([`probe_url`]).
    probe: String,
    link_id: i64,
    link_name: String,
    user_id: i64,
}

/// What one check found: None when the page answered, else why not.
type Outcome = Option<String>;

/// What a run did: offers checked, and those that went down or came back.
#[derive(Debug, Default)]
pub struct Summary {
    pub checked: usize,
    pub urls: usize,
    pub down: Vec<Value>,
    pub up: Vec<Value>,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        json!({"checked": self.checked, "urls": self.urls, "down": self.down, "up": self.up})
    }
}

/// An offer URL with its macros filled with placeholders, as a visitor's
/// would be.
pub fn probe_url(url: &str) -> String {
    super::clicks::fill(url, |name| {
        let placeholder = match name {
            "country" => "US",
            "device" => "desktop",
            "os" => "windows",
            "payout" | "cost" => "0",
            _ if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                "apextrack-monitor"
            }
            _ => return None,
        };
        Some(Cow::Borrowed(placeholder))
    })
}

/// Whether `url` is on its scheme's own port (80 for http, 443 for https):
/// offers are web pages, and checking other ports would let the monitor
/// probe any service on the internet.
fn on_web_port(url: &str) -> bool {
    let authority = http_client::authority_of(url);
    let port = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").map(|(_, port)| port),
        None => authority.rsplit_once(':').map(|(_, port)| port),
    };
    match port {
        None => true,
        Some(p) => (url.starts_with("http://") && p == "80") || (url.starts_with("https://") && p == "443"),
    }
}

/// GETs one page: None when it answered (anything but 5xx, 404, 410),
/// else a short reason naming the host.
pub fn check(url: &str, allow_private: bool) -> Outcome {
    let host = http_client::host_of(url).to_string();
    match http_client::monitor_agent(allow_private).get(url).call() {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read (at most 64 KiB of) the page, as a browser would start to.
            let _ = http_client::read_text(response.into_body(), MAX_READ);
            (status >= 500 || status == 404 || status == 410).then(|| format!("{host}: HTTP {status}"))
        }
        Err(e) => {
            let text = e.to_string();
            // Only the kind of failure: the page's owner needs no more, and
            // no more should come back from a server probing on a user's say.
            let why = if text.contains("private network") {
                "refused, it points into a private network (monitor.allow_private)"
            } else if text.contains("only ports 80") {
                "refused, it leads to a port other than 80 and 443"
            } else if matches!(e, ureq::Error::Timeout(_)) || text.contains("timed out") {
                "no answer in time"
            } else if text.contains("resolve") || text.contains("lookup") || text.contains("Name or service") {
                "the name does not resolve"
            } else {
                "no connection"
            };
            Some(format!("{host}: {why}"))
        }
    }
}

/// Active offers of active links, each user's least recently checked first.
fn offers(conn: &Connection) -> rusqlite::Result<Vec<Offer>> {
    let mut stmt = conn.prepare(
        "SELECT d.id, d.name, d.url, l.id, l.name, l.user_id
         FROM destinations d JOIN links l ON l.id = d.link_id
         WHERE d.kind = 'offer' AND d.status = 'active' AND l.status = 'active'
         ORDER BY l.user_id, coalesce(d.monitor_checked_at, 0), d.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Offer {
            id: r.get(0)?,
            name: r.get(1)?,
            probe: probe_url(&r.get::<_, String>(2)?),
            link_id: r.get(3)?,
            link_name: r.get(4)?,
            user_id: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// Checks active offers now (each distinct URL once, one request at a time
/// per host, [`AT_ONCE`] hosts side by side, at most
/// [`MAX_URLS_PER_USER`] URLs of a user); records what it found and queues
/// the alerts of offers that went down or came back. Stops starting
/// checks when `stop` is set; what was checked is still recorded.
pub fn run_once(core: &Core, stop: &AtomicBool) -> Result<Summary, Error> {
    let allow_private = core.config.monitor.allow_private;
    let mut offers = core.db.read(|c| Ok(offers(c)?))?;
    // Each user's first MAX_URLS_PER_USER distinct URLs (the rest wait for
    // a later run), grouped by host; each URL once, whoever's offers use it.
    let mut per_user: HashMap<i64, HashSet<String>> = HashMap::new();
    let mut by_host: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut skipped = Vec::new();
    offers.retain(|o| {
        if !allow_private && !on_web_port(&o.probe) {
            skipped.push(o.id);
            return false;
        }
        let urls = per_user.entry(o.user_id).or_default();
        if !urls.contains(&o.probe) {
            if urls.len() >= MAX_URLS_PER_USER {
                return false;
            }
            urls.insert(o.probe.clone());
        }
        by_host.entry(http_client::authority_of(&o.probe).to_ascii_lowercase()).or_default().insert(o.probe.clone());
        true
    });
    let hosts: Vec<BTreeSet<String>> = by_host.into_values().collect();
    let urls: usize = hosts.iter().map(BTreeSet::len).sum();
    let mut by_url: HashMap<&str, Vec<&Offer>> = HashMap::new();
    for offer in &offers {
        by_url.entry(&offer.probe).or_default().push(offer);
    }
    let mut summary = Summary { checked: 0, urls, ..Summary::default() };
    let (found, results) = std::sync::mpsc::channel::<(String, Outcome)>();
    let next = AtomicUsize::new(0);
    // Set when results can no longer be written: the checks stop too.
    let halt = AtomicBool::new(false);
    // Results are written as they come, a batch at a time, so a long run
    // (a host of many slow pages) does not hold back what is known.
    let written: Result<(), Error> = std::thread::scope(|scope| {
        for _ in 0..AT_ONCE.min(hosts.len()) {
            let found = found.clone();
            let (hosts, next, halt) = (&hosts, &next, &halt);
            scope.spawn(move || loop {
                let Some(group) = hosts.get(next.fetch_add(1, Ordering::Relaxed)) else { return };
                for url in group {
                    if stop.load(Ordering::Relaxed) || halt.load(Ordering::Relaxed) {
                        return;
                    }
                    if found.send((url.clone(), check(url, allow_private))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(found);
        let mut batch: Vec<(String, Outcome)> = Vec::new();
        let mut last_write = std::time::Instant::now();
        loop {
            let received = results.recv_timeout(std::time::Duration::from_secs(2));
            let finished = matches!(received, Err(std::sync::mpsc::RecvTimeoutError::Disconnected));
            let quiet = matches!(received, Err(std::sync::mpsc::RecvTimeoutError::Timeout));
            if let Ok(result) = received {
                batch.push(result);
            }
            let due = quiet || last_write.elapsed() >= std::time::Duration::from_secs(2);
            if !batch.is_empty() && (finished || due || batch.len() >= WRITE_BATCH) {
                last_write = std::time::Instant::now();
                let now = core.clock.now();
                let wrote = core.db.write(|tx| {
                    for (url, outcome) in &batch {
                        for offer in by_url.get(url.as_str()).into_iter().flatten() {
                            if record(tx, core, offer, url, outcome.clone(), now, &mut summary)? {
                                summary.checked += 1;
                            }
                        }
                    }
                    Ok(())
                });
                if let Err(e) = wrote {
                    halt.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                batch.clear();
            }
            if finished {
                return Ok(());
            }
        }
    });
    written?;
    if !skipped.is_empty() {
        core.db.write(|tx| {
            for id in &skipped {
                tx.prepare_cached("UPDATE destinations SET monitor_error = ?2 WHERE id = ?1")?
                    .execute(params![id, "not checked: only ports 80 (http) and 443 (https) are checked"])?;
            }
            Ok(())
        })?;
    }
    if !summary.down.is_empty() || !summary.up.is_empty() {
        core.outbox_wake.notify();
    }
    Ok(summary)
}

/// Writes one offer's check, from its row as it is now (another run or an
/// edit may have changed it since the list was read): two failures in a
/// row make it down, a success up; a change is numbered and alerted once.
/// False when the offer was paused, removed or given a new URL meanwhile.
fn record(
    tx: &Connection,
    core: &Core,
    offer: &Offer,
    checked_url: &str,
    outcome: Outcome,
    now: Micros,
    summary: &mut Summary,
) -> Result<bool, Error> {
    let row: Option<(String, String, i64)> = tx
        .prepare_cached(
            "SELECT url, monitor_state, monitor_failures FROM destinations WHERE id = ?1 AND status = 'active'",
        )?
        .query_row([offer.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    // Paused, removed, or given a new URL meanwhile: this check is not its.
    let Some((url, was, failures)) = row.filter(|(url, _, _)| probe_url(url) == checked_url) else { return Ok(false) };
    let failures = if outcome.is_some() { failures + 1 } else { 0 };
    let state = match &outcome {
        None => "up",
        Some(_) if failures >= FAILURES_FOR_DOWN => "down",
        // One failure: not yet down (and one that is down stays down).
        Some(_) => was.as_str(),
    };
    let changed = (state == "down") != (was == "down");
    let number: Option<i64> = if changed {
        let next = "UPDATE counters SET value = value + 1 WHERE name = 'monitor_change' RETURNING value";
        Some(tx.prepare_cached(next)?.query_row([], |r| r.get(0))?)
    } else {
        None
    };
    tx.prepare_cached(
        "UPDATE destinations SET monitor_state = ?2, monitor_failures = ?3, monitor_checked_at = ?4, monitor_error = ?5,
                monitor_change = coalesce(?6, monitor_change)
         WHERE id = ?1",
    )?
    .execute(params![offer.id, state, failures, now, outcome, number])?;
    if !changed {
        return Ok(true);
    }
    let went_down = state == "down";
    let auto_pause = core.config.monitor.auto_pause;
    let data = json!({
        "destination": {"id": offer.id, "name": offer.name, "url": url},
        "link": {"id": offer.link_id, "name": offer.link_name},
        "error": outcome,
        "auto_paused": went_down && auto_pause,
    });
    let key = match (went_down, auto_pause) {
        (true, true) => "notify.destination_down_paused",
        (true, false) => "notify.destination_down",
        (false, _) => "notify.destination_up",
    };
    let event = Event {
        name: if went_down { "destination_down" } else { "destination_up" },
        data: data.clone(),
        text: Msg::new(key)
            .arg("name", &offer.name)
            .arg("link", &offer.link_name)
            .arg("error", outcome.as_deref().unwrap_or("")),
    };
    notify::emit(tx, core, offer.user_id, &event, now)?;
    if went_down {
        summary.down.push(data);
    } else {
        summary.up.push(data);
    }
    Ok(true)
}

/// Slugs of links one of whose offers went down or came back after change
/// number `since` (by this process or another, such as `apextrack monitor
/// run-once`), and the newest number: a server with `auto_pause` reads
/// those links again. Numbers follow the order changes were written in, so
/// none is missed whichever process wrote it.
pub fn changed_since(conn: &Connection, since: i64) -> rusqlite::Result<(Vec<String>, i64)> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.slug, d.monitor_change FROM destinations d JOIN links l ON l.id = d.link_id
         WHERE d.monitor_change > ?1 AND d.monitor_change > 0",
    )?;
    let rows = stmt.query_map([since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut slugs = Vec::new();
    let mut newest = since;
    for row in rows {
        let (slug, change) = row?;
        newest = newest.max(change);
        slugs.push(slug);
    }
    Ok((slugs, newest))
}

/// The newest change number (where a starting server begins).
pub fn last_change(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM counters WHERE name = 'monitor_change'", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_web_ports_are_checked() {
        for url in [
            "http://a.example/x",
            "https://a.example:443/",
            "http://a.example:80",
            "http://[2001:db8::1]/",
            "https://[2001:db8::1]:443/p",
            "https://user:pw@a.example/",
        ] {
            assert!(on_web_port(url), "{url}");
        }
        for url in [
            "http://a.example:22/",
            "https://a.example:8443/",
            "http://a.example:443/",
            "http://[2001:db8::1]:25/",
            "http://10.0.0.1:6379/",
        ] {
            assert!(!on_web_port(url), "{url}");
        }
    }

    #[test]
    fn macros_get_placeholders_and_other_braces_stay() {
        assert_eq!(
            probe_url("https://o.example/?c={clickid}&s={sub_id}&g={country}&x={not a macro}"),
            "https://o.example/?c=apextrack-monitor&s=apextrack-monitor&g=US&x={not a macro}"
        );
    }
}
