//! Spend known later (SPEC §12): a cost entry sets a day's total cost for
//! a link, or for one sub_id of it, replacing what that day's clicks
//! carried for that scope. An entry for a sub_id wins for that sub_id; the
//! link's entry is spread over its other clicks of the day by count. The
//! counters follow: each change recomputes the link's day from its raw
//! clicks and moves the difference into the rollups, so reports stay
//! O(rows shown).

use super::rollup::{self, Delta};
use super::{clip, money, store};
use crate::base::Core;
use crate::clock::{self, Micros, DAY};
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Largest amount one entry sets: a billion in any currency.
const MAX_AMOUNT_MICROS: i64 = 1_000_000_000 * 1_000_000;
/// Lines one cost import takes.
pub const MAX_IMPORT_LINES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub link_id: i64,
    pub day: String,
    pub sub_id: Option<String>,
    pub amount_micros: i64,
    pub created_at: Micros,
}

pub fn to_json(e: &Entry) -> Value {
    json!({
        "id": e.id,
        "link_id": e.link_id,
        "day": e.day,
        "sub_id": e.sub_id,
        "amount": money(super::micros_to_cents(e.amount_micros)),
        "created_at": clock::format(e.created_at),
    })
}

/// An entry as sent, checked.
pub struct NewEntry {
    pub link_id: i64,
    pub day: String,
    pub sub_id: Option<String>,
    pub amount_micros: i64,
}

fn invalid(field: &str, key: &'static str) -> Msg {
    Msg::new(key).arg("attribute", field.replace('_', " "))
}

