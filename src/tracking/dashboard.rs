//! `GET /api/dashboard-data` and `GET /api/reports`: numbers read from the
//! rollup counters (and, for the live counter and the recent lists, from
//! the newest rows of `clicks` and `leads` by index), never a scan.

use super::bandit::{self, Arm};
use super::rollup::ALL_TIME;
use super::routing::{Kind, Routing};
use super::{conversion_rate, money, Money};
use crate::base::Core;
use crate::clock;
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use rusqlite::{params, Connection, OptionalExtension};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An inclusive range of local dates; either end may be open.
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Range {
    /// Reads `from` and `to` (`YYYY-MM-DD`); a bad one is a 422 naming it.
    pub fn parse(from: Option<String>, to: Option<String>) -> Result<Range, Error> {
        let mut errors = FieldErrors::default();
        for (name, value) in [("from", &from), ("to", &to)] {
            if value.as_deref().is_some_and(|v| !clock::is_date(v)) {
                errors.add(name, Msg::new("validation.date").arg("attribute", name));
            }
        }
        errors.into_result()?;
        Ok(Range { from, to })
    }

    /// The range's first and last date, open ends as dates before and
    /// after every date.
    pub fn bounds(&self) -> (&str, &str) {
        (self.from.as_deref().unwrap_or("0000-00-00"), self.to.as_deref().unwrap_or("9999-99-99"))
    }

    /// The rollup days to read for totals per value: the all-time rows when
    /// the range takes in every day the user has counts for (one row per
    /// value, however long the history), else the range's dates.
    fn rollup_days(&self, conn: &Connection, user_id: i64) -> rusqlite::Result<(String, String)> {
        let (from, to) = self.bounds();
        let (first, last): (Option<String>, Option<String>) = conn
            .prepare_cached(
                "SELECT min(day), max(day) FROM rollups WHERE user_id = ?1 AND dim = 'all' AND value = '' AND day > ?2",
            )?
            .query_row(params![user_id, ALL_TIME], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let whole = match (first, last) {
            (Some(first), Some(last)) => from <= first.as_str() && to >= last.as_str(),
            _ => true,
        };
        Ok(if whole { (ALL_TIME.into(), ALL_TIME.into()) } else { (from.into(), to.into()) })
    }
}

/// `limit` between 1 and `max`, default `default`.
pub fn parse_limit(raw: Option<String>, default: i64, max: i64) -> Result<i64, Error> {
    match raw {
        None => Ok(default),
        Some(text) => match text.trim().parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(FieldErrors::single(
                "limit",
                Msg::new("validation.between").arg("attribute", "limit").arg("min", 1).arg("max", max),
            )),
        },
    }
}

struct Totals {
    clicks: i64,
    leads: i64,
    payout_cents: i64,
    cost_micros: i64,
}

/// How a query reads the rollup rows of days `from` to `to` (bound at
/// parameters `?{at}` and `?{at + 1}`). Over all time there is one row per
/// value (day `''`): the counters as they are, nothing to group or sum,
/// so SQLite only sorts (20 000 sub_ids: 3 ms instead of 26). Over one day
/// the condition is an equality, so rows come in order of value and group
/// without sorting.
struct Span {
    /// The table, with the index to read it by when there is a better one.
    table: &'static str,
    /// The condition on `day`.
    days: String,
    /// Wraps each counter: `sum` (rows grouped by value) or nothing, over
    /// all time, one row per value (`(clicks)` is `clicks`).
    sum: &'static str,
}

impl Span {
    fn new(dim: &str, from: &str, to: &str, at: usize) -> Span {
        let (a, b) = (at, at + 1);
        if from == ALL_TIME && to == ALL_TIME && dim == "sub_id" {
            // `day = ''` written out, so SQLite can prove the partial index applies.
            let days = format!("day = '{ALL_TIME}' AND day = ?{a} AND day = ?{b}");
            Span { table: "rollups INDEXED BY rollups_top_sub_ids", days, sum: "" }
        } else if from == to {
            // Both parameters stay in the statement, which is given both.
            let days = format!("day = ?{a} AND day = ?{b}");
            Span { table: "rollups", days, sum: if from == ALL_TIME { "" } else { "sum" } }
        } else {
            Span { table: "rollups", days: format!("day BETWEEN ?{a} AND ?{b}"), sum: "sum" }
        }
    }

    fn group_by(&self, key: &str) -> String {
        if !self.sum.is_empty() {
            format!("GROUP BY {key}")
        } else {
            String::new()
        }
    }
}

