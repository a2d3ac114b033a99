//! The click redirect, `GET /go/{slug}`: record the click (with its
//! uniqueness and rollups in the same transaction), then 302 to the
//! destination with the macros filled in.

use super::links::{CostModel, Target};
use super::rollup::{self, Delta, Dims};
use super::visitors;
use super::Runtime;
use super::{bandit, dashboard, device, routing, store};
use crate::base::Core;
use crate::clock::{self, MINUTE, SECOND};
use crate::error::Error;
use crate::net::{form_pairs, percent_encode_into};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// Longest sub_id (and sub2..sub5, ext_id) kept; longer values are cut.
pub const MAX_PARAM: usize = 255;
const MAX_USER_AGENT: usize = 512;

/// What a traffic source passes on the tracking URL.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params {
    /// sub1 (`sub_id`) to sub5.
    pub subs: [String; 5],
    pub ext_id: String,
    /// What the traffic source says the click cost (`cost`), as sent.
    pub cost: String,
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
                "cost" => &mut p.cost,
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
    pub accept_language: &'a str,
}

/// The values of a destination URL's macros for one click.
pub struct Macros<'a> {
    pub clickid: &'a str,
    /// sub1..sub5, then ext_id.
    pub values: [&'a str; 6],
    pub country: &'a str,
    pub device: &'a str,
    pub os: &'a str,
    pub destination: &'a str,
    pub rule: &'a str,
    /// The server's public URL: `{click_url}` is `<app_url>/click/<clickid>`,
    /// for a lander's button (made only for a URL that asks for it).
    pub app_url: &'a str,
}

impl Macros<'_> {
    /// `url` with its macros filled (see [`fill`]).
    pub fn fill(&self, url: &str) -> String {
        fill(url, |name| {
            if name == "click_url" {
                return Some(Cow::Owned(format!("{}/click/{}", self.app_url, self.clickid)));
            }
            Some(Cow::Borrowed(match name {
                "clickid" => self.clickid,
                "sub_id" | "sub1" => self.values[0],
                "sub2" => self.values[1],
                "sub3" => self.values[2],
                "sub4" => self.values[3],
                "sub5" => self.values[4],
                "ext_id" => self.values[5],
                "country_code" => self.country,
                "device_type" => self.device,
                "os" => self.os,
                "destination" => self.destination,
                "rule" => self.rule,
                _ => return None,
            }))
        })
    }
}

/// Where a visit goes: a destination (by index in the link's routing)
/// and the rule that chose it; no destination means the fallback URL.
struct Route {
    index: Option<usize>,
    rule: Option<usize>,
}

/// Chooses among `listed` destinations of the link for one visit: open
/// ones (active, offers under their daily cap) by stickiness, weight or
/// the optimize mode's shares; when none is open, the fallback URL (None)
/// or else the least-loaded offer.
fn pick_among(
    app: &Core,
    rt: &Runtime,
    target: &Target,
    listed: &[usize],
    visitor: u64,
    sticky: Option<i64>,
    day: &str,
) -> Result<Option<usize>, Error> {
    let r = &target.routing;
    // Every capped offer's load (conversions today per cap): the least
    // loaded may be taken from outside `listed`.
    let mut load = vec![0.0; r.destinations.len()];
    for (i, d) in r.destinations.iter().enumerate() {
        if let (routing::Kind::Offer, Some(cap)) = (d.kind, d.daily_cap) {
            let n = rt.caps.conversions(&app.db, target.user_id, d.id, day)?;
            load[i] = n as f64 / cap.max(1) as f64;
        }
    }
    let shares = match r.mode {
        routing::Mode::Optimize => optimize_shares(app, target)?,
        routing::Mode::Weighted => None,
    };
    let capped = |i: usize| load[i] >= 1.0;
    if let Some(i) = r.pick(listed, visitor, sticky, &capped, shares.as_deref().map(Vec::as_slice)) {
        return Ok(Some(i));
    }
    if r.fallback_url.is_some() {
        return Ok(None);
    }
    Ok(r.least_loaded(listed, |i| load[i]))
}

/// The optimize mode's shares of the link's offers (by destination
/// index), drawn again at most once a minute from the offers' all-time
/// clicks and approved conversions; None until every active offer has
/// had [`bandit::MIN_CLICKS`] clicks.
fn optimize_shares(app: &Core, target: &Target) -> Result<Option<Arc<Vec<f64>>>, Error> {
    let now = app.clock.now();
    {
        let mut drawn = target.shares.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, shares)) = &mut *drawn {
            if now - *at < MINUTE && now >= *at {
                return Ok((!shares.is_empty()).then(|| Arc::clone(shares)));
            }
            // This click draws them again; the clicks meanwhile keep the old ones.
            *at = now;
        } else {
            *drawn = Some((now, Arc::new(Vec::new())));
        }
    }
    let r = &target.routing;
    let offers: Vec<usize> = (0..r.destinations.len())
        .filter(|&i| r.destinations[i].kind == routing::Kind::Offer && r.destinations[i].active)
        .collect();
    let ids: Vec<i64> = offers.iter().map(|&i| r.destinations[i].id).collect();
    let arms = app.db.read(|c| Ok(dashboard::destination_arms(c, target.user_id, &ids)?))?;
    let seed = (now / MINUTE) as u64 ^ (target.id as u64).rotate_left(32);
    let mut shares = Vec::new();
    if let Some(s) = bandit::shares(&arms, seed) {
        shares = vec![0.0; r.destinations.len()];
        for (&i, share) in offers.iter().zip(s) {
            shares[i] = share;
        }
    }
    let shares = Arc::new(shares);
    *target.shares.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, Arc::clone(&shares)));
    Ok((!shares.is_empty()).then_some(shares))
}

