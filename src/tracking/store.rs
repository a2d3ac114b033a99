//! The compact `clicks` table (schema step 6): clickids as a random part
//! plus the row id, User-Agents and sub values interned, addresses as
//! bytes, times in milliseconds, devices as numbers. Every statement on
//! `clicks`, `user_agents`, `click_values`, `id_blocks` and
//! `legacy_clickids` is here.

use crate::crypto;
use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Bytes of randomness in a clickid: 96 bits, unguessable.
const SECRET: usize = 12;
/// Characters of the random part (base64url, no padding).
const SECRET_CHARS: usize = 16;

/// `base64url(secret)` then the row id in decimal: URL-safe, unique (the id
/// is), unguessable (the secret), and found through the primary key.
pub fn clickid(id: i64, secret: &[u8]) -> String {
    let mut out = data_encoding::BASE64URL_NOPAD.encode(secret);
    out.push_str(&id.to_string());
    out
}

/// The row id and random part of a clickid of this layout.
fn parse_clickid(clickid: &str) -> Option<(i64, Vec<u8>)> {
    let (secret, id) = (clickid.get(..SECRET_CHARS)?, clickid.get(SECRET_CHARS..)?);
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.len() > 18 {
        return None;
    }
    let secret = data_encoding::BASE64URL_NOPAD.decode(secret.as_bytes()).ok()?;
    Some((id.parse().ok()?, secret))
}

pub fn new_secret() -> [u8; SECRET] {
    crypto::random_bytes::<SECRET>()
}

const DEVICES: [&str; 4] = ["desktop", "mobile", "tablet", "bot"];
pub const BOT: i64 = 3;

pub fn device_code(device: &str) -> i64 {
    DEVICES.iter().position(|d| *d == device).unwrap_or(BOT as usize) as i64
}

pub fn device_name(code: i64) -> &'static str {
    DEVICES.get(code as usize).copied().unwrap_or("bot")
}

/// An address as 4 or 16 bytes.
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(|| v6.octets().to_vec(), |v4| v4.octets().to_vec()),
    }
}

/// The address of 4 or 16 bytes.
pub fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// A stored click's address: 4 or 16 bytes, or text for clicks moved in
/// from before the compact layout.
pub fn ip_from_column(value: rusqlite::types::ValueRef) -> Option<IpAddr> {
    match value {
        rusqlite::types::ValueRef::Blob(b) => ip_from_bytes(b),
        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(|t| t.parse().ok()),
        _ => None,
    }
}

/// Row ids handed out before the row is written, in blocks reserved in
/// `id_blocks` (so two processes never hand out the same one; a crash
/// leaves a gap).
#[derive(Default)]
pub struct Ids(Mutex<(i64, i64)>);

const BLOCK: i64 = 1000;

impl Ids {
    pub fn next(&self, db: &crate::db::Db) -> Result<i64, Error> {
        let mut range = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if range.0 >= range.1 {
            let first = db.write(|tx| Ok(reserve(tx, BLOCK)?))?;
            *range = (first, first + BLOCK);
        }
        range.0 += 1;
        Ok(range.0 - 1)
    }
}

/// Reserves `n` row ids; returns the first.
pub fn reserve(conn: &Connection, n: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached("UPDATE id_blocks SET next = next + ?1 WHERE name = 'clicks' RETURNING next - ?1")?
        .query_row([n], |r| r.get(0))
}

/// Interned texts by table, remembered once committed (a text interned by
/// a transaction that rolled back must not be remembered).
#[derive(Default)]
pub struct Interner {
    /// Text → id, one map per [`Kind`]: looked up by `&str`, so a click
    /// whose User-Agent and sub values are known allocates nothing here.
    known: Mutex<[HashMap<String, i64>; 2]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    UserAgent = 0,
    Value = 1,
}

impl Kind {
    fn statements(self) -> (&'static str, &'static str) {
        match self {
            Kind::UserAgent => {
                ("SELECT id FROM user_agents WHERE text = ?1", "INSERT INTO user_agents (text) VALUES (?1)")
            }
            Kind::Value => {
                ("SELECT id FROM click_values WHERE text = ?1", "INSERT INTO click_values (text) VALUES (?1)")
            }
        }
    }
}