fn totals(conn: &Connection, user_id: i64, from: &str, to: &str) -> rusqlite::Result<Totals> {
    conn.prepare_cached(&format!(
        "SELECT coalesce(sum(clicks), 0), coalesce(sum(leads), 0), coalesce(sum(payout_cents), 0),
                coalesce(sum(cost_micros), 0)
         FROM rollups WHERE user_id = ?1 AND dim = 'all' AND value = '' AND {}",
        Span::new("all", from, to, 2).days
    ))?
    .query_row(params![user_id, from, to], |r| {
        Ok(Totals { clicks: r.get(0)?, leads: r.get(1)?, payout_cents: r.get(2)?, cost_micros: r.get(3)? })
    })
}

pub fn dashboard(app: &Core, rt: &super::Runtime, user_id: i64, range: &Range, limit: i64) -> Result<Value, Error> {
    let now = app.clock.now();
    let today = clock::local_date(now, app.utc_offset);
    app.db.read(|c| {
        // One snapshot: the days chosen and the rows read agree even when a
        // click lands on a new day in between.
        let c = &c.unchecked_transaction()?;
        let (from, to) = range.rollup_days(c, user_id)?;
        let (from, to) = (from.as_str(), to.as_str());
        let live = rt.live.count(user_id, now);
        let today = totals(c, user_id, &today, &today)?;
        let today_money =
            Money { clicks: today.clicks, revenue_cents: today.payout_cents, cost_micros: today.cost_micros };
        let all = totals(c, user_id, from, to)?;
        let span = Span::new("sub_id", from, to, 2);
        let (table, sum, days, group) = (span.table, span.sum, &span.days, span.group_by("value"));
        let mut stmt = c.prepare_cached(&format!(
            "SELECT value, {sum}(clicks), {sum}(leads), {sum}(approved_leads), {sum}(payout_cents), {sum}(cost_micros)
             FROM {table}
             WHERE user_id = ?1 AND dim = 'sub_id' AND {days}
             {group} ORDER BY {sum}(clicks) DESC, {sum}(payout_cents) DESC, value LIMIT ?4"
        ))?;
        let report: Vec<Value> = stmt
            .query_map(params![user_id, from, to, limit], |r| {
                let (clicks, approved): (i64, i64) = (r.get(1)?, r.get(3)?);
                let mut row = json!({
                    "sub_id": r.get::<_, String>(0)?,
                    "clicks": clicks,
                    "leads": r.get::<_, i64>(2)?,
                    "approved_leads": approved,
                    "total_payout": money(r.get(4)?),
                    "cr": conversion_rate(approved, clicks),
                });
                let m = Money { clicks, revenue_cents: r.get(4)?, cost_micros: r.get(5)? };
                for (key, value) in m.entries() {
                    row[key] = value;
                }
                Ok(row)
            })?
            .collect::<rusqlite::Result<_>>()?;
        let recent_clicks: Vec<Value> = super::store::recent(c, user_id, 20)?
            .into_iter()
            .map(|click| {
                json!({
                    "clickid": click.clickid,
                    "country_code": click.country,
                    "device_type": click.device,
                    "created_at": clock::format(click.at_ms * 1000),
                    "sub_id": click.sub1,
                })
            })
            .collect();
        let recent_leads: Vec<Value> = c
            .prepare_cached(
                "SELECT status, payout_cents, created_at, sub1, country, txid FROM leads
                 WHERE user_id = ?1 ORDER BY created_at DESC LIMIT 20",
            )?
            .query_map([user_id], |r| {
                Ok(json!({
                    "status": r.get::<_, String>(0)?,
                    "payout": money(r.get(1)?),
                    "created_at": clock::format(r.get(2)?),
                    "sub_id": r.get::<_, String>(3)?,
                    "country_code": r.get::<_, String>(4)?,
                    "txid": r.get::<_, String>(5)?,
                }))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(json!({
            "summary": {
                "liveClicksLast30Seconds": live,
                "clicksToday": today.clicks,
                "totalLeads": all.leads,
                "totalPayout": money(all.payout_cents),
                "costToday": today_money.cost(),
                "revenueToday": today_money.revenue(),
                "profitToday": today_money.profit(),
            },
            "report": report,
            "recent_clicks": recent_clicks,
            "recent_leads": recent_leads,
        }))
    })
}

pub const GROUPS: &[&str] = &["day", "sub_id", "country", "device", "link", "destination", "os", "hour"];

/// Groupings whose value is an id, shown as a number with its name.
fn by_id(group_by: &str) -> bool {
    group_by == "link" || group_by == "destination"
}

/// Keeps each user's reports to about a sixth of one core: after a report
/// that took `d`, that user's next one starts no sooner than `5 d` later
/// (it waits, at most [`MAX_PACING_WAIT`]; nothing is refused). A person at the reports page never
/// notices (a 10 000-row report takes ~30 ms); a script pulling reports back
/// to back no longer holds a core of a two-core VPS, so clicks keep their
/// speed (`bench/mixed.sh`).
#[derive(Default)]
pub struct Pacer {
    /// Per user: when the next report may start, and how long the last one took.
    users: Mutex<HashMap<i64, (Instant, Duration)>>,
}

/// Longest a report waits for its turn.
const MAX_PACING_WAIT: Duration = Duration::from_secs(2);

/// Users remembered before those whose turn has come are forgotten.
const PACER_USERS: usize = 10_000;

impl Pacer {
    pub fn run<T>(&self, user_id: i64, report: impl FnOnce() -> T) -> T {
        let lock = || self.users.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let start = {
            let mut users = lock();
            if users.len() >= PACER_USERS {
                users.retain(|_, (next, _)| *next > now);
            }
            let (next, last) = users.entry(user_id).or_insert((now, Duration::ZERO));
            let start = (*next).clamp(now, now + MAX_PACING_WAIT);
            // Reports asked for at once take turns: this one holds the next
            // turn for as long as the last one took, five times over.
            *next = start + *last * 6;
            start
        };
        std::thread::sleep(start - now);
        let began = Instant::now();
        let out = report();
        let took = began.elapsed();
        let mut users = lock();
        let (next, last) = users.entry(user_id).or_insert((began, Duration::ZERO));
        *last = took;
        *next = (*next).max(Instant::now() + took * 5);
        out
    }
}

/// One report row: its group (a day, sub_id, country, device or link id)
/// and its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub group: String,
    /// The link's or destination's name, for rows grouped by either.
    pub name: Option<String>,
    /// A lander's click-throughs, for rows grouped by destination.
    pub lander_clicks: i64,
    pub cost_micros: i64,
    pub clicks: i64,
    pub unique_clicks: i64,
    pub leads: i64,
    pub approved_leads: i64,
    pub pending_leads: i64,
    pub rejected_leads: i64,
    pub payout_cents: i64,
}

impl Row {
    fn money(&self) -> Money {
        Money { clicks: self.clicks, revenue_cents: self.payout_cents, cost_micros: self.cost_micros }
    }
}

/// Report rows as the JSON report gives them, each with its group under
/// the key `group_by` (a link's id as a number, then its name), written
/// straight from the rows: 10 000 rows in a few milliseconds instead of
/// ~80 through `serde_json::Value`.
pub struct JsonRows<'a> {
    pub group_by: &'a str,
    pub rows: &'a [Row],
}

