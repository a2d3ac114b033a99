//! Rollup counters: one row per user, dimension, value and local day,
//! bumped in the same transaction as the click or lead that changes them,
//! and the same for all time (day [`ALL_TIME`]). Every report reads
//! these; none scans `clicks`.

use rusqlite::{params, Connection};
use std::borrow::Cow;
use std::collections::HashMap;

/// The `day` of the all-time rows: sorts before every date, so a range
/// of dates never takes it in.
pub const ALL_TIME: &str = "";

/// Every dimension a row may have: `all` (the user's total, value ''),
/// then what reports group by.
pub const DIMS: &[&str] = &["all", "sub_id", "country", "device", "link", "destination", "os", "hour"];

/// What one event adds to (or, negative, takes from) its rollup rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub clicks: i64,
    pub unique_clicks: i64,
    pub bot_clicks: i64,
    pub leads: i64,
    pub approved_leads: i64,
    pub pending_leads: i64,
    pub rejected_leads: i64,
    pub payout_cents: i64,
    /// A lander's click-throughs (on its `destination` rows).
    pub lander_clicks: i64,
    /// Cost in micro-units.
    pub cost_micros: i64,
}

impl Delta {
    /// One lead in `status` worth `payout_cents` (counted as payout only when approved).
    pub fn lead(status: &str, payout_cents: i64) -> Delta {
        let mut d = Delta { leads: 1, ..Delta::default() };
        match status {
            "approved" => {
                d.approved_leads = 1;
                d.payout_cents = payout_cents;
            }
            "pending" => d.pending_leads = 1,
            _ => d.rejected_leads = 1,
        }
        d
    }

    /// A lead moving from one status (and payout) to another: the lead count stays.
    pub fn transition(from: &str, from_cents: i64, to: &str, to_cents: i64) -> Delta {
        let (old, new) = (Delta::lead(from, from_cents), Delta::lead(to, to_cents));
        Delta {
            approved_leads: new.approved_leads - old.approved_leads,
            pending_leads: new.pending_leads - old.pending_leads,
            rejected_leads: new.rejected_leads - old.rejected_leads,
            payout_cents: new.payout_cents - old.payout_cents,
            ..Delta::default()
        }
    }
}

/// The rows an event counts in: the user's total plus one per dimension.
pub struct Dims<'a> {
    pub sub_id: &'a str,
    pub country: &'a str,
    pub device: &'a str,
    pub link_id: i64,
    /// The destination (an offer or a lander) the event counts for; None
    /// for a click whose offer is not chosen yet.
    pub destination_id: Option<i64>,
    /// The click's OS and local hour; None for leads of before they were kept.
    pub os: Option<&'a str>,
    pub hour: Option<u8>,
}

impl std::ops::AddAssign for Delta {
    fn add_assign(&mut self, o: Delta) {
        self.clicks += o.clicks;
        self.unique_clicks += o.unique_clicks;
        self.bot_clicks += o.bot_clicks;
        self.leads += o.leads;
        self.approved_leads += o.approved_leads;
        self.pending_leads += o.pending_leads;
        self.rejected_leads += o.rejected_leads;
        self.payout_cents += o.payout_cents;
        self.lander_clicks += o.lander_clicks;
        self.cost_micros += o.cost_micros;
    }
}

/// Deltas of a whole batch, merged per row before they are written: a
/// batch of clicks on a busy sub_id updates its row once. Keys borrow from
/// the batch's events ([`Batch::add`]), so merging allocates nothing per
/// event, or own their text ([`Batch::add_owned`]).
#[derive(Default)]
pub struct Batch<'a>(HashMap<(i64, &'static str, Value<'a>, Cow<'a, str>), Delta>);

/// A row's value: text, a link's or destination's id (written as text), or
/// an hour (written with two digits, so hours sort).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Value<'a> {
    Text(Cow<'a, str>),
    Id(i64),
    Hour(u8),
}

/// The rows besides the user's total that an event with `dims` counts in.
fn rows<'a, 'd>(dims: &Dims<'d>, text: impl Fn(&'d str) -> Cow<'a, str>) -> Vec<(&'static str, Value<'a>)> {
    let mut rows = vec![
        ("sub_id", Value::Text(text(dims.sub_id))),
        ("country", Value::Text(text(dims.country))),
        ("device", Value::Text(text(dims.device))),
        ("link", Value::Id(dims.link_id)),
    ];
    rows.extend(dims.destination_id.map(|id| ("destination", Value::Id(id))));
    rows.extend(dims.os.map(|os| ("os", Value::Text(text(os)))));
    rows.extend(dims.hour.map(|hour| ("hour", Value::Hour(hour))));
    rows
}

impl<'a> Batch<'a> {
    pub fn add(&mut self, user_id: i64, day: &'a str, dims: &Dims<'a>, delta: Delta, total_only: bool) {
        let rows = if total_only { Vec::new() } else { rows(dims, Cow::Borrowed) };
        self.add_rows(user_id, Cow::Borrowed(day), rows, delta);
    }

