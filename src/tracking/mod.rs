//! Tracking: links, the click redirect, conversion postbacks, the payment
//! notification, the numbers built from them (rollups, dashboard,
//! reports), and what watches them for the user (notifications, offer
//! monitoring).

pub mod bandit;
pub mod clicks;
pub mod costs;
pub mod dashboard;
pub mod device;
pub mod geoip;
pub mod links;
pub mod live;
pub mod monitor;
pub mod notify;
pub mod payment;
pub mod postback;
pub mod rollup;
pub mod routing;
pub mod seed;
pub mod store;
pub mod visitors;

use crate::config;
use crate::db::group::GroupCommit;
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use serde_json::Value;

/// The click path's state beside the database: the GeoIP database, active
/// links by slug, and the group commit of clicks.
pub struct Runtime {
    pub geoip: geoip::Geo,
    pub slugs: links::SlugCache,
    pub click_writer: GroupCommit<clicks::NewClick>,
    /// Row ids of clicks, handed out before they are written.
    pub ids: store::Ids,
    /// User-Agents and sub values already in their lookup tables.
    pub interner: store::Interner,
    /// Who clicked which link in the last day.
    pub visitors: visitors::Visitors,
    /// Clicks of the last 30 seconds, per user.
    pub live: live::Live,
    /// Spaces out each user's reports.
    pub reports: dashboard::Pacer,
    /// Conversions today of capped offers.
    pub caps: routing::Caps,
}

impl Runtime {
    pub fn open(cfg: &config::Config, db_path: &std::path::Path) -> Result<Runtime, Error> {
        Ok(Runtime {
            geoip: geoip::Geo::open(&cfg.tracking, db_path)?,
            slugs: links::SlugCache::new(cfg.monitor.auto_pause),
            click_writer: Default::default(),
            ids: Default::default(),
            interner: Default::default(),
            visitors: Default::default(),
            live: Default::default(),
            reports: Default::default(),
            caps: Default::default(),
        })
    }
}

/// Largest amount accepted: ten billion in any currency.
const MAX_CENTS: i64 = 1_000_000_000_000;

/// An uploaded CSV file (an import): its header and its rows, each with
/// its line number (the header is line 1).
pub struct CsvFile {
    header: Vec<String>,
    pub rows: Vec<(usize, Vec<String>)>,
}

impl CsvFile {
    /// Reads `body`, whose header must name the `required` columns (else a
    /// 422 on `file` showing `expected`, the header to use), with at most
    /// `max_rows` rows (else a 422 on `rows`, before more is parsed).
    pub fn read(body: &[u8], max_rows: usize, required: &[&str], expected: &str) -> Result<CsvFile, Error> {
        let unreadable = |reason: &str| FieldErrors::single("file", Msg::new("import.bad_file").arg("reason", reason));
        let text = std::str::from_utf8(body).map_err(|_| unreadable("it is not UTF-8 text"))?;
        let mut records = crate::text::csv_records(text, max_rows + 1).map_err(|e| match e {
            crate::text::CsvError::TooMany => {
                FieldErrors::single("rows", Msg::new("import.too_many_rows").arg("max", max_rows))
            }
            e => unreadable(&e.reason()),
        })?;
        if records.is_empty() {
            return Err(unreadable("it is empty"));
        }
        let (_, header) = records.remove(0);
        let file = CsvFile { header, rows: records };
        if required.iter().any(|name| file.column(name).is_none()) {
            return Err(unreadable(&format!("its first line must be the header {expected}")));
        }
        Ok(file)
    }

    /// Where the column `name` is (any case), if the header names it.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h.trim().eq_ignore_ascii_case(name))
    }

    /// A row's cell in `column`; None when the column or the cell is missing.
    pub fn cell(fields: &[String], column: Option<usize>) -> Option<String> {
        column.and_then(|i| fields.get(i)).cloned()
    }
}