/// Records the click and returns where to send the visitor; None for an
/// unknown, paused or deleted link.
pub fn record(app: &Core, rt: &Runtime, visit: &Visit) -> Result<Option<String>, Error> {
    let Some(target) = rt.slugs.get(&app.db, visit.slug)? else { return Ok(None) };
    let params = Params::parse(visit.query);
    let device = device::detect(visit.user_agent);
    let country = country(rt, visit.ip, visit.country_header);
    let now = app.clock.now();
    let day = clock::local_date(now, app.utc_offset);
    let user_agent = super::clip(visit.user_agent, MAX_USER_AGENT);
    let visitor = visitors::key(target.id, visit.ip, &user_agent);
    let os = routing::os_of(&user_agent);
    let hour = local_hour(now, app.utc_offset);
    let last = rt.visitors.last(visitor, now);
    let route = {
        let r = &target.routing;
        // What rules look at, only for a link that has rules.
        let rule = (!r.rules.is_empty()).then(|| {
            let language = routing::language_of(visit.accept_language);
            let [s1, s2, s3, s4, s5] = &params.subs;
            let named = [("sub_id", s1), ("sub1", s1), ("sub2", s2), ("sub3", s3), ("sub4", s4), ("sub5", s5)]
                .map(|(k, v)| (k, v.as_str()));
            let named: Vec<(&str, &str)> = named.into_iter().chain([("ext_id", params.ext_id.as_str())]).collect();
            r.matching_rule(&routing::Visit {
                country: &country,
                device,
                os,
                language: &language,
                hour,
                params: &named,
                unique: device != "bot" && last.is_none(),
            })
        });
        let rule = rule.flatten();
        let index = pick_among(app, rt, &target, &r.listed(rule), visitor, last.flatten(), &day)?;
        Route { index, rule }
    };
    let id = rt.ids.next(&app.db)?;
    let secret = store::new_secret();
    let clickid = store::clickid(id, &secret);
    let chosen = route.index.map(|i| &target.routing.destinations[i]);
    let rule = route.rule.map(|i| target.routing.rules[i].name.as_str());
    // Where the visitor goes, known before the click is stored; sent only
    // once it is.
    let location = Macros {
        clickid: &clickid,
        values: [&params.subs[0], &params.subs[1], &params.subs[2], &params.subs[3], &params.subs[4], &params.ext_id],
        country: &country,
        device,
        os,
        destination: chosen.map_or("", |d| d.name.as_str()),
        rule: rule.unwrap_or(""),
        app_url: app.config.app_url(),
    }
    .fill(chosen.map_or_else(|| target.routing.fallback_url.as_deref().unwrap_or(&target.url), |d| d.url.as_str()));
    let (destination_id, lander_id) = match chosen {
        None => (Some(0), None),
        Some(d) if d.kind == routing::Kind::Lander => (None, Some(d.id)),
        Some(d) => (Some(d.id), None),
    };
    let cost = match target.cost {
        _ if device == "bot" => None,
        CostModel::None => None,
        CostModel::Cpc(micros) => Some(micros),
        // Whatever the source sent, a bad value costs nothing.
        CostModel::Param => Some(super::parse_micros(&params.cost, super::MAX_CLICK_COST_MICROS).unwrap_or(0)),
    };
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
        destination_id,
        lander_id,
        rule: rule.map(str::to_string),
        cost,
        os,
        hour,
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

/// `GET /click/{clickid}`: the visitor leaves its lander. The first time,
/// an offer is chosen among the rule's offers (or the link's), the click
/// records it and the lander's click-through counts; later times go to the
/// same offer and count nothing. None: unknown clickid, or its link is
/// paused or gone.
pub fn leave_lander(app: &Core, rt: &Runtime, clickid: &str) -> Result<Option<String>, Error> {
    let Some(f) = app.db.read(|c| Ok(store::funnel(c, clickid)?))? else { return Ok(None) };
    let Some(target) = rt.slugs.get(&app.db, &f.slug)? else { return Ok(None) };
    let r = &target.routing;
    let rule = r.rules.iter().position(|x| !f.rule.is_empty() && x.name == f.rule);
    let now = app.clock.now();
    let day = clock::local_date(now, app.utc_offset);
    let visitor = f.ip.map_or(f.id as u64, |ip| visitors::key(f.link_id, ip, &f.user_agent));
    let index = match (f.offer_id, f.lander_id) {
        (Some(0), _) => None,
        (Some(id), _) => match r.position_of(id) {
            Some(i) => Some(i),
            // Its offer was removed since: choose again.
            None => pick_among(app, rt, &target, &r.offers_after_lander(rule), visitor, None, &day)?,
        },
        (None, Some(_)) => {
            let index = pick_among(app, rt, &target, &r.offers_after_lander(rule), visitor, None, &day)?;
            let offer_id = index.map_or(0, |i| r.destinations[i].id);
            let stored = app.db.write(|tx| {
                if !store::set_offer(tx, f.id, offer_id)? {
                    // Another request for this click chose first: go where it went.
                    return Ok(store::offer_of(tx, f.id)?);
                }
                if f.device != "bot" {
                    let mut rollups = rollup::Batch::default();
                    if offer_id != 0 {
                        let seen = Delta { clicks: 1, unique_clicks: i64::from(f.is_unique), ..Delta::default() };
                        rollups.add_destination(f.user_id, &day, offer_id, seen);
                    }
                    if let Some(lander) = f.lander_id {
                        rollups.add_destination(
                            f.user_id,
                            &day,
                            lander,
                            Delta { lander_clicks: 1, ..Delta::default() },
                        );
                    }
                    rollups.write(tx)?;
                }
                Ok(Some(offer_id))
            })?;
            match stored {
                Some(id) if id == offer_id => index,
                Some(id) => r.position_of(id),
                None => index,
            }
        }
        // A click of before smart links, or of a link without landers.
        (None, None) => r.first_offer().and_then(|d| r.position_of(d.id)),
    };
    let chosen = index.map(|i| &r.destinations[i]);
    let v = &f.values;
    let location = Macros {
        clickid: &f.clickid,
        values: [&v[0], &v[1], &v[2], &v[3], &v[4], &v[5]],
        country: &f.country,
        device: f.device,
        os: routing::os_of(&f.user_agent),
        destination: chosen.map_or("", |d| d.name.as_str()),
        rule: &f.rule,
        app_url: app.config.app_url(),
    }
    .fill(chosen.map_or_else(|| r.fallback_url.as_deref().unwrap_or(&target.url), |d| d.url.as_str()));
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
    /// As stored: see [`store::Row`].
    destination_id: Option<i64>,
    lander_id: Option<i64>,
    rule: Option<String>,
    /// Micro-units; None when the link has no cost model (or a bot clicked).
    cost: Option<i64>,
    os: &'static str,
    /// Local hour of the click.
    hour: u8,
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
        let sent_to = c.lander_id.or(c.destination_id);
        let is_unique = !is_bot && rt.visitors.is_unique(c.visitor, c.now, sent_to, &mut counts.seen);
        let s1 = &c.params.subs[0];
        let mut values = [None; 6];
        for (slot, text) in values.iter_mut().zip(c.params.subs.iter().chain([&c.params.ext_id])) {
            if !text.is_empty() {
                *slot = Some(interner.id(tx, store::Kind::Value, text, &mut counts.fresh)?);
            }
        }
        let ua = interner.id(tx, store::Kind::UserAgent, &c.user_agent, &mut counts.fresh)?;
        let rule = match &c.rule {
            Some(name) => Some(interner.id(tx, store::Kind::Value, name, &mut counts.fresh)?),
            None => None,
        };
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
                destination_id: c.destination_id,
                lander_id: c.lander_id,
                rule,
                cost: c.cost,
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
            let cost_micros = c.cost.unwrap_or(0);
            Delta { clicks: 1, unique_clicks: i64::from(is_unique), cost_micros, ..Delta::default() }
        };
        let dims = Dims {
            sub_id: s1,
            country: &c.country,
            device: c.device,
            link_id: c.link_id,
            destination_id: sent_to.filter(|&id| id != 0),
            os: Some(c.os),
            hour: Some(c.hour),
        };
        rollups.add(c.user_id, &c.day, &dims, delta, is_bot);
    }
    rollups.write(tx)?;
    Ok(counts)
}

/// The hour of day of `at` in the server's offset, 0–23.
pub fn local_hour(at: i64, utc_offset: i32) -> u8 {
    ((at / SECOND + i64::from(utc_offset)).rem_euclid(86_400) / 3600) as u8
}

/// Deletes up to `limit` raw clicks recorded before `before` (micros),
/// oldest first. Rollups, leads and fingerprints are left alone: reports
/// do not change.
pub fn purge(conn: &rusqlite::Connection, before: i64, limit: i64) -> rusqlite::Result<usize> {
    store::purge(conn, before / 1000, limit)
}

/// Rows a purge deletes per transaction: about half a millisecond of the
/// writer's time, so a click waits no longer than that behind it.
pub const PURGE_BATCH: i64 = 500;
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