/// Most texts remembered; past that the memory starts over.
const MAX_KNOWN: usize = 100_000;

/// Texts a transaction interned, remembered once it commits.
#[derive(Default)]
pub struct Fresh(Vec<(Kind, String, i64)>);

impl Interner {
    /// The id of `text` in its table, inserting it if new.
    pub fn id(&self, conn: &Connection, kind: Kind, text: &str, fresh: &mut Fresh) -> rusqlite::Result<i64> {
        if let Some(id) = self.known.lock().unwrap_or_else(|e| e.into_inner())[kind as usize].get(text) {
            return Ok(*id);
        }
        if let Some((_, _, id)) = fresh.0.iter().find(|(k, t, _)| *k == kind && t == text) {
            return Ok(*id);
        }
        let (select, insert) = kind.statements();
        // Found by the SELECT: committed before this transaction (whatever
        // this one inserted is in `fresh`), safe to remember now.
        if let Some(id) = conn.prepare_cached(select)?.query_row([text], |r| r.get(0)).optional()? {
            self.remember(vec![(kind, text.to_string(), id)]);
            return Ok(id);
        }
        conn.prepare_cached(insert)?.execute([text])?;
        let id = conn.last_insert_rowid();
        fresh.0.push((kind, text.to_string(), id));
        Ok(id)
    }

    /// Remembers what a committed transaction interned.
    pub fn committed(&self, fresh: Fresh) {
        self.remember(fresh.0);
    }

    fn remember(&self, entries: Vec<(Kind, String, i64)>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, text, id) in entries {
            let map = &mut known[kind as usize];
            if map.len() >= MAX_KNOWN {
                map.clear();
            }
            map.insert(text, id);
        }
    }
}

/// One click row as written.
pub struct Row<'a> {
    pub id: i64,
    pub secret: &'a [u8],
    pub user_id: i64,
    pub link_id: i64,
    pub at_ms: i64,
    pub ip: &'a [u8],
    pub ua: i64,
    pub country: &'a str,
    pub device: i64,
    pub is_unique: bool,
    /// sub1..sub5 and ext_id: interned ids, None when empty.
    pub values: [Option<i64>; 6],
    /// The offer it went to (0: the link's fallback URL; None: not yet,
    /// it is on a lander), the lander, and the matched rule's name
    /// (interned).
    pub destination_id: Option<i64>,
    pub lander_id: Option<i64>,
    pub rule: Option<i64>,
    /// The cost it carried, in micro-units; None: no cost model.
    pub cost: Option<i64>,
}

pub fn insert(conn: &Connection, r: &Row) -> rusqlite::Result<()> {
    let [s1, s2, s3, s4, s5, ext] = r.values;
    conn.prepare_cached(
        "INSERT INTO clicks (id, secret, user_id, link_id, at, ip, ua, country, device, is_unique,
                             sub1, sub2, sub3, sub4, sub5, ext_id, destination_id, lander_id, rule, cost)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
    )?
    .execute(params![
        r.id,
        r.secret,
        r.user_id,
        r.link_id,
        r.at_ms,
        r.ip,
        r.ua,
        r.country,
        r.device,
        r.is_unique,
        s1,
        s2,
        s3,
        s4,
        s5,
        ext,
        r.destination_id,
        r.lander_id,
        r.rule,
        r.cost
    ])?;
    Ok(())
}

/// A stored click, as postbacks and leads need it.
pub struct Click {
    pub id: i64,
    pub user_id: i64,
    pub link_id: i64,
    pub clickid: String,
    pub sub1: String,
    pub ext_id: String,
    pub country: String,
    pub device: &'static str,
    pub at_ms: i64,
    /// The destination its conversions count for: its offer, else its
    /// lander; for a click of before smart links, its link's first
    /// destination; for a click sent to the link's fallback URL, its lander
    /// if it saw one, else None.
    pub destination_id: Option<i64>,
    pub user_agent: String,
}

const CLICK_COLUMNS: &str = "c.id, c.user_id, c.link_id, coalesce(s.text, ''), coalesce(e.text, ''), c.country, \
                             c.device, c.at, c.secret, l.clickid, \
                             CASE WHEN c.destination_id = 0 THEN c.lander_id ELSE coalesce(c.destination_id, c.lander_id, \
                                 (SELECT min(d.id) FROM destinations d WHERE d.link_id = c.link_id)) END, \
                             coalesce((SELECT text FROM user_agents WHERE id = c.ua), '')";