/// A JSON scalar as the text a form or CSV cell would carry: a string as
/// it is, a number as written; anything else is None.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Reads money exactly into cents: `5`, `5.5`, `"5.25"`; more decimals are
/// rounded half up. Negative, non-numeric or huge values are None.
pub fn parse_money(value: &Value) -> Option<i64> {
    parse_money_text(&scalar_text(value)?)
}

pub fn parse_money_text(text: &str) -> Option<i64> {
    parse_decimal(text, 2, MAX_CENTS)
}

/// Largest cost a click may carry: 1 000 in any currency, in micro-units.
pub const MAX_CLICK_COST_MICROS: i64 = 1_000 * 1_000_000;

/// Reads an amount exactly into micro-units (millionths): `0.015`, `2`,
/// `"1.5"`; more than six decimals are rounded half up. Negative,
/// non-numeric (`NaN`, `1e400`) or larger than `max` is None.
pub fn parse_micros(text: &str, max: i64) -> Option<i64> {
    parse_decimal(text, 6, max)
}

/// A plain decimal (`12`, `12.5`, `.5`; no sign, exponent or separator)
/// as an integer count of 10^-`scale`, the digit after the last one kept
/// rounding half up; None beyond `max`.
fn parse_decimal(text: &str, scale: u32, max: i64) -> Option<i64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 18
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let digit = |i: usize| frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    let scale = scale as usize;
    let fraction = (0..scale).fold(0, |acc, i| acc * 10 + digit(i)) + i64::from(digit(scale) >= 5);
    let amount = whole.checked_mul(10_i64.pow(scale as u32))?.checked_add(fraction)?;
    (amount <= max).then_some(amount)
}

/// Micro-units to cents, rounded half up (away from zero for negatives):
/// the one rounding of money, at the edge.
pub fn micros_to_cents(micros: i64) -> i64 {
    let half = if micros < 0 { -5_000 } else { 5_000 };
    (micros + half) / 10_000
}

