//! `apextrack dev-seed`: fills a database with synthetic clicks and leads
//! for benchmarks (ten million clicks in about a minute). The rows and
//! rollups it writes are the ones real traffic would produce.

use super::rollup::{self, Delta, Dims};
use super::store;
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
    /// Offers on each link, split evenly.
    pub offers: u32,
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
const SOURCES: &[&str] = &["tiktok", "facebook", "google", "propellerads", "telegram", "native", "push", "pop"];

/// A realistic User-Agent of about 140 characters, one of 600.
fn user_agent(rng: &mut Rng) -> String {
    let android = 10 + rng.below(5);
    let chrome = 110 + rng.below(20);
    let build = 5000 + chrome * 17;
    let model = ["SM-A546E", "Redmi Note 12", "V2204", "CPH2591", "SM-G991B", "Infinix X6833B"][rng.below(6) as usize];
    format!(
        "Mozilla/5.0 (Linux; Android {android}; {model} Build/UP1A.{}.00{}) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/{chrome}.0.{build}.0 Mobile Safari/537.36",
        231005 + android,
        android % 7
    )
}
const BATCH: u64 = 50_000;
/// What each seeded non-bot click cost (its links are `cpc` at 0.05).
const SEED_CPC_MICROS: i64 = 50_000;

/// Writes the seed; returns (clicks, leads) written. Prints progress.
pub fn run(app: &Core, seed: &Seed, progress: impl Fn(&str)) -> Result<(u64, u64), Error> {
    let now = app.clock.now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ now as u64);
    let links: Vec<(i64, Vec<i64>)> = app.db.write(|tx| {
        let mut ids = Vec::new();
        for i in 0..seed.links.max(1) {
            tx.execute(
                "INSERT INTO links (user_id, name, url, slug, payout_cents, status, created_at, updated_at, cost_model,
                                    cost_value_micros)
                 VALUES (?1, ?2, 'https://offer.example/?c={clickid}&s={sub_id}', ?3, 150, 'active', ?4, ?4, 'cpc', ?5)",
                params![
                    seed.user_id,
                    format!("Seed offer {i}"),
                    format!("seed-{}-{i}", crate::crypto::random_alphanumeric(6)),
                    now,
                    SEED_CPC_MICROS
                ],
            )?;
            let link_id = tx.last_insert_rowid();
            let mut offers = Vec::new();
            for o in 0..seed.offers.max(1) {
                tx.execute(
                    "INSERT INTO destinations (link_id, position, kind, name, url)
                     VALUES (?1, ?2, 'offer', ?3, 'https://offer.example/?c={clickid}&s={sub_id}')",
                    params![link_id, o, format!("Offer {}", o + 1)],
                )?;
                offers.push(tx.last_insert_rowid());
            }
            ids.push((link_id, offers));
        }
        Ok(ids)
    })?;
    let span = i64::from(seed.days.max(1)) * DAY;
    let start = now - span;
    let step = (span / seed.clicks.max(1) as i64).max(1);
    let mut written = 0u64;
    let interner = store::Interner::default();
    let mut first_click_id: Option<i64> = None;
    while written < seed.clicks {
        let n = BATCH.min(seed.clicks - written);
        app.db
            .write(|tx| {
                let mut rollups = rollup::Batch::default();
                let mut fresh = store::Fresh::default();
                let first_id = store::reserve(tx, n as i64)?;
                for i in 0..n {
                    let at = start + (written + i) as i64 * step;
                    let (link_id, offers) = &links[rng.below(links.len() as u64) as usize];
                    let (link_id, destination_id) = (*link_id, offers[rng.below(offers.len() as u64) as usize]);
                    let sub = format!("sub{}", rng.below(u64::from(seed.sub_ids.max(1))));
                    let sub2 = SOURCES[rng.below(SOURCES.len() as u64) as usize];
                    let country = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
                    let device = DEVICES[rng.below(DEVICES.len() as u64) as usize];
                    let unique = rng.below(4) != 0;
                    let day = clock::local_date(at, app.utc_offset);
                    let ua = interner.id(tx, store::Kind::UserAgent, &user_agent(&mut rng), &mut fresh)?;
                    let values = [
                        Some(interner.id(tx, store::Kind::Value, &sub, &mut fresh)?),
                        Some(interner.id(tx, store::Kind::Value, sub2, &mut fresh)?),
                        None,
                        None,
                        None,
                        None,
                    ];
                    let ip =
                        [100 + rng.below(100) as u8, rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8];
                    let id = first_id + i as i64;
                    store::insert(
                        tx,
                        &store::Row {
                            id,
                            secret: &store::new_secret(),
                            user_id: seed.user_id,
                            link_id,
                            at_ms: at / 1000,
                            ip: &ip,
                            ua,
                            country,
                            device: store::device_code(device),
                            is_unique: unique,
                            values,
                            destination_id: Some(destination_id),
                            lander_id: None,
                            rule: None,
                            cost: (device != "bot").then_some(SEED_CPC_MICROS),
                        },
                    )?;
                    if first_click_id.is_none() {
                        first_click_id = Some(id);
                    }
                    let is_bot = device == "bot";
                    let delta = if is_bot {
                        Delta { bot_clicks: 1, ..Delta::default() }
                    } else {
                        let cost_micros = SEED_CPC_MICROS;
                        Delta { clicks: 1, unique_clicks: i64::from(unique), cost_micros, ..Delta::default() }
                    };
                    let hour = super::clicks::local_hour(at, app.utc_offset);
                    rollups.add_owned(
                        seed.user_id,
                        &day,
                        &Dims {
                            sub_id: &sub,
                            country,
                            device,
                            link_id,
                            destination_id: Some(destination_id),
                            os: Some("android"),
                            hour: Some(hour),
                        },
                        delta,
                        is_bot,
                    );
                }
                rollups.write(tx)?;
                Ok(fresh)
            })
            .map(|fresh| interner.committed(fresh))?;
        written += n;
        progress(&format!("{written} clicks"));
    }
    let first = first_click_id.unwrap_or(1);
    let mut leads = 0u64;
    while leads < seed.leads {
        let n = BATCH.min(seed.leads - leads);
        app.db.write(|tx| {
            let mut rollups = rollup::Batch::default();

            let mut insert = tx.prepare_cached(
                "INSERT INTO leads (user_id, click_id, link_id, txid, status, payout_cents, sub1, country, device, day,
                                    created_at, updated_at, destination_id, os, hour)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, 'android', ?13)",
            )?;
            for i in 0..n {
                let click_id = first + rng.below(seed.clicks.max(1)) as i64;
                let Some(click) = store::by_id(tx, click_id)? else { continue };
                let (link_id, sub, country, device) = (click.link_id, click.sub1, click.country, click.device);
                let destination_id = click.destination_id;
                let at = click.at_ms * 1000;
                let day = clock::local_date(at, app.utc_offset);
                let status = ["approved", "approved", "pending", "rejected"][rng.below(4) as usize];
                let cents = 50 + rng.below(500) as i64;
                let hour = super::clicks::local_hour(click.at_ms * 1000, app.utc_offset);
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
                    at + 60_000_000,
                    destination_id,
                    hour
                ])?;
                let dims = Dims {
                    sub_id: &sub,
                    country: &country,
                    device,
                    link_id,
                    destination_id,
                    os: Some("android"),
                    hour: Some(hour),
                };
                rollups.add_owned(seed.user_id, &day, &dims, Delta::lead(status, cents), false);
            }
            Ok(rollups.write(tx)?)
        })?;
        leads += n;
        progress(&format!("{leads} leads"));
    }
    Ok((written, leads))
}
