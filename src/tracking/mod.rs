//! Tracking: links, the click redirect, conversion postbacks, the payment
//! notification, and the numbers built from them (rollups, dashboard,
//! reports).

pub mod bandit;
pub mod clicks;
pub mod dashboard;
pub mod device;
pub mod geoip;
pub mod links;
pub mod live;
pub mod payment;
pub mod postback;
pub mod rollup;
pub mod routing;
pub mod seed;
pub mod store;
pub mod visitors;

use crate::config;
use crate::db::group::GroupCommit;
use crate::error::Error;
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
    pub fn open(cfg: &config::Tracking, db_path: &std::path::Path) -> Result<Runtime, Error> {
        Ok(Runtime {
            geoip: geoip::Geo::open(cfg, db_path)?,
            slugs: Default::default(),
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

/// Reads money exactly into cents: `5`, `5.5`, `"5.25"`; more decimals are
/// rounded half up. Negative, non-numeric or huge values are None.
pub fn parse_money(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => parse_money_text(&n.to_string()),
        Value::String(s) => parse_money_text(s.trim()),
        _ => None,
    }
}

pub fn parse_money_text(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 13
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let digit = |i: usize| frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    let round_up = i64::from(digit(2) >= 5);
    let cents = whole.checked_mul(100)? + digit(0) * 10 + digit(1) + round_up;
    (cents <= MAX_CENTS).then_some(cents)
}

/// Cents as the JSON number the API shows (`1250.75`).
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
    fn conversion_rate_has_two_decimals() {
        assert_eq!(conversion_rate(80, 500), json!(16.0));
        assert_eq!(conversion_rate(1, 3), json!(33.33));
        assert_eq!(conversion_rate(2, 3), json!(66.67));
        assert_eq!(conversion_rate(5, 0), json!(0.0));
    }
}