/// The click's interned values and, for clicks of before step 6, the
/// clickid it was handed out with.
const CLICK_JOINS: &str = "LEFT JOIN click_values s ON s.id = c.sub1 LEFT JOIN click_values e ON e.id = c.ext_id \
                           LEFT JOIN legacy_clickids l ON l.click_id = c.id";

fn click(r: &rusqlite::Row) -> rusqlite::Result<Click> {
    let id: i64 = r.get(0)?;
    let secret: Vec<u8> = r.get(8)?;
    let legacy: Option<String> = r.get(9)?;
    Ok(Click {
        id,
        user_id: r.get(1)?,
        link_id: r.get(2)?,
        clickid: legacy.unwrap_or_else(|| clickid(id, &secret)),
        sub1: r.get(3)?,
        ext_id: r.get(4)?,
        country: r.get(5)?,
        device: device_name(r.get(6)?),
        at_ms: r.get(7)?,
        destination_id: r.get(10)?,
        user_agent: r.get(11)?,
    })
}

/// The click with this row id.
pub fn by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Click>> {
    conn.prepare_cached(&format!("SELECT {CLICK_COLUMNS} FROM clicks c {CLICK_JOINS} WHERE c.id = ?1"))?
        .query_row([id], click)
        .optional()
}

/// The click a clickid names: this layout's (the row id, then the whole
/// clickid compared in constant time, so a wrong random part finds
/// nothing), or one handed out before it (`legacy_clickids`).
pub fn find(conn: &Connection, clickid_text: &str) -> rusqlite::Result<Option<Click>> {
    if let Some((id, _)) = parse_clickid(clickid_text) {
        if let Some(found) = by_id(conn, id)? {
            if crypto::ct_eq(found.clickid.as_bytes(), clickid_text.as_bytes()) {
                return Ok(Some(found));
            }
        }
    }
    let legacy: Option<i64> = conn
        .prepare_cached("SELECT click_id FROM legacy_clickids WHERE clickid = ?1")?
        .query_row([clickid_text], |r| r.get(0))
        .optional()?;
    match legacy {
        Some(id) => by_id(conn, id),
        None => Ok(None),
    }
}

/// A click as it leaves a lander (`GET /click/{clickid}`): what the
/// offer's macros and the choice of the offer need.
pub struct Funnel {
    pub id: i64,
    pub user_id: i64,
    pub link_id: i64,
    pub slug: String,
    pub clickid: String,
    /// The offer chosen when it left the lander before (0: the fallback URL).
    pub offer_id: Option<i64>,
    pub lander_id: Option<i64>,
    pub rule: String,
    pub ip: Option<IpAddr>,
    pub user_agent: String,
    pub country: String,
    pub device: &'static str,
    pub is_unique: bool,
    /// sub1..sub5, then ext_id.
    pub values: [String; 6],
}

/// The click a clickid of this layout names, for its lander's
/// click-through. Clickids of before step 6 had no landers.
pub fn funnel(conn: &Connection, clickid_text: &str) -> rusqlite::Result<Option<Funnel>> {
    let Some((id, _)) = parse_clickid(clickid_text) else { return Ok(None) };
    let value = |col: &str| format!("coalesce((SELECT text FROM click_values WHERE id = c.{col}), '')");
    let sql = format!(
        "SELECT c.id, c.secret, c.user_id, c.link_id, k.slug, c.destination_id, c.lander_id, {rule}, c.ip,
                coalesce(u.text, ''), c.country, c.device, c.is_unique, {s1}, {s2}, {s3}, {s4}, {s5}, {ext}
         FROM clicks c JOIN links k ON k.id = c.link_id LEFT JOIN user_agents u ON u.id = c.ua WHERE c.id = ?1",
        rule = value("rule"),
        s1 = value("sub1"),
        s2 = value("sub2"),
        s3 = value("sub3"),
        s4 = value("sub4"),
        s5 = value("sub5"),
        ext = value("ext_id"),
    );
    let found = conn
        .prepare_cached(&sql)?
        .query_row([id], |r| {
            let secret: Vec<u8> = r.get(1)?;
            let ip = ip_from_column(r.get_ref(8)?);
            Ok(Funnel {
                id,
                user_id: r.get(2)?,
                link_id: r.get(3)?,
                slug: r.get(4)?,
                clickid: clickid(id, &secret),
                offer_id: r.get(5)?,
                lander_id: r.get(6)?,
                rule: r.get(7)?,
                ip,
                user_agent: r.get(9)?,
                country: r.get(10)?,
                device: device_name(r.get(11)?),
                is_unique: r.get(12)?,
                values: [r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?, r.get(17)?, r.get(18)?],
            })
        })
        .optional()?;
    Ok(found.filter(|f| crypto::ct_eq(f.clickid.as_bytes(), clickid_text.as_bytes())))
}