impl Serialize for JsonRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.rows.len()))?;
        for row in self.rows {
            seq.serialize_element(&JsonRow(self.group_by, row))?;
        }
        seq.end()
    }
}

struct JsonRow<'a>(&'a str, &'a Row);

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (group_by, row) = (self.0, self.1);
        let link = by_id(group_by);
        let mut m = s.serialize_map(None)?;
        if link || group_by == "hour" {
            m.serialize_entry(group_by, &row.group.parse::<i64>().unwrap_or(0))?;
        } else {
            m.serialize_entry(group_by, &row.group)?;
        }
        m.serialize_entry("clicks", &row.clicks)?;
        m.serialize_entry("unique_clicks", &row.unique_clicks)?;
        m.serialize_entry("leads", &row.leads)?;
        m.serialize_entry("approved_leads", &row.approved_leads)?;
        m.serialize_entry("pending_leads", &row.pending_leads)?;
        m.serialize_entry("rejected_leads", &row.rejected_leads)?;
        m.serialize_entry("payout", &money(row.payout_cents))?;
        m.serialize_entry("cr", &conversion_rate(row.approved_leads, row.clicks))?;
        for (key, value) in row.money().entries() {
            m.serialize_entry(key, &value)?;
        }
        if link {
            m.serialize_entry("name", &row.name)?;
        }
        if group_by == "destination" {
            m.serialize_entry("lander_clicks", &row.lander_clicks)?;
        }
        m.end()
    }
}

