//! `apextrack dev-seed`: fills a database with synthetic clicks and leads
//! for benchmarks (ten million clicks in about a minute). The rows and
//! rollups it writes are the ones real traffic would produce.

use super::rollup::{self, Delta, Dims};
use crate::base::Core;
use crate::clock::{self, DAY};
use crate::error::Error;
use rusqlite::params;

pub struct Seed {
    pub user_id: i64,
    pub clicks: u64,
    pub leads: u64,
    pub days: u32,
    pub links: u32,
    pub sub_ids: u32,
}

/// xorshift64*: fast, deterministic, good enough for synthetic traffic.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n.max(1)
    }
}

const COUNTRIES: &[&str] = &["ID", "US", "IN", "BR", "DE", "MY", "PH", "VN", "TH", "XX"];
const DEVICES: &[&str] = &["mobile", "mobile", "mobile", "desktop", "tablet", "bot"];
const BATCH: u64 = 50_000;

/// Writes the seed; returns (clicks, leads) written. Prints progress.
pub fn run(app: &Core, seed: &Seed, progress: impl Fn(&str)) -> Result<(u64, u64), Error> {
    let now = app.clock.now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ now as u64);
    let link_ids: Vec<i64> = app.db.write(|tx| {
        let mut ids = Vec::new();
        for i in 0..seed.links.max(1) {
            tx.execute(
                "INSERT INTO links (user_id, name, url, slug, payout_cents, status, created_at, updated_at)
                 VALUES (?1, ?2, 'https://offer.example/?c={clickid}&s={sub_id}', ?3, 150, 'active', ?4, ?4)",
                params![
                    seed.user_id,
                    format!("Seed offer {i}"),
                    format!("seed-{}-{i}", crate::crypto::random_alphanumeric(6)),
                    now
                ],
            )?;
            ids.push(tx.last_insert_rowid());
        }
        Ok(ids)
    })?;
    let span = i64::from(seed.days.max(1)) * DAY;
    let start = now - span;
    let step = (span / seed.clicks.max(1) as i64).max(1);
    let mut written = 0u64;
    let mut first_click_id: Option<i64> = None;
    while written < seed.clicks {
        let n = BATCH.min(seed.clicks - written);
        app.db.write(|tx| {
            let mut rollups = rollup::Batch::default();
            let mut insert = tx.prepare_cached(
                "INSERT INTO clicks (clickid, user_id, link_id, sub1, country, device, ip, user_agent, is_unique, day, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '198.51.100.1', 'seed', ?7, ?8, ?9)",
            )?;
            for i in 0..n {
                let at = start + (written + i) as i64 * step;
                let link_id = link_ids[rng.below(link_ids.len() as u64) as usize];
                let sub = format!("sub{}", rng.below(u64::from(seed.sub_ids.max(1))));
                let country = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
                let device = DEVICES[rng.below(DEVICES.len() as u64) as usize];
                let unique = rng.below(4) != 0;
                let day = clock::local_date(at, app.utc_offset);
                insert.execute(params![super::clicks::new_clickid(at), seed.user_id, link_id, sub, country, device, unique, day, at])?;
                if first_click_id.is_none() {
                    first_click_id = Some(tx.last_insert_rowid());
                }
                let is_bot = device == "bot";
                let delta = if is_bot {
                    Delta { bot_clicks: 1, ..Delta::default() }
                } else {
                    Delta { clicks: 1, unique_clicks: i64::from(unique), ..Delta::default() }
                };
                rollups.add_owned(seed.user_id, &day, &Dims { sub_id: &sub, country, device, link_id }, delta, is_bot);
            }
            Ok(rollups.write(tx)?)
        })?;
        written += n;
        progress(&format!("{written} clicks"));
    }
    let first = first_click_id.unwrap_or(1);
    let mut leads = 0u64;
    while leads < seed.leads {
        let n = BATCH.min(seed.leads - leads);
        app.db.write(|tx| {
            let mut rollups = rollup::Batch::default();
            let mut pick =
                tx.prepare_cached("SELECT link_id, sub1, country, device, day, created_at FROM clicks WHERE id = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO leads (user_id, click_id, link_id, txid, status, payout_cents, sub1, country, device, day,
                                    created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            )?;
            for i in 0..n {
                let click_id = first + rng.below(seed.clicks.max(1)) as i64;
                let (link_id, sub, country, device, day, at): (i64, String, String, String, String, i64) = pick
                    .query_row([click_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })?;
                let status = ["approved", "approved", "pending", "rejected"][rng.below(4) as usize];
                let cents = 50 + rng.below(500) as i64;
                insert.execute(params![
                    seed.user_id,
                    click_id,
                    link_id,
                    format!("seed-{}-{}", now, leads + i),
                    status,
                    cents,
                    sub,
                    country,
                    device,
                    day,
                    at + 60_000_000
                ])?;
                let dims = Dims { sub_id: &sub, country: &country, device: &device, link_id };
                rollups.add_owned(seed.user_id, &day, &dims, Delta::lead(status, cents), false);
            }
            Ok(rollups.write(tx)?)
        })?;
        leads += n;
        progress(&format!("{leads} leads"));
    }
    Ok((written, leads))
}
