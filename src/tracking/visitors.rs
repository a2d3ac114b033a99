//! Who clicked which link in the last 24 hours, for the `unique` flag of a
//! click: in memory (about 20 bytes a visitor), rebuilt at start from the
//! last day's clicks. A visitor is the address and User-Agent; a click is
//! unique when that visitor has not clicked that link in the 24 hours
//! before. Kept off the database, each distinct visitor would cost a
//! random write into a big index on every click.

use crate::clock::{Micros, DAY, SECOND};
use crate::crypto;
use crate::db::Db;
use crate::error::Error;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Default)]
pub struct Visitors {
    /// Visitor and link → when last seen, in seconds, and the destination
    /// it was sent to (0: none), which it sticks to.
    seen: Mutex<HashMap<u64, (u32, u32)>>,
}

/// The visitor-and-link key: 64 bits of SHA-256 over the address, the
/// User-Agent and the link.
pub fn key(link_id: i64, ip: IpAddr, user_agent: &str) -> u64 {
    let ip = ip.to_canonical().to_string();
    let digest = crypto::sha256_parts(&[&link_id.to_le_bytes(), ip.as_bytes(), b"\n", user_agent.as_bytes()]);
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
}

fn secs(at: Micros) -> u32 {
    (at / SECOND).clamp(0, i64::from(u32::MAX)) as u32
}

/// What one batch saw, applied once it commits: key, time, destination.
#[derive(Default)]
pub struct Seen(Vec<(u64, u32, u32)>);

fn destination_key(id: Option<i64>) -> u32 {
    id.and_then(|id| u32::try_from(id).ok()).unwrap_or(0)
}

impl Visitors {
    /// Whether `key` clicked (by this batch's earlier clicks or committed
    /// ones) within the day before `now`; records this click, sent to
    /// `destination`, in `batch`.
    pub fn is_unique(&self, key: u64, now: Micros, destination: Option<i64>, batch: &mut Seen) -> bool {
        let before = batch
            .0
            .iter()
            .rev()
            .find(|(k, _, _)| *k == key)
            .map(|(_, at, _)| *at)
            .or_else(|| self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key).map(|(at, _)| *at));
        batch.0.push((key, secs(now), destination_key(destination)));
        before.is_none_or(|at| i64::from(at) <= secs(now - DAY).into())
    }

    /// The visitor's last click within the day before `now`: Some with
    /// the destination it was sent to (None: none), or None when there
    /// was no such click (the next one is unique).
    pub fn last(&self, key: u64, now: Micros) -> Option<Option<i64>> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let &(at, destination) = seen.get(&key)?;
        (i64::from(at) > i64::from(secs(now - DAY))).then_some((destination != 0).then_some(i64::from(destination)))
    }

    /// Remembers the visitors of a committed batch.
    pub fn committed(&self, batch: Seen) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (key, at, destination) in batch.0 {
            let last = seen.entry(key).or_insert((at, destination));
            if at >= last.0 {
                *last = (at, destination);
            }
        }
    }

    /// Forgets visitors not seen for a day; run by the upkeep thread.
    pub fn forget_old(&self, now: Micros) {
        let cutoff = secs(now - DAY);
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, (at, _)| *at > cutoff);
    }

    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rebuilds the last day's visitors from the stored clicks (newest
    /// first, stopping at the first older than a day).
    pub fn load(&self, db: &Db, now: Micros) -> Result<usize, Error> {
        let cutoff_ms = (now - DAY) / 1000;
        let mut batch = Seen::default();
        db.read(|c| {
            let mut stmt = c.prepare(
                "SELECT c.link_id, c.ip, coalesce(u.text, ''), c.at, coalesce(c.lander_id, c.destination_id)
                 FROM clicks c LEFT JOIN user_agents u ON u.id = c.ua
                 WHERE c.device != ?1 ORDER BY c.id DESC",
            )?;
            let mut rows = stmt.query([super::store::BOT])?;
            while let Some(row) = rows.next()? {
                let at: i64 = row.get(3)?;
                if at <= cutoff_ms {
                    break;
                }
                let ip = super::store::ip_from_column(row.get_ref(1)?);
                if let Some(ip) = ip {
                    let ua: String = row.get(2)?;
                    let destination = destination_key(row.get(4)?);
                    batch.0.push((key(row.get(0)?, ip, &ua), secs(at * 1000), destination));
                }
            }
            Ok(())
        })?;
        let n = batch.0.len();
        self.committed(batch);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visitor_is_unique_once_a_day_per_link() {
        let v = Visitors::default();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let (a, b) = (key(1, ip, "ua"), key(2, ip, "ua"));
        assert_eq!(key(1, "::ffff:203.0.113.9".parse().unwrap(), "ua"), a, "a mapped address is the same visitor");
        let t0 = 1_800_000_000 * SECOND;
        let mut batch = Seen::default();
        assert!(v.is_unique(a, t0, None, &mut batch));
        assert!(!v.is_unique(a, t0 + SECOND, None, &mut batch), "the same batch");
        assert!(v.is_unique(b, t0, None, &mut batch), "another link");
        // Not committed: forgotten, as the rolled-back clicks are.
        let mut next = Seen::default();
        assert!(v.is_unique(a, t0, Some(7), &mut next));
        assert_eq!(v.last(a, t0), None);
        v.committed(next);
        assert_eq!(v.last(a, t0 + SECOND), Some(Some(7)), "sent to destination 7: it sticks");
        assert_eq!(v.last(a, t0 + DAY), None, "for a day");
        assert!(!v.is_unique(a, t0 + DAY - SECOND, None, &mut Seen::default()));
        assert!(v.is_unique(a, t0 + DAY, None, &mut Seen::default()));
        v.forget_old(t0 + DAY + SECOND);
        assert!(v.is_empty());
    }
}