/// One report row per day, sub_id, country, device or link.
pub fn report(app: &Core, user_id: i64, group_by: &str, range: &Range, limit: i64) -> Result<Vec<Row>, Error> {
    // The dimension is written into the statement (for the partial index): only known ones.
    if !GROUPS.contains(&group_by) {
        return Err(Error::internal(format!("unknown report grouping {group_by:?}")));
    }
    // Days come from the 'all' rows; every other grouping from its own dimension.
    let (dim, key) = match group_by {
        "day" => ("all", "day"),
        _ => (group_by, "value"),
    };
    let sql = |span: Span| {
        let (table, sum, days, group) = (span.table, span.sum, &span.days, span.group_by(key));
        let order = match key {
            "day" => "day DESC".to_string(),
            _ => format!("{sum}(clicks) DESC, {sum}(payout_cents) DESC, value"),
        };
        format!(
            "SELECT {key}, {sum}(clicks), {sum}(unique_clicks), {sum}(leads), {sum}(approved_leads),
                {sum}(pending_leads), {sum}(rejected_leads), {sum}(payout_cents),
                CASE ?5 WHEN 'link' THEN
                    (SELECT name FROM links WHERE links.id = CAST(value AS INTEGER) AND links.user_id = ?1)
                WHEN 'destination' THEN
                    (SELECT d.name FROM destinations d JOIN links l ON l.id = d.link_id
                     WHERE d.id = CAST(value AS INTEGER) AND l.user_id = ?1) END,
                {sum}(lander_clicks), {sum}(cost_micros)
         FROM {table} WHERE user_id = ?1 AND dim = '{dim}' AND dim = ?2 AND {days}
         {group} ORDER BY {order} LIMIT ?6"
        )
    };
    app.db.read(|c| {
        let c = &c.unchecked_transaction()?;
        let (from, to) = match group_by {
            "day" => {
                let (from, to) = range.bounds();
                (from.to_string(), to.to_string())
            }
            _ => range.rollup_days(c, user_id)?,
        };
        let mut stmt = c.prepare_cached(&sql(Span::new(dim, &from, &to, 3)))?;
        let rows = stmt.query_map(params![user_id, dim, from, to, group_by, limit], |r| {
            Ok(Row {
                group: r.get(0)?,
                clicks: r.get(1)?,
                unique_clicks: r.get(2)?,
                leads: r.get(3)?,
                approved_leads: r.get(4)?,
                pending_leads: r.get(5)?,
                rejected_leads: r.get(6)?,
                payout_cents: r.get(7)?,
                name: r.get(8)?,
                lander_clicks: r.get(9)?,
                cost_micros: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
}

/// What a report may be narrowed to (SPEC §12): clicks and leads with
/// these values only.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters {
    pub link_id: Option<i64>,
    pub sub_id: Option<String>,
    pub country: Option<String>,
    pub device: Option<String>,
    pub destination_id: Option<i64>,
}

impl Filters {
    /// Reads the filters from query parameters; a bad one is a 422 naming it.
    pub fn parse(param: impl Fn(&str) -> Option<String>) -> Result<Filters, Error> {
        let mut errors = FieldErrors::default();
        let mut id = |name: &str| -> Option<i64> {
            let text = param(name)?;
            let id = text.trim().parse::<i64>().ok().filter(|id| *id > 0);
            if id.is_none() {
                errors.add(name, Msg::new("validation.integer").arg("attribute", name.replace('_', " ")));
            }
            id
        };
        let (link_id, destination_id) = (id("link_id"), id("destination_id"));
        let country = param("country").map(|c| c.trim().to_ascii_uppercase());
        if country.as_ref().is_some_and(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase())) {
            errors.add("country", Msg::new("validation.country").arg("attribute", "country"));
        }
        let device = param("device").map(|d| d.trim().to_string());
        if let Some(d) = &device {
            if !super::routing::DEVICES.contains(&d.as_str()) || d == "bot" {
                let values = "mobile, tablet, desktop";
                errors.add("device", Msg::new("validation.in").arg("attribute", "device").arg("values", values));
            }
        }
        let sub_id = param("sub_id");
        if sub_id.as_ref().is_some_and(|s| s.chars().count() > super::clicks::MAX_PARAM) {
            let msg = Msg::new("validation.max").arg("attribute", "sub id").arg("max", super::clicks::MAX_PARAM);
            errors.add("sub_id", msg);
        }
        errors.into_result()?;
        Ok(Filters { link_id, sub_id, country, device, destination_id })
    }

    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }
}

/// A report narrowed by `filters`: the counters do not hold every pair of
/// dimensions, so this one reads the raw clicks of the range (non-bot;
/// those purged by `tracking.raw_click_days` are gone from it) and the
/// leads of the range, grouped as the counters would have grouped them,
/// with cost entries spread as they are in the counters. Its cost grows
/// with the clicks of the range.
pub fn report_filtered(
    app: &Core,
    user_id: i64,
    group_by: &str,
    range: &Range,
    filters: &Filters,
    limit: i64,
) -> Result<Vec<Row>, Error> {
    if !GROUPS.contains(&group_by) {
        return Err(Error::internal(format!("unknown report grouping {group_by:?}")));
    }
    let (from, to) = range.bounds();
    let offset = app.utc_offset;
    let from_ms = clock::local_midnight(from, offset).map_or(i64::MIN, |t| t / 1000);
    let to_ms = clock::local_midnight(to, offset).map_or(i64::MAX, |t| (t + clock::DAY) / 1000);
    let mut rows: HashMap<String, Row> = HashMap::new();
    fn row(rows: &mut HashMap<String, Row>, group: String) -> &mut Row {
        rows.entry(group.clone()).or_insert_with(|| Row { group, ..Row::default() })
    }
    app.db.read(|c| {
        let c = &c.unchecked_transaction()?;
        // Days with cost entries: what the entries change, per group, among
        // the clicks the filters keep (added once the clicks are counted).
        let entry_days: Vec<(i64, String)> = c
            .prepare_cached(
                "SELECT DISTINCT link_id, day FROM cost_entries WHERE user_id = ?1 AND day BETWEEN ?2 AND ?3
                 AND (?4 IS NULL OR link_id = ?4)",
            )?
            .query_map(params![user_id, from, to, filters.link_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut kept: Vec<(&str, String)> = Vec::new();
        kept.extend(filters.sub_id.clone().map(|v| ("sub_id", v)));
        kept.extend(filters.country.clone().map(|v| ("country", v)));
        kept.extend(filters.device.clone().map(|v| ("device", v)));
        kept.extend(filters.destination_id.map(|v| ("destination", v.to_string())));
        let mut corrections: HashMap<String, i64> = HashMap::new();
        for (link_id, day) in &entry_days {
            for (group, micros) in super::costs::corrections(c, user_id, *link_id, day, offset, group_by, &kept)? {
                *corrections.entry(group).or_default() += micros;
            }
        }
        // sub_id '' is the clicks without one (no interned value).
        let sub_value: Option<Option<i64>> = match filters.sub_id.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                c.prepare_cached("SELECT id FROM click_values WHERE text = ?1")?
                    .query_row([text], |r| r.get(0))
                    .optional()?,
            ),
        };
        let no_sub = filters.sub_id.as_deref() == Some("");
        if sub_value != Some(None) {
            let mut stmt = c.prepare_cached(
                "SELECT c.id, c.link_id, c.at,
                        CASE WHEN ?10 = 'sub_id' THEN coalesce((SELECT text FROM click_values WHERE id = c.sub1), '') END,
                        c.country, c.device, c.destination_id, c.lander_id,
                        CASE WHEN ?10 = 'os' THEN coalesce((SELECT text FROM user_agents WHERE id = c.ua), '') END,
                        c.is_unique, coalesce(c.cost, 0)
                 FROM clicks c WHERE c.user_id = ?1 AND c.at >= ?2 AND c.at < ?3 AND c.device != ?4
                 AND (?5 IS NULL OR c.link_id = ?5) AND (?6 IS NULL OR c.country = ?6)
                 AND (?7 IS NULL OR c.device = ?7) AND (?8 IS NULL OR c.sub1 = ?8) AND (NOT ?11 OR c.sub1 IS NULL)
                 AND (?9 IS NULL OR c.destination_id = ?9 OR c.lander_id = ?9)",
            )?;
            let device = filters.device.as_deref().map(super::store::device_code);
            let sub = sub_value.flatten();
            let mut found = stmt.query(params![
                user_id,
                from_ms,
                to_ms,
                super::store::BOT,
                filters.link_id,
                filters.country,
                device,
                sub,
                filters.destination_id,
                group_by,
                no_sub
            ])?;
            while let Some(r) = found.next()? {
                let (link_id, at_ms): (i64, i64) = (r.get(1)?, r.get(2)?);
                let offer: Option<i64> = r.get::<_, Option<i64>>(6)?.filter(|d| *d != 0);
                let lander: Option<i64> = r.get(7)?;
                let unique = i64::from(r.get::<_, bool>(9)?);
                let cost: i64 = r.get(10)?;
                let at = at_ms * 1000;
                let click_day = || clock::local_date(at, offset);
                let group = match group_by {
                    "day" => click_day(),
                    "sub_id" => r.get(3)?,
                    "country" => r.get(4)?,
                    "device" => super::store::device_name(r.get(5)?).to_string(),
                    "link" => link_id.to_string(),
                    "os" => super::routing::os_of(&r.get::<_, String>(8)?).to_string(),
                    "hour" => format!("{:02}", super::clicks::local_hour(at, offset)),
                    _ => {
                        // By destination: a lander's view (and click-through), then the offer it led to.
                        if let Some(lander) = lander.filter(|l| filters.destination_id.is_none_or(|d| d == *l)) {
                            let r = row(&mut rows, lander.to_string());
                            r.clicks += 1;
                            r.unique_clicks += unique;
                            r.cost_micros += cost;
                            r.lander_clicks += i64::from(offer.is_some());
                        }
                        if let Some(offer) = offer.filter(|o| filters.destination_id.is_none_or(|d| d == *o)) {
                            let r = row(&mut rows, offer.to_string());
                            r.clicks += 1;
                            r.unique_clicks += unique;
                            if lander.is_none() {
                                r.cost_micros += cost;
                            }
                        }
                        continue;
                    }
                };
                let r = row(&mut rows, group);
                r.clicks += 1;
                r.unique_clicks += unique;
                r.cost_micros += cost;
            }
        }
        for (group, micros) in corrections {
            row(&mut rows, group).cost_micros += micros;
        }
        let mut leads = c.prepare_cached(
            "SELECT day, link_id, destination_id, sub1, country, device, os, hour, status, payout_cents FROM leads
             WHERE user_id = ?1 AND day BETWEEN ?2 AND ?3 AND (?4 IS NULL OR link_id = ?4)
             AND (?5 IS NULL OR country = ?5) AND (?6 IS NULL OR device = ?6) AND (?7 IS NULL OR sub1 = ?7)
             AND (?8 IS NULL OR destination_id = ?8)",
        )?;
        let mut found = leads.query(params![
            user_id,
            from,
            to,
            filters.link_id,
            filters.country,
            filters.device,
            filters.sub_id,
            filters.destination_id
        ])?;
        while let Some(r) = found.next()? {
            let group: Option<String> = match group_by {
                "day" => r.get(0)?,
                "link" => Some(r.get::<_, i64>(1)?.to_string()),
                "destination" => r.get::<_, Option<i64>>(2)?.map(|d| d.to_string()),
                "sub_id" => r.get(3)?,
                "country" => r.get(4)?,
                "device" => r.get(5)?,
                "os" => r.get(6)?,
                _ => r.get::<_, Option<i64>>(7)?.map(|h| format!("{h:02}")),
            };
            let Some(group) = group else { continue };
            let delta = super::rollup::Delta::lead(&r.get::<_, String>(8)?, r.get(9)?);
            let r = row(&mut rows, group);
            r.leads += delta.leads;
            r.approved_leads += delta.approved_leads;
            r.pending_leads += delta.pending_leads;
            r.rejected_leads += delta.rejected_leads;
            r.payout_cents += delta.payout_cents;
        }
        Ok(())
    })?;
    let mut rows: Vec<Row> = rows.into_values().collect();
    if group_by == "day" {
        rows.sort_by(|a, b| b.group.cmp(&a.group));
    } else {
        rows.sort_by(|a, b| {
            (b.clicks, b.payout_cents).cmp(&(a.clicks, a.payout_cents)).then_with(|| a.group.cmp(&b.group))
        });
    }
    rows.truncate(limit.max(0) as usize);
    if by_id(group_by) {
        app.db.read(|c| {
            let sql = if group_by == "link" {
                "SELECT name FROM links WHERE id = ?1 AND user_id = ?2"
            } else {
                "SELECT d.name FROM destinations d JOIN links l ON l.id = d.link_id WHERE d.id = ?1 AND l.user_id = ?2"
            };
            let mut stmt = c.prepare_cached(sql)?;
            for row in &mut rows {
                row.name = stmt.query_row(params![row.group, user_id], |r| r.get(0)).optional()?;
            }
            Ok(())
        })?;
    }
    Ok(rows)
}

/// All-time clicks and approved conversions of these destinations, for
/// the optimize mode.
pub fn destination_arms(conn: &Connection, user_id: i64, ids: &[i64]) -> rusqlite::Result<Vec<Arm>> {
    let mut stmt = conn.prepare_cached(
        "SELECT clicks, approved_leads FROM rollups WHERE user_id = ?1 AND dim = 'destination' AND day = ?2 AND value = ?3",
    )?;
    ids.iter()
        .map(|id| {
            let found = stmt.query_row(params![user_id, ALL_TIME, id.to_string()], |r| {
                Ok(Arm { clicks: r.get(0)?, approved: r.get(1)? })
            });
            match found {
                Err(rusqlite::Error::QueryReturnedNoRows) => Ok(Arm { clicks: 0, approved: 0 }),
                other => other,
            }
        })
        .collect()
}

/// `GET /api/links/{id}/stats`: one row per destination of the link, in
/// its order, from the rollups (a link with 10 M clicks costs what one with
/// ten does), with each offer's chance of having the best conversion rate.
pub fn link_stats(app: &Core, user_id: i64, routing: &Routing, range: &Range) -> Result<Vec<Value>, Error> {
    let counts: Vec<[i64; 7]> = app.db.read(|c| {
        // All time reads the all-time rows; a range reads its days (a
        // lander's click-throughs count on their own day, which the user's
        // 'all' rows do not see, so no shortcut there).
        let (from, to) = match range {
            Range { from: None, to: None } => (ALL_TIME, ALL_TIME),
            _ => range.bounds(),
        };
        let mut stmt = c.prepare_cached(
            "SELECT coalesce(sum(clicks), 0), coalesce(sum(unique_clicks), 0), coalesce(sum(lander_clicks), 0),
                    coalesce(sum(approved_leads), 0), coalesce(sum(pending_leads), 0), coalesce(sum(payout_cents), 0),
                    coalesce(sum(cost_micros), 0)
             FROM rollups WHERE user_id = ?1 AND dim = 'destination' AND value = ?2 AND day BETWEEN ?3 AND ?4",
        )?;
        let rows = routing.destinations.iter().map(|d| {
            stmt.query_row(params![user_id, d.id.to_string(), from, to], |r| {
                Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?])
            })
        });
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })?;
    let offers: Vec<usize> =
        (0..routing.destinations.len()).filter(|&i| routing.destinations[i].kind == Kind::Offer).collect();
    let arms: Vec<Arm> = offers.iter().map(|&i| Arm { clicks: counts[i][0], approved: counts[i][3] }).collect();
    let p_best = bandit::p_best(&arms, bandit::DRAWS, bandit::SEED);
    Ok(routing
        .destinations
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(i, (d, &[clicks, unique, lander_clicks, approved, pending, revenue, cost]))| {
            let p = offers.iter().position(|&o| o == i).map(|k| p_best[k]);
            let m = Money { clicks, revenue_cents: revenue, cost_micros: cost };
            let mut row = json!({
                "id": d.id,
                "name": d.name,
                "kind": d.kind.as_str(),
                "status": if d.active { "active" } else { "paused" },
                "clicks": clicks,
                "unique": unique,
                "lander_clicks": lander_clicks,
                "conversions": approved + pending,
                "approved": approved,
                "cr": conversion_rate(approved, clicks),
                "p_best": p.map(|p| (p * 10_000.0).round() / 10_000.0),
            });
            for (key, value) in m.entries() {
                row[key] = value;
            }
            if d.kind == Kind::Lander {
                row["ctr"] = conversion_rate(lander_clicks, clicks);
            }
            row
        })
        .collect())
}