    /// [`Batch::add`] for values that do not outlive the call.
    pub fn add_owned(&mut self, user_id: i64, day: &str, dims: &Dims, delta: Delta, total_only: bool) {
        let rows = if total_only { Vec::new() } else { rows(dims, |t| Cow::Owned(t.to_string())) };
        self.add_rows(user_id, Cow::Owned(day.to_string()), rows, delta);
    }

    /// Counts `delta` in one row of `dim` (one of [`DIMS`]) and `value`,
    /// on `day` and all time: a correction computed elsewhere (a cost entry).
    pub fn add_value(&mut self, user_id: i64, day: &str, dim: &'static str, value: &str, delta: Delta) {
        for day in [Cow::Owned(day.to_string()), Cow::Borrowed(ALL_TIME)] {
            *self.0.entry((user_id, dim, Value::Text(Cow::Owned(value.to_string())), day)).or_default() += delta;
        }
    }

    /// Counts `delta` for one destination only, on `day` and all time: a
    /// click leaving a lander (the click itself counted already).
    pub fn add_destination(&mut self, user_id: i64, day: &str, destination_id: i64, delta: Delta) {
        for day in [Cow::Owned(day.to_string()), Cow::Borrowed(ALL_TIME)] {
            *self.0.entry((user_id, "destination", Value::Id(destination_id), day)).or_default() += delta;
        }
    }

    /// Adds `delta` to the user's total row and to `rows` (dimension and
    /// value), each on `day` and all time.
    fn add_rows(&mut self, user_id: i64, day: Cow<'a, str>, rows: Vec<(&'static str, Value<'a>)>, delta: Delta) {
        for day in [day, Cow::Borrowed(ALL_TIME)] {
            *self.0.entry((user_id, "all", Value::Text(Cow::Borrowed("")), day.clone())).or_default() += delta;
            for (dim, value) in &rows {
                *self.0.entry((user_id, dim, value.clone(), day.clone())).or_default() += delta;
            }
        }
    }

    pub fn write(self, conn: &Connection) -> rusqlite::Result<()> {
        for ((user_id, dim, value, day), delta) in self.0 {
            match value {
                Value::Text(text) => upsert(conn, user_id, dim, &text, &day, delta)?,
                Value::Id(id) => upsert(conn, user_id, dim, &id.to_string(), &day, delta)?,
                Value::Hour(hour) => upsert(conn, user_id, dim, &format!("{hour:02}"), &day, delta)?,
            }
        }
        Ok(())
    }
}

/// Adds `delta` to the user's total row and, unless `total_only`, to the
/// sub_id, country, device, link, destination, os and hour rows of `day`
/// and of all time.
pub fn add(
    conn: &Connection,
    user_id: i64,
    day: &str,
    dims: &Dims,
    delta: Delta,
    total_only: bool,
) -> rusqlite::Result<()> {
    // One event is a batch of one: which rows it counts in is said once, in the batch.
    let mut batch = Batch::default();
    batch.add(user_id, day, dims, delta, total_only);
    batch.write(conn)
}

fn upsert(conn: &Connection, user_id: i64, dim: &str, value: &str, day: &str, d: Delta) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO rollups (user_id, dim, value, day, clicks, unique_clicks, bot_clicks, leads,
                              approved_leads, pending_leads, rejected_leads, payout_cents, lander_clicks, cost_micros)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (user_id, dim, day, value) DO UPDATE SET
             clicks = clicks + excluded.clicks,
             unique_clicks = unique_clicks + excluded.unique_clicks,
             bot_clicks = bot_clicks + excluded.bot_clicks,
             leads = leads + excluded.leads,
             approved_leads = approved_leads + excluded.approved_leads,
             pending_leads = pending_leads + excluded.pending_leads,
             rejected_leads = rejected_leads + excluded.rejected_leads,
             payout_cents = payout_cents + excluded.payout_cents,
             lander_clicks = lander_clicks + excluded.lander_clicks,
             cost_micros = cost_micros + excluded.cost_micros",
    )?
    .execute(params![
        user_id,
        dim,
        value,
        day,
        d.clicks,
        d.unique_clicks,
        d.bot_clicks,
        d.leads,
        d.approved_leads,
        d.pending_leads,
        d.rejected_leads,
        d.payout_cents,
        d.lander_clicks,
        d.cost_micros
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Delta;

    #[test]
    fn transitions_move_counts_and_payout() {
        let d = Delta::transition("pending", 500, "approved", 700);
        assert_eq!((d.leads, d.pending_leads, d.approved_leads, d.payout_cents), (0, -1, 1, 700));
        let d = Delta::transition("approved", 700, "rejected", 700);
        assert_eq!((d.approved_leads, d.rejected_leads, d.payout_cents), (-1, 1, -700));
        assert_eq!(Delta::lead("rejected", 900).payout_cents, 0);
    }
}
