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
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

/// Failures in a row that make an offer down.
pub const FAILURES_FOR_DOWN: i64 = 2;
/// Most of a page read.
const MAX_READ: u64 = 64 * 1024;
/// Pages checked side by side.
const AT_ONCE: usize = 8;

struct Offer {
    id: i64,
    name: String,
    url: String,
    state: String,
    failures: i64,
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

/// GETs one page: None when it answered (anything but 5xx, 404, 410),
/// else a one-line reason naming the host only.
pub fn check(url: &str, allow_private: bool) -> Outcome {
    let host = http_client::host_of(url).to_string();
    match http_client::monitor_agent(allow_private).get(url).call() {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read (at most 64 KiB of) the page, as a browser would start to.
            let _ = http_client::read_text(response.into_body(), MAX_READ);
            (status >= 500 || status == 404 || status == 410).then(|| format!("{host}: HTTP {status}"))
        }
        Err(e) => Some(format!("{host}: {e}")),
    }
}

fn offers(conn: &Connection) -> rusqlite::Result<Vec<Offer>> {
    let mut stmt = conn.prepare(
        "SELECT d.id, d.name, d.url, d.monitor_state, d.monitor_failures, l.id, l.name, l.user_id
         FROM destinations d JOIN links l ON l.id = d.link_id
         WHERE d.kind = 'offer' AND d.status = 'active' AND l.status = 'active'
         ORDER BY d.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Offer {
            id: r.get(0)?,
            name: r.get(1)?,
            url: r.get(2)?,
            state: r.get(3)?,
            failures: r.get(4)?,
            link_id: r.get(5)?,
            link_name: r.get(6)?,
            user_id: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Checks every active offer now, each distinct URL once, [`AT_ONCE`] at a
/// time; records what it found and queues the alerts of offers that went
/// down or came back, in one transaction.
pub fn run_once(core: &Core) -> Result<Summary, Error> {
    let offers = core.db.read(|c| Ok(offers(c)?))?;
    let mut urls: Vec<String> = offers.iter().map(|o| probe_url(&o.url)).collect();
    urls.sort();
    urls.dedup();
    let allow_private = core.config.monitor.allow_private;
    let results: Mutex<HashMap<String, Outcome>> = Mutex::new(HashMap::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..AT_ONCE.min(urls.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(url) = urls.get(i) else { return };
                let outcome = check(url, allow_private);
                results.lock().unwrap_or_else(|e| e.into_inner()).insert(url.clone(), outcome);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let now = core.clock.now();
    let auto_pause = core.config.monitor.auto_pause;
    let mut summary = Summary { checked: offers.len(), urls: urls.len(), ..Summary::default() };
    core.db.write(|tx| {
        for offer in &offers {
            let outcome = results.get(&probe_url(&offer.url)).cloned().flatten();
            let (state, failures) = match &outcome {
                None => ("up", 0),
                Some(_) if offer.failures + 1 >= FAILURES_FOR_DOWN => ("down", offer.failures + 1),
                // One failure: not yet down, and an offer down stays down.
                Some(_) => (if offer.state == "down" { "down" } else { offer.state.as_str() }, offer.failures + 1),
            };
            let changed = (state == "down") != (offer.state == "down");
            tx.prepare_cached(
                "UPDATE destinations SET monitor_state = ?2, monitor_failures = ?3, monitor_checked_at = ?4,
                        monitor_error = ?5, monitor_changed_at = CASE WHEN ?6 THEN ?4 ELSE monitor_changed_at END
                 WHERE id = ?1",
            )?
            .execute(params![offer.id, state, failures, now, outcome, changed])?;
            if !changed {
                continue;
            }
            let went_down = state == "down";
            let data = json!({
                "destination": {"id": offer.id, "name": offer.name, "url": offer.url},
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
        }
        Ok(())
    })?;
    if !summary.down.is_empty() || !summary.up.is_empty() {
        core.outbox_wake.notify();
    }
    Ok(summary)
}

/// Slugs of links one of whose offers went down or came back after
/// `since` (by this process or another, such as `apextrack monitor
/// run-once`), and the newest such time: a server with `auto_pause` reads
/// those links again.
pub fn changed_since(conn: &Connection, since: Micros) -> rusqlite::Result<(Vec<String>, Micros)> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.slug, d.monitor_changed_at FROM destinations d JOIN links l ON l.id = d.link_id
         WHERE d.monitor_changed_at > ?1",
    )?;
    let rows = stmt.query_map([since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Micros>(1)?)))?;
    let mut slugs = Vec::new();
    let mut newest = since;
    for row in rows {
        let (slug, at) = row?;
        newest = newest.max(at);
        slugs.push(slug);
    }
    Ok((slugs, newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_get_placeholders_and_other_braces_stay() {
        assert_eq!(
            probe_url("https://o.example/?c={clickid}&s={sub_id}&g={country}&x={not a macro}"),
            "https://o.example/?c=apextrack-monitor&s=apextrack-monitor&g=US&x={not a macro}"
        );
    }
}