/// The offer a click went to (0: the fallback URL), if chosen yet.
pub fn offer_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT destination_id FROM clicks WHERE id = ?1")?.query_row([id], |r| r.get(0))
}

/// Records which offer a click went to when it left its lander; false
/// when it had left before (the first click-through counts, once).
pub fn set_offer(conn: &Connection, id: i64, offer_id: i64) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("UPDATE clicks SET destination_id = ?2 WHERE id = ?1 AND destination_id IS NULL")?
        .execute(params![id, offer_id])?;
    Ok(n == 1)
}

/// The user's newest non-bot clicks.
pub fn recent(conn: &Connection, user_id: i64, limit: i64) -> rusqlite::Result<Vec<Click>> {
    conn.prepare_cached(&format!(
        "SELECT {CLICK_COLUMNS} FROM clicks c {CLICK_JOINS}
         WHERE c.user_id = ?1 AND c.device != ?2 ORDER BY c.at DESC LIMIT ?3"
    ))?
    .query_map(params![user_id, BOT, limit], click)?
    .collect()
}

/// Deletes up to `limit` clicks recorded before `before_ms`, oldest first.
/// Rows are stored in time order, so the oldest are the first by id: the
/// batch walks from the start of the table and stops at the first newer
/// click, never scanning the rest. Returns how many went.
pub fn purge(conn: &Connection, before_ms: i64, limit: i64) -> rusqlite::Result<usize> {
    let mut last = None;
    let mut oldest = conn.prepare_cached("SELECT id, at FROM clicks ORDER BY id LIMIT ?1")?;
    let mut rows = oldest.query([limit])?;
    while let Some(row) = rows.next()? {
        if row.get::<_, i64>(1)? >= before_ms {
            break;
        }
        last = Some(row.get::<_, i64>(0)?);
    }
    let Some(id) = last else { return Ok(0) };
    let n = conn.prepare_cached("DELETE FROM clicks WHERE id <= ?1")?.execute([id])?;
    // Clickids of before the compact layout go with their rows.
    conn.prepare_cached("DELETE FROM legacy_clickids WHERE click_id <= ?1")?.execute([id])?;
    Ok(n)
}

/// How many clicks were recorded before `before_ms`.
pub fn count_before(conn: &Connection, before_ms: i64) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM clicks WHERE at < ?1", [before_ms], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clickids_carry_their_row_and_96_random_bits() {
        let secret = new_secret();
        let id = clickid(1_234_567, &secret);
        assert_eq!(id.len(), 16 + 7);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{id}");
        assert_eq!(parse_clickid(&id), Some((1_234_567, secret.to_vec())));
        assert_ne!(clickid(1, &new_secret()), clickid(1, &new_secret()));
        for bad in [
            "",
            "short",
            "AAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAx1",
            "AAAAAAAAAAAAAAA!1",
            "AAAAAAAAAAAAAAAA1234567890123456789",
        ] {
            assert_eq!(parse_clickid(bad), None, "{bad}");
        }
        assert_eq!(device_name(device_code("tablet")), "tablet");
        assert_eq!(device_code("anything"), BOT);
        assert_eq!(ip_bytes("203.0.113.9".parse().unwrap()), [203, 0, 113, 9]);
        assert_eq!(ip_bytes("::ffff:203.0.113.9".parse().unwrap()).len(), 4);
        assert_eq!(ip_bytes("2001:db8::1".parse().unwrap()).len(), 16);
    }
}
