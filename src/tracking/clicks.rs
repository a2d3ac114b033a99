//! The click redirect, `GET /go/{slug}`: record the click (with its
//! uniqueness and rollups in the same transaction), then 302 to the
//! destination with the macros filled in.

use super::device;
use super::links;
use super::rollup::{self, Delta, Dims};
use crate::app::App;
use crate::clock::{self, DAY};
use crate::crypto;
use crate::error::Error;
use crate::http::input::{form_pairs, percent_encode};
use rusqlite::{params, OptionalExtension};
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
pub fn fill(url: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(url.len() + 32);
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        match after.find('}').and_then(|close| value(&after[1..close]).map(|v| (close, v))) {
            Some((close, v)) => {
                out.push_str(&percent_encode(&v));
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
pub fn country(app: &App, ip: IpAddr, header: Option<&str>) -> String {
    let from_geoip = app.geoip.as_ref().and_then(|reader| {
        let found = reader.lookup(ip).ok()?;
        found.decode_path::<String>(&maxminddb::path!["country", "iso_code"]).ok().flatten()
    });
    let code = from_geoip.or_else(|| header.map(str::to_string)).unwrap_or_default();
    let code = code.trim().to_ascii_uppercase();
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        code
    } else {
        "XX".to_string()
    }
}

/// A new click id: 128 random bits, URL-safe base64 (22 characters).
pub fn new_clickid() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = u128::from_le_bytes(crypto::random_bytes::<16>());
    (0..22).map(|i| ALPHABET[((bytes >> (i * 6)) & 63) as usize] as char).collect()
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
pub fn record(app: &App, visit: &Visit) -> Result<Option<String>, Error> {
    let Some(target) = app.db.read(|c| Ok(links::find_by_slug(c, visit.slug)?))? else { return Ok(None) };
    if !target.active {
        return Ok(None);
    }
    let params = Params::parse(visit.query);
    let device = device::detect(visit.user_agent);
    let is_bot = device == "bot";
    let country = country(app, visit.ip, visit.country_header);
    let clickid = new_clickid();
    let now = app.clock.now();
    let day = clock::local_date(now, app.utc_offset);
    let ip = visit.ip.to_string();
    let user_agent = super::clip(visit.user_agent, MAX_USER_AGENT);
    let fingerprint = &crypto::sha256(format!("{ip}\n{user_agent}").as_bytes())[..16];

    app.db.write(|tx| {
        // Unique: this visitor has not clicked this link in the last 24 hours.
        let is_unique = !is_bot && {
            let last: Option<i64> = tx
                .prepare_cached("SELECT last_at FROM click_fingerprints WHERE link_id = ?1 AND fingerprint = ?2")?
                .query_row(params![target.id, fingerprint], |r| r.get(0))
                .optional()?;
            tx.prepare_cached(
                "INSERT INTO click_fingerprints (link_id, fingerprint, last_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (link_id, fingerprint) DO UPDATE SET last_at = excluded.last_at",
            )?
            .execute(params![target.id, fingerprint, now])?;
            last.is_none_or(|t| t <= now - DAY)
        };
        let [s1, s2, s3, s4, s5] = &params.subs;
        tx.prepare_cached(
            "INSERT INTO clicks (clickid, user_id, link_id, sub1, sub2, sub3, sub4, sub5, ext_id, country, device,
                                 ip, user_agent, is_unique, day, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            clickid,
            target.user_id,
            target.id,
            s1,
            s2,
            s3,
            s4,
            s5,
            params.ext_id,
            country,
            device,
            ip,
            user_agent,
            is_unique,
            day,
            now
        ])?;
        let delta = if is_bot {
            Delta { bot_clicks: 1, ..Delta::default() }
        } else {
            Delta { clicks: 1, unique_clicks: i64::from(is_unique), ..Delta::default() }
        };
        let dims = Dims { sub_id: s1, country: &country, device, link_id: target.id };
        rollup::add(tx, target.user_id, &day, &dims, delta, is_bot)?;
        Ok(())
    })?;

    let location = fill(&target.url, |name| {
        Some(match name {
            "clickid" => clickid.clone(),
            "sub_id" | "sub1" => params.subs[0].clone(),
            "sub2" => params.subs[1].clone(),
            "sub3" => params.subs[2].clone(),
            "sub4" => params.subs[3].clone(),
            "sub5" => params.subs[4].clone(),
            "ext_id" => params.ext_id.clone(),
            "country_code" => country.clone(),
            "device_type" => device.to_string(),
            _ => return None,
        })
    });
    Ok(Some(location))
}

/// Forgets visitors last seen over a day ago; run by the maintenance thread.
pub fn prune(conn: &rusqlite::Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM click_fingerprints WHERE last_at <= ?1", [now - DAY])
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

    #[test]
    fn clickids_are_22_url_safe_characters_and_distinct() {
        let a = new_clickid();
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, new_clickid());
    }
}