/// Report rows as CSV: the group (and a link's name), the counters, payout
/// and cr with two decimals.
pub fn report_csv(group_by: &str, rows: &[Row]) -> String {
    use std::fmt::Write;
    let link = by_id(group_by);
    let mut out = String::with_capacity(64 * (rows.len() + 1));
    out.push_str(group_by);
    if link {
        out.push_str(",name");
    }
    out.push_str(",clicks,unique_clicks,leads,approved_leads,pending_leads,rejected_leads,payout,cr");
    out.push_str(",cost,revenue,profit,roi,epc,cpc\n");
    for row in rows {
        csv_cell(&mut out, &row.group);
        if link {
            out.push(',');
            csv_cell(&mut out, row.name.as_deref().unwrap_or(""));
        }
        let counters =
            [row.clicks, row.unique_clicks, row.leads, row.approved_leads, row.pending_leads, row.rejected_leads];
        for n in counters {
            let _ = write!(out, ",{n}");
        }
        let cr = conversion_rate(row.approved_leads, row.clicks).as_f64().unwrap_or(0.0);
        let _ = write!(out, ",{},{cr:.2}", super::money_text(row.payout_cents));
        for (_, value) in row.money().entries() {
            // Two decimals, as shown; an empty cell for no ROI.
            match value.as_f64() {
                Some(v) => {
                    let _ = write!(out, ",{v:.2}");
                }
                None => out.push(','),
            }
        }
        out.push('\n');
    }
    out
}

