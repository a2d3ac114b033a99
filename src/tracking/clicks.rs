//! The click redirect, `GET /go/{slug}`: record the click (with its
//! uniqueness and rollups in the same transaction), then 302 to the
//! destination with the macros filled in.

use super::device;
use super::rollup::{self, Delta, Dims};
use super::store;
use super::visitors;
use super::Runtime;
use crate::base::Core;
use crate::clock;
use crate::error::Error;
use crate::net::{form_pairs, percent_encode_into};
use std::borrow::Cow;
use std::net::IpAddr;

/// Longest sub_id (and sub2..sub5, ext_id) kept; longer values are cut.
pub const MAX_PARAM: usize = 255;
const MAX_USER_AGENT: usize = 512;

/// What a traffic source passes on the tracking URL.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params {
    /// sub1 (`sub_id`) to sub5.
    pub subs: [String; 5],
    pub ext_id: String,
}

impl Params {
    pub fn parse(query: &str) -> Params {
        let mut p = Params::default();
        for (key, value) in form_pairs(query) {
            let slot = match key.as_str() {
                "sub_id" | "sub1" => &mut p.subs[0],
                "sub2" => &mut p.subs[1],
                "sub3" => &mut p.subs[2],
                "sub4" => &mut p.subs[3],
                "sub5" => &mut p.subs[4],
                "ext_id" => &mut p.ext_id,
                _ => continue,
            };
            if slot.is_empty() {
                *slot = super::clip(&value, MAX_PARAM);
            }
        }
        p
    }
}