/// Checks one entry's fields (`field` names each error: `amount`, or
/// `lines.3` for a CSV line); the link must be one of `user_id`'s.
pub fn check(
    conn: &Connection,
    user_id: i64,
    link_id: &str,
    day: &str,
    sub_id: &str,
    amount: &str,
    today: &str,
) -> Result<NewEntry, Vec<(&'static str, Msg)>> {
    let mut errors = Vec::new();
    let link = super::links::find_owned(conn, user_id, link_id.trim()).ok().map(|link| link.id);
    if link.is_none() {
        errors.push(("link_id", invalid("link_id", "costs.unknown_link")));
    }
    let day = day.trim();
    if !clock::is_date(day) {
        errors.push(("day", invalid("day", "validation.date")));
    } else if day >= today {
        // A day's spend is known once the day is over; clicks still landing
        // on it would change how an entry is spread.
        errors.push(("day", invalid("day", "costs.future_day")));
    }
    let amount = super::parse_micros(amount, MAX_AMOUNT_MICROS);
    if amount.is_none() {
        errors.push(("amount", invalid("amount", "validation.money")));
    }
    let sub_id = sub_id.trim();
    if sub_id.chars().count() > super::clicks::MAX_PARAM {
        errors.push(("sub_id", invalid("sub_id", "validation.max").arg("max", super::clicks::MAX_PARAM)));
    }
    match (link, amount) {
        (Some(link_id), Some(amount_micros)) if errors.is_empty() => Ok(NewEntry {
            link_id,
            day: day.to_string(),
            sub_id: Some(clip(sub_id, super::clicks::MAX_PARAM)).filter(|s| !s.is_empty()),
            amount_micros,
        }),
        _ => Err(errors),
    }
}

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Entry> {
    let sub_id: String = r.get(3)?;
    Ok(Entry {
        id: r.get(0)?,
        link_id: r.get(1)?,
        day: r.get(2)?,
        sub_id: Some(sub_id).filter(|s| !s.is_empty()),
        amount_micros: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// The user's entries of days `from` to `to`, by day then link.
pub fn list(conn: &Connection, user_id: i64, from: &str, to: &str) -> rusqlite::Result<Vec<Entry>> {
    conn.prepare_cached(
        "SELECT id, link_id, day, sub_id, amount_micros, created_at FROM cost_entries
         WHERE user_id = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY day DESC, link_id, sub_id LIMIT 10000",
    )?
    .query_map(params![user_id, from, to], from_row)?
    .collect()
}

/// Cost writes take turns: each reads its days' clicks from a snapshot,
/// outside the writer, then writes only what changed; taking turns keeps
/// another cost write from changing the entries in between.
static WRITES: Mutex<()> = Mutex::new(());

/// Per dimension and value, what a link's day's entries change in the
/// counters (the cost they set less what the clicks carried).
type Adjustments = HashMap<(&'static str, String), i64>;

/// A day's entries, by sub_id ('' for the whole link).
fn stored_entries(conn: &Connection, link_id: i64, day: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare_cached("SELECT sub_id, amount_micros FROM cost_entries WHERE link_id = ?1 AND day = ?2")?
        .query_map(params![link_id, day], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Sets entries (each replacing the one of its scope) and moves their
/// links' days in the counters, in one transaction.
pub fn set(app: &Core, user_id: i64, entries: &[NewEntry]) -> Result<Vec<Entry>, Error> {
    let _turn = WRITES.lock().unwrap_or_else(|e| e.into_inner());
    let now = app.clock.now();
    let plans = app.db.read(|c| {
        let c = &c.unchecked_transaction()?;
        let mut days: BTreeMap<(i64, &str), Vec<(String, i64)>> = BTreeMap::new();
        for e in entries {
            let list = match days.entry((e.link_id, e.day.as_str())) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => v.insert(stored_entries(c, e.link_id, &e.day)?),
            };
            let sub = e.sub_id.clone().unwrap_or_default();
            list.retain(|(s, _)| *s != sub);
            list.push((sub, e.amount_micros));
        }
        let mut plans = Vec::with_capacity(days.len());
        for ((link_id, day), list) in &days {
            plans.push((*link_id, day.to_string(), adjustments(c, user_id, *link_id, day, app.utc_offset, list)?));
        }
        Ok(plans)
    })?;
    app.db.write(|tx| {
        let mut saved = Vec::with_capacity(entries.len());
        for e in entries {
            let entry = tx
                .prepare_cached(
                    "INSERT INTO cost_entries (user_id, link_id, day, sub_id, amount_micros, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (link_id, day, sub_id) DO UPDATE SET amount_micros = excluded.amount_micros,
                         created_at = excluded.created_at
                     RETURNING id, link_id, day, sub_id, amount_micros, created_at",
                )?
                .query_row(
                    params![user_id, e.link_id, e.day, e.sub_id.as_deref().unwrap_or(""), e.amount_micros, now],
                    from_row,
                )?;
            saved.push(entry);
        }
        for (link_id, day, adjust) in &plans {
            apply(tx, user_id, *link_id, day, adjust)?;
        }
        Ok(saved)
    })
}

/// Removes an entry of the user's; its scope's clicks count what they
/// carried again.
pub fn delete(app: &Core, user_id: i64, id: &str) -> Result<(), Error> {
    let id: i64 = id.parse().map_err(|_| Error::NotFound)?;
    let _turn = WRITES.lock().unwrap_or_else(|e| e.into_inner());
    let (link_id, day, adjust) = app.db.read(|c| {
        let c = &c.unchecked_transaction()?;
        let (link_id, day, sub): (i64, String, String) = c
            .prepare_cached("SELECT link_id, day, sub_id FROM cost_entries WHERE id = ?1 AND user_id = ?2")?
            .query_row(params![id, user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?
            .ok_or(Error::NotFound)?;
        let mut list = stored_entries(c, link_id, &day)?;
        list.retain(|(s, _)| *s != sub);
        let adjust = adjustments(c, user_id, link_id, &day, app.utc_offset, &list)?;
        Ok((link_id, day, adjust))
    })?;
    app.db.write(|tx| {
        tx.prepare_cached("DELETE FROM cost_entries WHERE id = ?1 AND user_id = ?2")?.execute(params![id, user_id])?;
        apply(tx, user_id, link_id, &day, &adjust)
    })
}

/// One stored click of a link's day, as the counters saw it.
struct DayClick {
    sub_id: String,
    /// Every row besides the user's total and the link that it counts in.
    rows: Vec<(&'static str, String)>,
    carried: i64,
}

/// What `entries` change in the counters of `link_id`'s `day`: what each
/// click should cost, less what it carried, in every row it counts in.
/// Refused when that day's raw clicks were purged (the counters could not
/// be split any more).
fn adjustments(
    conn: &Connection,
    user_id: i64,
    link_id: i64,
    day: &str,
    utc_offset: i32,
    entries: &[(String, i64)],
) -> Result<Adjustments, Error> {
    let clicks = day_clicks(conn, user_id, link_id, day, utc_offset)?;
    let counted: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(clicks), 0) FROM rollups WHERE user_id = ?1 AND dim = 'link' AND day = ?2 AND value = ?3",
        )?
        .query_row(params![user_id, day, link_id.to_string()], |r| r.get(0))?;
    if (clicks.len() as i64) < counted {
        return Err(FieldErrors::single("day", Msg::new("costs.purged_day").arg("day", day)));
    }
    let (shares, unspread) = shares(entries, &clicks);
    // Rows by OS and hour exist from schema step 9 on: a day before it has none to adjust.
    let by_os_and_hour: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM rollups WHERE user_id = ?1 AND dim = 'os' AND day = ?2)")?
        .query_row(params![user_id, day], |r| r.get(0))?;
    let mut adjust = Adjustments::new();
    for (c, share) in clicks.iter().zip(&shares) {
        let Some(share) = share else { continue };
        let change = share - c.carried;
        let rows = c.rows.iter().filter(|(dim, _)| by_os_and_hour || !matches!(*dim, "os" | "hour"));
        for key in [("all", String::new()), ("link", link_id.to_string())].into_iter().chain(rows.cloned()) {
            *adjust.entry(key).or_default() += change;
        }
    }
    // An entry with no clicks of its scope that day still counts for the
    // day: in the user's and the link's totals (and its sub_id's row).
    for (sub, amount) in unspread {
        *adjust.entry(("all", String::new())).or_default() += amount;
        *adjust.entry(("link", link_id.to_string())).or_default() += amount;
        if !sub.is_empty() {
            *adjust.entry(("sub_id", sub)).or_default() += amount;
        }
    }
    Ok(adjust)
}

/// Moves the counters of a link's day from the adjustment last made to
/// `adjust`, and keeps `adjust` as the last made.
fn apply(tx: &Connection, user_id: i64, link_id: i64, day: &str, adjust: &Adjustments) -> Result<(), Error> {
    let before: HashMap<(String, String), i64> = tx
        .prepare_cached("SELECT dim, value, micros FROM cost_adjustments WHERE link_id = ?1 AND day = ?2")?
        .query_map(params![link_id, day], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut rollups = rollup::Batch::default();
    for ((dim, value), micros) in adjust {
        let was = before.get(&(dim.to_string(), value.clone())).copied().unwrap_or(0);
        if *micros != was {
            rollups.add_value(user_id, day, dim, value, Delta { cost_micros: micros - was, ..Delta::default() });
        }
    }
    for ((dim, value), was) in &before {
        if let Some(&dim) = rollup::DIMS.iter().find(|d| **d == dim) {
            if !adjust.contains_key(&(dim, value.clone())) && *was != 0 {
                rollups.add_value(user_id, day, dim, value, Delta { cost_micros: -was, ..Delta::default() });
            }
        }
    }
    rollups.write(tx)?;
    tx.prepare_cached("DELETE FROM cost_adjustments WHERE link_id = ?1 AND day = ?2")?
        .execute(params![link_id, day])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO cost_adjustments (user_id, link_id, day, dim, value, micros) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for ((dim, value), micros) in adjust.iter().filter(|(_, m)| **m != 0) {
        insert.execute(params![user_id, link_id, day, dim, value, micros])?;
    }
    Ok(())
}

/// What each of a link's day's `clicks` costs under `entries` (None: what
/// it carried, no entry covers it), and the entries with no clicks of
/// their scope to spread over (sub_id, amount). Each click's share of its
/// scope's entry is exact: the remainder goes a micro-unit at a time to
/// the first clicks (in the order stored).
fn shares(entries: &[(String, i64)], clicks: &[DayClick]) -> (Vec<Option<i64>>, Vec<(String, i64)>) {
    let link_entry = entries.iter().find(|(s, _)| s.is_empty()).map(|(_, a)| *a);
    let by_sub: HashMap<&str, i64> =
        entries.iter().filter(|(s, _)| !s.is_empty()).map(|(s, a)| (s.as_str(), *a)).collect();
    let scope_of = |c: &DayClick| by_sub.contains_key(c.sub_id.as_str()).then(|| c.sub_id.clone());
    let mut sizes: HashMap<Option<String>, i64> = HashMap::new();
    for c in clicks {
        *sizes.entry(scope_of(c)).or_default() += 1;
    }
    let mut seen: HashMap<Option<String>, i64> = HashMap::new();
    let shares = clicks
        .iter()
        .map(|c| {
            let scope = scope_of(c);
            let amount = match &scope {
                Some(sub) => by_sub.get(sub.as_str()).copied(),
                None => link_entry,
            }?;
            let n = sizes[&scope];
            let k = seen.entry(scope).or_default();
            let share = amount / n + i64::from(*k < amount % n);
            *k += 1;
            Some(share)
        })
        .collect();
    let unspread = entries
        .iter()
        .filter(|(sub, _)| !sizes.contains_key(&Some(sub.clone()).filter(|s| !s.is_empty())))
        .cloned()
        .collect();
    (shares, unspread)
}

/// For a report read from the raw clicks (narrowed by `filters`, pairs of
/// dimension and value): what a link's day's entries change, per value of
/// `group_by`, among the clicks the filters keep. Empty without entries.
pub fn corrections(
    conn: &Connection,
    user_id: i64,
    link_id: i64,
    day: &str,
    utc_offset: i32,
    group_by: &str,
    filters: &[(&str, String)],
) -> Result<HashMap<String, i64>, Error> {
    let entries = stored_entries(conn, link_id, day)?;
    let mut out: HashMap<String, i64> = HashMap::new();
    if entries.is_empty() {
        return Ok(out);
    }
    let clicks = day_clicks(conn, user_id, link_id, day, utc_offset)?;
    let (shares, unspread) = shares(&entries, &clicks);
    let group_of = |rows: &[(&'static str, String)]| -> Option<String> {
        match group_by {
            "day" => Some(day.to_string()),
            "link" => Some(link_id.to_string()),
            _ => rows.iter().find(|(dim, _)| *dim == group_by).map(|(_, v)| v.clone()),
        }
    };
    for (c, share) in clicks.iter().zip(&shares) {
        let Some(share) = share else { continue };
        if !filters.iter().all(|(dim, value)| c.rows.iter().any(|(d, v)| d == dim && v == value)) {
            continue;
        }
        if let Some(group) = group_of(&c.rows) {
            *out.entry(group).or_default() += share - c.carried;
        }
    }
    for (sub, amount) in unspread {
        // Counted in the day's, the link's and its sub_id's rows only.
        let rows = if sub.is_empty() { vec![] } else { vec![("sub_id", sub.clone())] };
        let kept = filters.iter().all(|(dim, value)| rows.iter().any(|(d, v)| d == dim && v == value));
        let group = match group_by {
            "day" => Some(day.to_string()),
            "link" => Some(link_id.to_string()),
            "sub_id" if !sub.is_empty() => Some(sub),
            _ => None,
        };
        if let (true, Some(group)) = (kept, group) {
            *out.entry(group).or_default() += amount;
        }
    }
    Ok(out)
}

/// The link's non-bot clicks of a local day, oldest first, with the rows
/// each counted in (as the click path counted them).
fn day_clicks(tx: &Connection, user_id: i64, link_id: i64, day: &str, utc_offset: i32) -> Result<Vec<DayClick>, Error> {
    let start = clock::local_midnight(day, utc_offset).ok_or_else(|| Error::internal("a checked day"))?;
    let (from_ms, to_ms) = (start / 1000, (start + DAY) / 1000);
    let mut stmt = tx.prepare_cached(
        "SELECT coalesce((SELECT text FROM click_values WHERE id = c.sub1), ''), c.country, c.device,
                CASE WHEN c.lander_id IS NOT NULL THEN c.lander_id WHEN c.destination_id = 0 THEN NULL
                     ELSE c.destination_id END,
                coalesce((SELECT text FROM user_agents WHERE id = c.ua), ''), c.at, coalesce(c.cost, 0)
         FROM clicks c WHERE c.user_id = ?1 AND c.at >= ?2 AND c.at < ?3 AND c.link_id = ?4 AND c.device != ?5
         ORDER BY c.id",
    )?;
    let rows = stmt.query_map(params![user_id, from_ms, to_ms, link_id, store::BOT], |r| {
        let sub_id: String = r.get(0)?;
        let device = store::device_name(r.get(2)?);
        let destination: Option<i64> = r.get(3)?;
        let os = super::routing::os_of(&r.get::<_, String>(4)?);
        let hour = super::clicks::local_hour(r.get::<_, i64>(5)? * 1000, utc_offset);
        let mut rows = vec![("sub_id", sub_id.clone()), ("country", r.get(1)?), ("device", device.to_string())];
        rows.extend(destination.map(|id| ("destination", id.to_string())));
        rows.push(("os", os.to_string()));
        rows.push(("hour", format!("{hour:02}")));
        Ok(DayClick { sub_id, rows, carried: r.get(6)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Entries from a CSV file (`day,link_id,sub_id,amount`; `,` or `;`; the
/// header is line 1): all of them, or a 422 naming every failing line
/// (`lines.3`) and why.
pub fn from_csv(conn: &Connection, user_id: i64, body: &[u8], today: &str) -> Result<Vec<NewEntry>, Error> {
    let header = "day,link_id,sub_id,amount";
    let file = super::CsvFile::read(body, MAX_IMPORT_LINES, &["day", "link_id", "amount"], header)?;
    let [day, link, sub, amount] = ["day", "link_id", "sub_id", "amount"].map(|c| file.column(c));
    let lines = &file.rows;
    let mut errors = FieldErrors::default();
    let mut entries = Vec::with_capacity(lines.len());
    let get = |fields: &[String], i: Option<usize>| super::CsvFile::cell(fields, i).unwrap_or_default();
    for (line, fields) in lines {
        let checked =
            check(conn, user_id, &get(fields, link), &get(fields, day), &get(fields, sub), &get(fields, amount), today);
        match checked {
            Ok(e) => entries.push(e),
            Err(problems) => {
                for (field, msg) in problems {
                    errors.add(&format!("lines.{line}.{field}"), msg);
                }
            }
        }
    }
    errors.into_result()?;
    Ok(entries)
}