/// `numerator / denominator` in cents, rounded half up; 0 when the
/// denominator is 0.
fn cents_per(numerator_micros: i128, denominator: i64) -> i64 {
    if denominator <= 0 {
        return 0;
    }
    let d = i128::from(denominator) * 10_000;
    let half = if numerator_micros < 0 { -d / 2 } else { d / 2 };
    ((numerator_micros + half) / d).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The money columns of a report row (§12): cost, revenue (approved
/// payout), profit, roi (null without cost), epc and cpc, each rounded to
/// two decimals only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub clicks: i64,
    pub revenue_cents: i64,
    pub cost_micros: i64,
}

impl Money {
    /// Revenue less cost, in micro-units (i128: no sum of i64 amounts overflows it).
    pub fn profit_micros(&self) -> i128 {
        i128::from(self.revenue_cents) * 10_000 - i128::from(self.cost_micros)
    }

    pub fn cost(&self) -> Value {
        money(micros_to_cents(self.cost_micros))
    }

    pub fn revenue(&self) -> Value {
        money(self.revenue_cents)
    }

    pub fn profit(&self) -> Value {
        money(cents_per(self.profit_micros(), 1))
    }

    /// Profit per cost in percent, two decimals; null when nothing was spent.
    pub fn roi(&self) -> Value {
        if self.cost_micros <= 0 {
            return Value::Null;
        }
        money(roi_hundredths(self.profit_micros(), self.cost_micros))
    }

    pub fn epc(&self) -> Value {
        money(cents_per(i128::from(self.revenue_cents) * 10_000, self.clicks))
    }

    pub fn cpc(&self) -> Value {
        money(cents_per(i128::from(self.cost_micros), self.clicks))
    }

    /// The columns as JSON entries.
    pub fn entries(&self) -> [(&'static str, Value); 6] {
        [
            ("cost", self.cost()),
            ("revenue", self.revenue()),
            ("profit", self.profit()),
            ("roi", self.roi()),
            ("epc", self.epc()),
            ("cpc", self.cpc()),
        ]
    }
}

/// profit / cost × 100 in hundredths of a percent, rounded half up.
fn roi_hundredths(profit_micros: i128, cost_micros: i64) -> i64 {
    let (p, c) = (profit_micros * 10_000, i128::from(cost_micros));
    let half = if p < 0 { -c / 2 } else { c / 2 };
    ((p + half) / c).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Cents as the JSON number the API shows (`1250.75`).
/// An amount of cents as text with two decimals (`-12.05`): exact, for
/// CSV cells, URLs and messages.
pub fn money_text(cents: i64) -> String {
    let (sign, abs) = (if cents < 0 { "-" } else { "" }, cents.unsigned_abs());
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

pub fn money(cents: i64) -> Value {
    // Exact for every cent amount below 2^53 / 100.
    serde_json::Number::from_f64(cents as f64 / 100.0).map_or(Value::Null, Value::Number)
}

/// Conversion rate in percent, two decimals: approved leads per click.
pub fn conversion_rate(approved: i64, clicks: i64) -> Value {
    if clicks <= 0 {
        return money(0);
    }
    // Rounded half up in integer arithmetic, in hundredths of a percent.
    let hundredths = (approved * 10_000 * 2 + clicks) / (clicks * 2);
    money(hundredths)
}

/// Clips a caller-supplied value to `max` characters.
pub fn clip(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_is_parsed_exactly() {
        let cases = [
            (json!(5), Some(500)),
            (json!(5.5), Some(550)),
            (json!("5.25"), Some(525)),
            (json!("0.455"), Some(46)),
            (json!("0.454"), Some(45)),
            (json!(".5"), Some(50)),
            (json!("12."), Some(1200)),
            (json!("-1"), None),
            (json!("1e3"), None),
            (json!("abc"), None),
            (json!(""), None),
            (json!("."), None),
            (json!(true), None),
            (json!("99999999999999"), None),
        ];
        for (input, cents) in cases {
            assert_eq!(parse_money(&input), cents, "{input}");
        }
        assert_eq!(money(125075), json!(1250.75));
        assert_eq!(money(40050).to_string(), "400.5");
    }

    #[test]
    fn micros_are_parsed_exactly_and_money_columns_round_once() {
        let max = MAX_CLICK_COST_MICROS;
        assert_eq!(parse_micros("0.015", max), Some(15_000));
        assert_eq!(parse_micros("2", max), Some(2_000_000));
        assert_eq!(parse_micros(".0000005", max), Some(1));
        assert_eq!(parse_micros("1000", max), Some(max));
        for bad in ["1000.000001", "-1", "NaN", "1e400", "", ".", "1,5", "inf", "0x10", "99999999999999"] {
            assert_eq!(parse_micros(bad, max), None, "{bad}");
        }
        // 3 clicks, 10.00 revenue, 4.00 cost.
        let m = Money { clicks: 3, revenue_cents: 1000, cost_micros: 4_000_000 };
        assert_eq!(m.entries().map(|(_, v)| v.to_string()), ["4.0", "10.0", "6.0", "150.0", "3.33", "1.33"]);
        // A loss, and a cost below a cent per click: rounded at the edge only.
        let m = Money { clicks: 1000, revenue_cents: 0, cost_micros: 15_000_000 };
        assert_eq!((m.profit(), m.roi(), m.cpc()), (json!(-15.0), json!(-100.0), json!(0.02)));
        let m = Money { clicks: 0, revenue_cents: 250, cost_micros: 0 };
        assert_eq!((m.roi(), m.epc(), m.cpc()), (Value::Null, json!(0.0), json!(0.0)));
        assert_eq!(micros_to_cents(4_999), 0);
        assert_eq!(micros_to_cents(5_000), 1);
        assert_eq!(micros_to_cents(-5_000), -1);
    }

    #[test]
    fn conversion_rate_has_two_decimals() {
        assert_eq!(conversion_rate(80, 500), json!(16.0));
        assert_eq!(conversion_rate(1, 3), json!(33.33));
        assert_eq!(conversion_rate(2, 3), json!(66.67));
        assert_eq!(conversion_rate(5, 0), json!(0.0));
    }
}