/// Fills `{macro}`s of a destination URL; values are percent-encoded, so
/// nothing a visitor sends can break out of its place in the URL (or of
/// the `Location` header). Unknown `{...}` are left as they are.
pub fn fill<'v>(url: &str, value: impl Fn(&str) -> Option<Cow<'v, str>>) -> String {
    let mut out = String::with_capacity(url.len() + 32);
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        match after.find('}').and_then(|close| value(&after[1..close]).map(|v| (close, v))) {
            Some((close, v)) => {
                percent_encode_into(&mut out, &v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The visitor's country: the GeoIP database when configured, else the
/// configured header (e.g. `CF-IPCountry`), else `XX`.
pub fn country(rt: &Runtime, ip: IpAddr, header: Option<&str>) -> String {
    let from_geoip = rt.geoip.country(ip);
    let code = from_geoip.or_else(|| header.map(str::to_string)).unwrap_or_default();
    let code = code.trim().to_ascii_uppercase();
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        code
    } else {
        "XX".to_string()
    }
}

/// Everything known about a visit before it is stored.
pub struct Visit<'a> {
    pub slug: &'a str,
    pub query: &'a str,
    pub user_agent: &'a str,
    pub ip: IpAddr,
    pub country_header: Option<&'a str>,
}

/// Records the click and returns where to send the visitor; None for an
/// unknown, paused or deleted link.
pub fn record(app: &Core, rt: &Runtime, visit: &Visit) -> Result<Option<String>, Error> {
    let Some(target) = rt.slugs.get(&app.db, visit.slug)? else { return Ok(None) };
    let params = Params::parse(visit.query);
    let device = device::detect(visit.user_agent);
    let country = country(rt, visit.ip, visit.country_header);
    let now = app.clock.now();
    let id = rt.ids.next(&app.db)?;
    let secret = store::new_secret();
    let clickid = store::clickid(id, &secret);
    let day = clock::local_date(now, app.utc_offset);
    let user_agent = super::clip(visit.user_agent, MAX_USER_AGENT);
    let visitor = visitors::key(target.id, visit.ip, &user_agent);
    // Where the visitor goes, known before the click is stored; sent only
    // once it is.
    let location = fill(&target.url, |name| {
        Some(Cow::Borrowed(match name {
            "clickid" => clickid.as_str(),
            "sub_id" | "sub1" => &params.subs[0],
            "sub2" => &params.subs[1],
            "sub3" => &params.subs[2],
            "sub4" => &params.subs[3],
            "sub5" => &params.subs[4],
            "ext_id" => &params.ext_id,
            "country_code" => &country,
            "device_type" => device,
            _ => return None,
        }))
    });
    let click = NewClick {
        id,
        secret,
        user_id: target.user_id,
        link_id: target.id,
        params,
        country,
        device,
        ip: store::ip_bytes(visit.ip),
        user_agent,
        visitor,
        day,
        now,
    };
    let write = |tx: &rusqlite::Connection, batch: &[NewClick]| write_batch(tx, batch, rt);
    rt.click_writer
        .submit_with(&app.db, click, write, |counts: Counts| {
            counts.add_to(&app.metrics);
            rt.interner.committed(counts.fresh);
            rt.visitors.committed(counts.seen);
            for (user, n) in counts.live {
                rt.live.add(user, n, now);
            }
        })
        // The link or its owner may have been removed behind the cache's
        // back (the CLI deleting a user): look it up afresh next time.
        .inspect_err(|_| rt.slugs.clear())?;
    Ok(Some(location))
}

/// A click waiting for its batch's transaction.
pub struct NewClick {
    id: i64,
    secret: [u8; 12],
    user_id: i64,
    link_id: i64,
    params: Params,
    country: String,
    device: &'static str,
    ip: Vec<u8>,
    user_agent: String,
    visitor: u64,
    day: String,
    now: i64,
}

/// Clicks of a committed batch, by kind, for the metrics.
#[derive(Default)]
struct Counts {
    unique: u64,
    repeat: u64,
    bot: u64,
    /// User-Agents and values this batch interned.
    fresh: store::Fresh,
    /// Visitors this batch saw.
    seen: visitors::Seen,
    /// Non-bot clicks per user, for the live counter.
    live: Vec<(i64, u32)>,
}

impl Counts {
    fn add_to(&self, metrics: &crate::metrics::Metrics) {
        use std::sync::atomic::Ordering::Relaxed;
        metrics.clicks_unique.fetch_add(self.unique, Relaxed);
        metrics.clicks_repeat.fetch_add(self.repeat, Relaxed);
        metrics.clicks_bot.fetch_add(self.bot, Relaxed);
    }
}

/// Stores a batch of clicks in one transaction: each click row and its
/// uniqueness, then the batch's rollup deltas, merged per row.
fn write_batch(tx: &rusqlite::Connection, batch: &[NewClick], rt: &Runtime) -> Result<Counts, Error> {
    let interner = &rt.interner;
    let mut counts = Counts::default();
    let mut rollups = rollup::Batch::default();
    for c in batch {
        let is_bot = c.device == "bot";
        // Unique: this visitor has not clicked this link in the last 24 hours.
        let is_unique = !is_bot && rt.visitors.is_unique(c.visitor, c.now, &mut counts.seen);
        let s1 = &c.params.subs[0];
        let mut values = [None; 6];
        for (slot, text) in values.iter_mut().zip(c.params.subs.iter().chain([&c.params.ext_id])) {
            if !text.is_empty() {
                *slot = Some(interner.id(tx, store::Kind::Value, text, &mut counts.fresh)?);
            }
        }
        let ua = interner.id(tx, store::Kind::UserAgent, &c.user_agent, &mut counts.fresh)?;
        store::insert(
            tx,
            &store::Row {
                id: c.id,
                secret: &c.secret,
                user_id: c.user_id,
                link_id: c.link_id,
                at_ms: c.now / 1000,
                ip: &c.ip,
                ua,
                country: &c.country,
                device: store::device_code(c.device),
                is_unique,
                values,
            },
        )?;
        let delta = if is_bot {
            counts.bot += 1;
            Delta { bot_clicks: 1, ..Delta::default() }
        } else {
            if is_unique {
                counts.unique += 1;
            } else {
                counts.repeat += 1;
            }
            match counts.live.iter_mut().find(|(user, _)| *user == c.user_id) {
                Some((_, n)) => *n += 1,
                None => counts.live.push((c.user_id, 1)),
            }
            Delta { clicks: 1, unique_clicks: i64::from(is_unique), ..Delta::default() }
        };
        let dims = Dims { sub_id: s1, country: &c.country, device: c.device, link_id: c.link_id };
        rollups.add(c.user_id, &c.day, &dims, delta, is_bot);
    }
    rollups.write(tx)?;
    Ok(counts)
}

/// Deletes up to `limit` raw clicks recorded before `before` (micros),
/// oldest first. Rollups, leads and fingerprints are left alone: reports
/// do not change.
pub fn purge(conn: &rusqlite::Connection, before: i64, limit: i64) -> rusqlite::Result<usize> {
    store::purge(conn, before / 1000, limit)
}

/// Rows a purge deletes per transaction: about a millisecond of the
/// writer's time, so a click waits no longer than that behind it.
pub const PURGE_BATCH: i64 = 1000;
/// The pause between two purge transactions, in which waiting clicks
/// (of this process, or of a server beside the CLI, whose retries back
/// off a millisecond or more at a time) take the writer.
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(4);

/// Deletes every raw click recorded before `before` (micros), in
/// transactions of [`PURGE_BATCH`] rows with a pause between them, so the
/// click path keeps its speed while millions go. `progress` gets the total
/// so far after each batch. Returns how many went.
pub fn purge_all(db: &crate::db::Db, before: i64, mut progress: impl FnMut(usize)) -> Result<usize, Error> {
    let mut total = 0;
    loop {
        let n = db.write(|tx| Ok(purge(tx, before, PURGE_BATCH)?))?;
        total += n;
        progress(total);
        if (n as i64) < PURGE_BATCH {
            return Ok(total);
        }
        std::thread::sleep(PURGE_PAUSE);
    }
}

/// How many raw clicks were recorded before `before` (micros; for a dry run).
pub fn count_before(conn: &rusqlite::Connection, before: i64) -> rusqlite::Result<i64> {
    store::count_before(conn, before / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_are_filled_and_encoded() {
        let url = "https://shop.example/p?cid={clickid}&s={sub_id}&x={unknown}&c={country_code}{";
        let filled = fill(url, |name| match name {
            "clickid" => Some("abc".into()),
            "sub_id" => Some("a&b=c d\r\n".into()),
            "country_code" => Some("ID".into()),
            _ => None,
        });
        assert_eq!(filled, "https://shop.example/p?cid=abc&s=a%26b%3Dc%20d%0D%0A&x={unknown}&c=ID{");
    }

    #[test]
    fn params_take_aliases_and_are_clipped() {
        let long = "x".repeat(10_000);
        let p = Params::parse(&format!("sub1=first&sub_id=second&sub5=%27%22&ext_id={long}&other=1"));
        assert_eq!(p.subs[0], "first");
        assert_eq!(p.subs[4], "'\"");
        assert_eq!(p.ext_id.len(), MAX_PARAM);
    }
}
