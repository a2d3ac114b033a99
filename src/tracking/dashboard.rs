//! `GET /api/dashboard-data` and `GET /api/reports`: numbers read from the
//! rollup counters (and, for the live counter and the recent lists, from
//! the newest rows of `clicks` and `leads` by index), never a scan.

use super::{conversion_rate, money};
use crate::base::Core;
use crate::clock;
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use rusqlite::{params, Connection};
use serde_json::{json, Value};

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

    fn bounds(&self) -> (&str, &str) {
        (self.from.as_deref().unwrap_or("0000-00-00"), self.to.as_deref().unwrap_or("9999-99-99"))
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
}

fn totals(conn: &Connection, user_id: i64, from: &str, to: &str) -> rusqlite::Result<Totals> {
    conn.prepare_cached(
        "SELECT coalesce(sum(clicks), 0), coalesce(sum(leads), 0), coalesce(sum(payout_cents), 0)
         FROM rollups WHERE user_id = ?1 AND dim = 'all' AND value = '' AND day BETWEEN ?2 AND ?3",
    )?
    .query_row(params![user_id, from, to], |r| {
        Ok(Totals { clicks: r.get(0)?, leads: r.get(1)?, payout_cents: r.get(2)? })
    })
}

pub fn dashboard(app: &Core, rt: &super::Runtime, user_id: i64, range: &Range, limit: i64) -> Result<Value, Error> {
    let now = app.clock.now();
    let today = clock::local_date(now, app.utc_offset);
    let (from, to) = range.bounds();
    app.db.read(|c| {
        let live = rt.live.count(user_id, now);
        let clicks_today = totals(c, user_id, &today, &today)?.clicks;
        let all = totals(c, user_id, from, to)?;
        let mut stmt = c.prepare_cached(
            "SELECT value, sum(clicks), sum(leads), sum(approved_leads), sum(payout_cents) FROM rollups
             WHERE user_id = ?1 AND dim = 'sub_id' AND day BETWEEN ?2 AND ?3
             GROUP BY value ORDER BY sum(clicks) DESC, sum(payout_cents) DESC, value LIMIT ?4",
        )?;
        let report: Vec<Value> = stmt
            .query_map(params![user_id, from, to, limit], |r| {
                let (clicks, approved): (i64, i64) = (r.get(1)?, r.get(3)?);
                Ok(json!({
                    "sub_id": r.get::<_, String>(0)?,
                    "clicks": clicks,
                    "leads": r.get::<_, i64>(2)?,
                    "approved_leads": approved,
                    "total_payout": money(r.get(4)?),
                    "cr": conversion_rate(approved, clicks),
                }))
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
                "clicksToday": clicks_today,
                "totalLeads": all.leads,
                "totalPayout": money(all.payout_cents),
            },
            "report": report,
            "recent_clicks": recent_clicks,
            "recent_leads": recent_leads,
        }))
    })
}

pub const GROUPS: &[&str] = &["day", "sub_id", "country", "device", "link"];

/// One report row per day, sub_id, country, device or link.
pub fn report(app: &Core, user_id: i64, group_by: &str, range: &Range, limit: i64) -> Result<Vec<Value>, Error> {
    let (from, to) = range.bounds();
    // Days come from the 'all' rows; every other grouping from its own dimension.
    let (dim, key, order) = match group_by {
        "day" => ("all", "day", "day DESC"),
        _ => (group_by, "value", "sum(clicks) DESC, value"),
    };
    let sql = format!(
        "SELECT {key}, sum(clicks), sum(unique_clicks), sum(leads), sum(approved_leads), sum(pending_leads),
                sum(rejected_leads), sum(payout_cents),
                (SELECT name FROM links WHERE ?5 = 'link' AND links.id = CAST(value AS INTEGER) AND links.user_id = ?1)
         FROM rollups WHERE user_id = ?1 AND dim = ?2 AND day BETWEEN ?3 AND ?4
         GROUP BY {key} ORDER BY {order} LIMIT ?6"
    );
    app.db.read(|c| {
        let mut stmt = c.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![user_id, dim, from, to, group_by, limit], |r| {
            let (clicks, approved): (i64, i64) = (r.get(1)?, r.get(4)?);
            let mut row = json!({
                group_by: r.get::<_, String>(0)?,
                "clicks": clicks,
                "unique_clicks": r.get::<_, i64>(2)?,
                "leads": r.get::<_, i64>(3)?,
                "approved_leads": approved,
                "pending_leads": r.get::<_, i64>(5)?,
                "rejected_leads": r.get::<_, i64>(6)?,
                "payout": money(r.get(7)?),
                "cr": conversion_rate(approved, clicks),
            });
            if group_by == "link" {
                row["link"] = json!(r.get::<_, String>(0)?.parse::<i64>().unwrap_or(0));
                row["name"] = json!(r.get::<_, Option<String>>(8)?);
            }
            Ok(row)
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
}

/// Rows as CSV, for spreadsheets (OWASP's rule against formula
/// injection): a value starting with = + - @ tab or CR is prefixed with '
/// so no spreadsheet runs it as a formula (a sub_id is whatever a visitor
/// typed), and every value holding , ; tab CR LF or " is quoted, so a
/// spreadsheet that splits on ; cannot find a formula inside a cell.
pub fn to_csv(columns: &[&str], rows: &[Value]) -> String {
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                let text = match &row[*c] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    // Money and rates with their two decimals, as a spreadsheet expects.
                    Value::Number(n) if matches!(*c, "payout" | "cr") => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
                    other => other.to_string(),
                };
                let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text };
                if text.contains([',', ';', '\t', '"', '\n', '\r']) {
                    format!("\"{}\"", text.replace('"', "\"\""))
                } else {
                    text
                }
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_escapes_and_defuses_formulas() {
        let rows = vec![json!({"sub_id": "=HYPERLINK(\"x\")", "clicks": 3}), json!({"sub_id": "a,b", "clicks": 1})];
        assert_eq!(to_csv(&["sub_id", "clicks"], &rows), "sub_id,clicks\n\"'=HYPERLINK(\"\"x\"\")\",3\n\"a,b\",1\n");
        let rows = vec![json!({"sub_id": "a;=1+1", "clicks": 1}), json!({"sub_id": "x\t=2", "clicks": 2})];
        assert_eq!(to_csv(&["sub_id", "clicks"], &rows), "sub_id,clicks\n\"a;=1+1\",1\n\"x\t=2\",2\n");
    }
}