/// Appends one CSV cell for spreadsheets (OWASP's rule against formula
/// injection): text starting with = + - @ tab or CR is prefixed with ' so
/// no spreadsheet runs it as a formula (a sub_id is whatever a visitor
/// typed), and text holding , ; tab CR LF or " is quoted, so a spreadsheet
/// that splits on ; cannot find a formula inside a cell.
fn csv_cell(out: &mut String, text: &str) {
    let defuse = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = text.contains([',', ';', '\t', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if defuse {
        out.push('\'');
    }
    if quote {
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_asked_for_at_once_take_turns() {
        let pacer = std::sync::Arc::new(Pacer::default());
        pacer.run(1, || std::thread::sleep(Duration::from_millis(30)));
        let started = Instant::now();
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let pacer = std::sync::Arc::clone(&pacer);
                std::thread::spawn(move || pacer.run(1, Instant::now))
            })
            .collect();
        let mut ran: Vec<Instant> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        ran.sort();
        // The first waits 5 x 30 ms, each next one at least 6 x 30 ms more.
        assert!(ran[0] - started >= Duration::from_millis(140), "{:?}", ran[0] - started);
        assert!(ran[2] - ran[0] >= Duration::from_millis(150), "{:?}", ran[2] - ran[0]);
    }

    #[test]
    fn a_users_next_report_waits_five_times_the_last_ones_length_and_others_do_not() {
        let pacer = Pacer::default();
        pacer.run(1, || std::thread::sleep(Duration::from_millis(40)));
        let started = Instant::now();
        pacer.run(2, || ());
        assert!(started.elapsed() < Duration::from_millis(40), "another user waited");
        pacer.run(1, || ());
        assert!(started.elapsed() >= Duration::from_millis(190), "{:?}", started.elapsed());
    }

    fn row(group: &str, clicks: i64) -> Row {
        Row {
            group: group.into(),
            name: None,
            clicks,
            unique_clicks: 0,
            leads: 0,
            approved_leads: 0,
            pending_leads: 0,
            rejected_leads: 0,
            payout_cents: 0,
            lander_clicks: 0,
            cost_micros: 0,
        }
    }

    #[test]
    fn csv_escapes_and_defuses_formulas() {
        let head = "sub_id,clicks,unique_clicks,leads,approved_leads,pending_leads,rejected_leads,payout,cr,\
                    cost,revenue,profit,roi,epc,cpc\n";
        let zero = "0.00,0.00,0.00,,0.00,0.00";
        let rows = [row("=HYPERLINK(\"x\")", 3), row("a,b", 1)];
        assert_eq!(
            report_csv("sub_id", &rows),
            format!(
                "{head}\"'=HYPERLINK(\"\"x\"\")\",3,0,0,0,0,0,0.00,0.00,{zero}\n\"a,b\",1,0,0,0,0,0,0.00,0.00,{zero}\n"
            )
        );
        let rows = [row("a;=1+1", 1), row("x\t=2", 2), row("-1", 4)];
        assert_eq!(
            report_csv("sub_id", &rows),
            format!(
                "{head}\"a;=1+1\",1,0,0,0,0,0,0.00,0.00,{zero}\n\"x\t=2\",2,0,0,0,0,0,0.00,0.00,{zero}\n\
                 '-1,4,0,0,0,0,0,0.00,0.00,{zero}\n"
            )
        );
    }

    #[test]
    fn json_rows_name_their_group_and_links_their_id_and_name() {
        let mut r = row("7", 4);
        r.name = Some("Promo".into());
        r.approved_leads = 1;
        r.payout_cents = 250;
        let json = serde_json::to_string(&JsonRows { group_by: "link", rows: &[r.clone()] }).unwrap();
        assert_eq!(
            json,
            r#"[{"link":7,"clicks":4,"unique_clicks":0,"leads":0,"approved_leads":1,"pending_leads":0,"rejected_leads":0,"payout":2.5,"cr":25.0,"cost":0.0,"revenue":2.5,"profit":2.5,"roi":null,"epc":0.63,"cpc":0.0,"name":"Promo"}]"#
        );
        let json = serde_json::to_value(JsonRows { group_by: "sub_id", rows: &[r] }).unwrap();
        assert_eq!(json[0]["sub_id"], "7");
        assert!(json[0].get("name").is_none());
    }

    #[test]
    fn csv_money_and_rates_have_two_decimals_and_links_their_name() {
        let mut r = row("7", 3);
        r.name = Some("Promo, May".into());
        r.approved_leads = 1;
        r.payout_cents = 1205;
        r.cost_micros = 15_000_000;
        assert_eq!(
            report_csv("link", &[r]),
            "link,name,clicks,unique_clicks,leads,approved_leads,pending_leads,rejected_leads,payout,cr,\
             cost,revenue,profit,roi,epc,cpc\n\
             7,\"Promo, May\",3,0,0,1,0,0,12.05,33.33,15.00,12.05,-2.95,-19.67,4.02,5.00\n"
        );
    }
}
