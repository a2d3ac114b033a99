//! Smart links (SPEC §11): a link's destinations (offers and landers with
//! weights, caps, a status), its rules, and the choice of a destination
//! for one visit. This module reads and checks a routing and chooses;
//! storing it and the click path build on it.

use super::bandit::mix;
use super::links::redirect_url;
use crate::db::Db;
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use rusqlite::{params, Connection};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// Most destinations, and most rules, a link has.
pub const MAX_DESTINATIONS: usize = 50;
pub const MAX_RULES: usize = 50;
const MAX_WEIGHT: i64 = 1000;
const DEFAULT_WEIGHT: u32 = 100;

pub const DEVICES: &[&str] = &["mobile", "tablet", "desktop", "bot"];
pub const OSES: &[&str] = &["android", "ios", "windows", "macos", "linux", "other"];
const CONDITIONS: &[&str] = &["country", "device", "os", "language", "hour", "param", "unique"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Offer,
    Lander,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Its row id; 0 until stored.
    pub id: i64,
    pub kind: Kind,
    pub name: String,
    pub url: String,
    pub weight: u32,
    pub payout_cents: Option<i64>,
    pub daily_cap: Option<i64>,
    pub active: bool,
    /// What offer monitoring last found (read-only; not part of a PUT).
    pub health: Health,
}

/// An offer's monitoring state: `unknown` until checked, then `up` or `down`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub down: bool,
    pub checked_at: Option<i64>,
    pub error: Option<String>,
}

/// What a rule asks of a visit; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub country: Option<Vec<String>>,
    pub device: Option<Vec<String>>,
    pub os: Option<Vec<String>>,
    pub language: Option<Vec<String>>,
    /// From and to hour, both included; wraps past midnight when from > to.
    pub hour: Option<(u8, u8)>,
    /// Click parameters and the values one of which each must equal.
    pub param: Vec<(String, Vec<String>)>,
    pub unique: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub conditions: Conditions,
    /// Indexes into the routing's destinations.
    pub to: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Weighted,
    Optimize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub destinations: Vec<Destination>,
    pub rules: Vec<Rule>,
    pub mode: Mode,
    pub fallback_url: Option<String>,
}

/// What the choice knows of one visit.
pub struct Visit<'a> {
    pub country: &'a str,
    pub device: &'a str,
    pub os: &'a str,
    pub language: &'a str,
    /// Hour of day in the server's offset.
    pub hour: u8,
    pub params: &'a [(&'a str, &'a str)],
    pub unique: bool,
}

impl Conditions {
    fn hold(&self, v: &Visit) -> bool {
        let any = |list: &Option<Vec<String>>, value: &str| list.as_ref().is_none_or(|l| l.iter().any(|x| x == value));
        any(&self.country, v.country)
            && any(&self.device, v.device)
            && any(&self.os, v.os)
            && any(&self.language, v.language)
            && self.hour.is_none_or(|(from, to)| {
                if from <= to {
                    (from..=to).contains(&v.hour)
                } else {
                    v.hour >= from || v.hour <= to
                }
            })
            && self
                .param
                .iter()
                .all(|(name, values)| v.params.iter().any(|(k, val)| k == name && values.iter().any(|x| x == val)))
            && self.unique.is_none_or(|u| u == v.unique)
    }
}

impl Routing {
    /// Takes offers that monitoring found down out of the rotation
    /// (`monitor.auto_pause`): they count as paused until they answer again.
    pub fn pause_down(&mut self) {
        for d in &mut self.destinations {
            if d.health.down {
                d.active = false;
            }
        }
    }

    /// The first rule whose conditions all hold, if any.
    pub fn matching_rule(&self, visit: &Visit) -> Option<usize> {
        self.rules.iter().position(|r| r.conditions.hold(visit))
    }

    /// Chooses among `candidates` (indexes of active destinations) by
    /// weight, the same one for the same `visitor` key as long as that
    /// destination stays among them (weighted rendezvous hashing: adding,
    /// pausing or removing another destination moves no visitor of this
    /// one).
    pub fn choose_by_weight(&self, candidates: &[usize], visitor: u64) -> Option<usize> {
        self.choose_by(candidates, visitor, |i| f64::from(self.destinations[i].weight))
    }

    /// [`Routing::choose_by_weight`] with the weights `weight` gives.
    pub fn choose_by(&self, candidates: &[usize], visitor: u64, weight: impl Fn(usize) -> f64) -> Option<usize> {
        candidates
            .iter()
            .map(|&i| (i, weight(i)))
            .filter(|(_, w)| *w > 0.0)
            .map(|(i, w)| {
                let d = &self.destinations[i];
                // A uniform draw in (0, 1) from the visitor and the destination's name.
                let h = mix(visitor ^ mix(fnv(d.name.as_bytes())));
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (i, -u.ln() / w)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    /// The destinations a visit may go to: those of the first matching
    /// rule, else all of them.
    pub fn listed(&self, rule: Option<usize>) -> Vec<usize> {
        match rule {
            Some(r) => self.rules[r].to.clone(),
            None => (0..self.destinations.len()).collect(),
        }
    }

    /// The offers a visitor leaving a lander may go to: the rule's offers,
    /// or all the link's offers when the rule lists none (or none matched).
    pub fn offers_after_lander(&self, rule: Option<usize>) -> Vec<usize> {
        let offers = |list: Vec<usize>| -> Vec<usize> {
            list.into_iter().filter(|&i| self.destinations[i].kind == Kind::Offer).collect()
        };
        let listed = offers(self.listed(rule));
        if listed.is_empty() {
            offers(self.listed(None))
        } else {
            listed
        }
    }

    /// Picks from `listed` for one visit: the visitor's `sticky`
    /// destination (by id) while it is open, else one by weight among the
    /// open ones (active, and for an offer not `capped`); an offer picked
    /// so is re-picked among the open offers by `shares` when given (the
    /// optimize mode). None when nothing is open: the caller falls back.
    pub fn pick(
        &self,
        listed: &[usize],
        visitor: u64,
        sticky: Option<i64>,
        capped: &dyn Fn(usize) -> bool,
        shares: Option<&[f64]>,
    ) -> Option<usize> {
        let open: Vec<usize> = listed
            .iter()
            .copied()
            .filter(|&i| {
                let d = &self.destinations[i];
                d.active && !(d.kind == Kind::Offer && capped(i))
            })
            .collect();
        if let Some(i) = sticky.and_then(|id| open.iter().copied().find(|&i| self.destinations[i].id == id)) {
            return Some(i);
        }
        // Destinations of weight 0 get no share of a split, but a rule
        // listing only such destinations still reaches them, evenly.
        let chosen = self.choose_by_weight(&open, visitor).or_else(|| self.choose_by(&open, visitor, |_| 1.0))?;
        match shares {
            Some(shares) if self.destinations[chosen].kind == Kind::Offer => {
                let offers: Vec<usize> =
                    open.iter().copied().filter(|&i| self.destinations[i].kind == Kind::Offer).collect();
                self.choose_by(&offers, visitor, |i| shares.get(i).copied().unwrap_or(0.0)).or(Some(chosen))
            }
            _ => Some(chosen),
        }
    }

    /// When every offer of a choice is capped or paused and the link has no
    /// fallback URL: the offer of `listed` furthest from its cap (`load`:
    /// conversions today per cap), active ones first; any of the link's
    /// offers when `listed` has none.
    pub fn least_loaded(&self, listed: &[usize], load: impl Fn(usize) -> f64) -> Option<usize> {
        let offers = |list: &[usize]| -> Vec<usize> {
            list.iter().copied().filter(|&i| self.destinations[i].kind == Kind::Offer).collect()
        };
        let mut offers = offers(listed);
        if offers.is_empty() {
            offers = offers_of(self);
        }
        offers.into_iter().min_by(|&a, &b| {
            let key = |i: usize| (!self.destinations[i].active, load(i));
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        })
    }

    /// The first offer: its URL is the link's `url`.
    pub fn first_offer(&self) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.kind == Kind::Offer)
    }

    pub fn position_of(&self, id: i64) -> Option<usize> {
        self.destinations.iter().position(|d| d.id == id)
    }
}

fn offers_of(r: &Routing) -> Vec<usize> {
    (0..r.destinations.len()).filter(|&i| r.destinations[i].kind == Kind::Offer).collect()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The operating system named by a User-Agent.
pub fn os_of(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.contains("android") {
        "android"
    } else if ua.contains("iphone") || ua.contains("ipad") || ua.contains("ipod") || ua.contains("ios") {
        "ios"
    } else if ua.contains("windows") {
        "windows"
    } else if ua.contains("mac os x") || ua.contains("macintosh") {
        "macos"
    } else if ua.contains("linux") || ua.contains("x11") || ua.contains("cros") {
        "linux"
    } else {
        "other"
    }
}

/// The language part of the first `Accept-Language` tag, lower case:
/// `id-ID,en;q=0.8` → `id`.
pub fn language_of(accept_language: &str) -> String {
    let first = accept_language.split(',').next().unwrap_or("");
    let tag = first.split(';').next().unwrap_or("").trim();
    let lang = tag.split(['-', '_']).next().unwrap_or("");
    if lang.len() <= 8 && lang.bytes().all(|b| b.is_ascii_alphabetic()) {
        lang.to_ascii_lowercase()
    } else {
        String::new()
    }
}

fn msg(field: &str, key: &'static str) -> Msg {
    Msg::new(key).arg("attribute", field.to_string())
}

/// Reads and checks a routing from a `PUT /api/links/{id}/routing` body; a
/// bad value is a 422 naming its field (`destinations.0.weight`,
/// `rules.1.if.country`).
pub fn parse(body: &Map<String, Value>) -> Result<Routing, Error> {
    let mut errors = FieldErrors::default();
    let mut destinations = Vec::new();
    match body.get("destinations") {
        Some(Value::Array(list)) if list.is_empty() => {
            errors.add("destinations", msg("destinations", "validation.required"))
        }
        Some(Value::Array(list)) if list.len() > MAX_DESTINATIONS => {
            errors.add("destinations", msg("destinations", "validation.max").arg("max", MAX_DESTINATIONS));
        }
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                if let Some(d) = destination(&format!("destinations.{i}"), item, &mut errors) {
                    if destinations.iter().any(|o: &Destination| o.name == d.name) {
                        errors.add(&format!("destinations.{i}.name"), msg("name", "validation.unique"));
                    }
                    destinations.push(d);
                }
            }
            if !destinations.is_empty() && !destinations.iter().any(|d| d.kind == Kind::Offer) {
                errors.add("destinations", msg("destinations", "validation.offer_required"));
            }
        }
        _ => errors.add("destinations", msg("destinations", "validation.required")),
    }
    let mut rules = Vec::new();
    match body.get("rules") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) if list.len() > MAX_RULES => {
            errors.add("rules", msg("rules", "validation.max").arg("max", MAX_RULES));
        }
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                if let Some(mut r) = rule(&format!("rules.{i}"), item, &destinations, &mut errors) {
                    if r.name.is_empty() {
                        r.name = format!("Rule {}", i + 1);
                    }
                    if rules.iter().any(|o: &Rule| o.name == r.name) {
                        errors.add(&format!("rules.{i}.name"), msg("name", "validation.unique"));
                    }
                    rules.push(r);
                }
            }
        }
        Some(_) => errors.add("rules", msg("rules", "validation.array")),
    }
    let mode = match body.get("mode") {
        None | Some(Value::Null) => Mode::Weighted,
        Some(Value::String(m)) if m == "weighted" => Mode::Weighted,
        Some(Value::String(m)) if m == "optimize" => Mode::Optimize,
        Some(_) => {
            errors.add("mode", msg("mode", "validation.in").arg("values", "weighted, optimize"));
            Mode::Weighted
        }
    };
    let fallback_url = match body.get("fallback_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if u.trim().is_empty() => None,
        Some(Value::String(u)) => {
            let url = redirect_url(u);
            if url.is_none() {
                errors.add("fallback_url", msg("fallback url", "validation.url"));
            }
            url
        }
        Some(_) => {
            errors.add("fallback_url", msg("fallback url", "validation.url"));
            None
        }
    };
    errors.into_result()?;
    Ok(Routing { destinations, rules, mode, fallback_url })
}

fn destination(at: &str, item: &Value, errors: &mut FieldErrors) -> Option<Destination> {
    let Some(obj) = item.as_object() else {
        errors.add(at, msg(at, "validation.object"));
        return None;
    };
    let field = |name: &str| format!("{at}.{name}");
    let kind = match obj.get("kind") {
        None | Some(Value::Null) => Some(Kind::Offer),
        Some(Value::String(k)) if k == "offer" => Some(Kind::Offer),
        Some(Value::String(k)) if k == "lander" => Some(Kind::Lander),
        Some(_) => {
            errors.add(&field("kind"), msg("kind", "validation.in").arg("values", "offer, lander"));
            None
        }
    };
    let name = match obj.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() && n.trim().chars().count() <= 100 => Some(n.trim().to_string()),
        Some(Value::String(n)) if !n.trim().is_empty() => {
            errors.add(&field("name"), msg("name", "validation.max").arg("max", 100));
            None
        }
        _ => {
            errors.add(&field("name"), msg("name", "validation.required"));
            None
        }
    };
    let url = match obj.get("url") {
        Some(Value::String(u)) => {
            let url = redirect_url(u);
            if url.is_none() {
                errors.add(&field("url"), msg("url", "validation.url"));
            }
            url
        }
        _ => {
            errors.add(&field("url"), msg("url", "validation.required"));
            None
        }
    };
    let weight = match obj.get("weight") {
        None | Some(Value::Null) => Some(DEFAULT_WEIGHT),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|w| (0..=MAX_WEIGHT).contains(&w)) => {
            n.as_i64().map(|w| w as u32)
        }
        Some(_) => {
            let m = msg("weight", "validation.between").arg("min", 0).arg("max", MAX_WEIGHT);
            errors.add(&field("weight"), m);
            None
        }
    };
    let payout_cents = match obj.get("payout") {
        None | Some(Value::Null) => Some(None),
        Some(v) => match super::parse_money(v) {
            Some(cents) => Some(Some(cents)),
            None => {
                errors.add(&field("payout"), msg("payout", "validation.money"));
                None
            }
        },
    };
    let daily_cap = match obj.get("daily_cap") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|c| (1..=1_000_000).contains(&c)) => Some(n.as_i64()),
        Some(_) => {
            errors.add(&field("daily_cap"), msg("daily cap", "validation.between").arg("min", 1).arg("max", 1_000_000));
            None
        }
    };
    let active = match obj.get("status") {
        None | Some(Value::Null) => Some(true),
        Some(Value::String(s)) if s == "active" => Some(true),
        Some(Value::String(s)) if s == "paused" => Some(false),
        Some(_) => {
            errors.add(&field("status"), msg("status", "validation.in").arg("values", "active, paused"));
            None
        }
    };
    Some(Destination {
        id: 0,
        kind: kind?,
        name: name?,
        url: url?,
        weight: weight?,
        payout_cents: payout_cents?,
        daily_cap: daily_cap?,
        active: active?,
        health: Health::default(),
    })
}

fn strings(at: &str, value: &Value, allowed: Option<&[&str]>, errors: &mut FieldErrors) -> Option<Vec<String>> {
    let list = match value {
        Value::Array(list) if !list.is_empty() && list.len() <= 300 => list,
        _ => {
            errors.add(at, msg(at, "validation.array"));
            return None;
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        match v.as_str() {
            Some(s) if !s.is_empty() && s.len() <= 255 && allowed.is_none_or(|a| a.contains(&s)) => {
                out.push(s.to_string())
            }
            _ => {
                let m = match allowed {
                    Some(a) => msg(at, "validation.in").arg("values", a.join(", ")),
                    None => msg(at, "validation.string"),
                };
                errors.add(&format!("{at}.{i}"), m);
                return None;
            }
        }
    }
    Some(out)
}

fn rule(at: &str, item: &Value, destinations: &[Destination], errors: &mut FieldErrors) -> Option<Rule> {
    let Some(obj) = item.as_object() else {
        errors.add(at, msg(at, "validation.object"));
        return None;
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(n)) if n.chars().count() <= 100 => n.trim().to_string(),
        Some(_) => {
            errors.add(&format!("{at}.name"), msg("name", "validation.max").arg("max", 100));
            return None;
        }
    };
    let mut conditions = Conditions::default();
    let before = errors.0.len();
    match obj.get("if") {
        None | Some(Value::Null) => {}
        Some(Value::Object(cond)) => {
            for (key, value) in cond {
                let field = format!("{at}.if.{key}");
                match key.as_str() {
                    "country" => {
                        conditions.country = strings(&field, value, None, errors)
                            .map(|l| l.into_iter().map(|c| c.to_ascii_uppercase()).collect());
                        if conditions.country.as_ref().is_some_and(|l| l.iter().any(|c| c.len() != 2)) {
                            errors.add(&field, msg("country", "validation.country"));
                        }
                    }
                    "device" => conditions.device = strings(&field, value, Some(DEVICES), errors),
                    "os" => conditions.os = strings(&field, value, Some(OSES), errors),
                    "language" => {
                        conditions.language = strings(&field, value, None, errors)
                            .map(|l| l.into_iter().map(|c| c.to_ascii_lowercase()).collect());
                    }
                    "hour" => {
                        let hour = |k: &str| value.get(k).and_then(Value::as_u64).filter(|h| *h <= 23).map(|h| h as u8);
                        match (hour("from"), hour("to")) {
                            (Some(from), Some(to)) => conditions.hour = Some((from, to)),
                            _ => errors.add(&field, msg("hour", "validation.between").arg("min", 0).arg("max", 23)),
                        }
                    }
                    "param" => match value.as_object() {
                        Some(params) if !params.is_empty() => {
                            for (name, values) in params {
                                let known = ["sub_id", "sub1", "sub2", "sub3", "sub4", "sub5", "ext_id"];
                                if !known.contains(&name.as_str()) {
                                    errors.add(
                                        &format!("{field}.{name}"),
                                        msg(name, "validation.in").arg("values", known.join(", ")),
                                    );
                                } else if let Some(list) = strings(&format!("{field}.{name}"), values, None, errors) {
                                    conditions.param.push((name.clone(), list));
                                }
                            }
                        }
                        _ => errors.add(&field, msg("param", "validation.object")),
                    },
                    "unique" => match value.as_bool() {
                        Some(u) => conditions.unique = Some(u),
                        None => errors.add(&field, msg("unique", "validation.boolean")),
                    },
                    _ => errors.add(&field, msg(key, "validation.in").arg("values", CONDITIONS.join(", "))),
                }
            }
        }
        Some(_) => errors.add(&format!("{at}.if"), msg("if", "validation.object")),
    }
    let mut to = Vec::new();
    match obj.get("to") {
        Some(Value::Array(list)) if !list.is_empty() => {
            for (i, v) in list.iter().enumerate() {
                match v.as_str().and_then(|n| destinations.iter().position(|d| d.name == n)) {
                    Some(index) => to.push(index),
                    None => errors.add(&format!("{at}.to.{i}"), msg("to", "validation.destination")),
                }
            }
        }
        _ => errors.add(&format!("{at}.to"), msg("to", "validation.required")),
    }
    (errors.0.len() == before).then_some(Rule { name, conditions, to })
}

/// Conversions today (approved + pending) of offers with a daily cap:
/// read from the offer's rollup row when a day first asks (and again each
/// [`CAP_REFRESH`], which corrects any drift), and kept up to date by the
/// postbacks that change them meanwhile, so the click path reads the
/// database about once a minute per capped offer.
#[derive(Default)]
pub struct Caps {
    counts: Mutex<HashMap<i64, CapCount>>,
    /// Bumped by every postback's change: a count read while one landed
    /// may or may not hold it, so it is not kept.
    changes: std::sync::atomic::AtomicU64,
}

struct CapCount {
    day: String,
    conversions: i64,
    read_at: std::time::Instant,
}

/// How long a count read from the database is trusted.
const CAP_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

impl Caps {
    /// The offer's conversions on `day`.
    pub fn conversions(&self, db: &Db, user_id: i64, destination_id: i64, day: &str) -> Result<i64, Error> {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some(c) = self.counts.lock().unwrap_or_else(|e| e.into_inner()).get(&destination_id) {
            if c.day == day && c.read_at.elapsed() < CAP_REFRESH {
                return Ok(c.conversions);
            }
        }
        let changes = self.changes.load(SeqCst);
        let n: i64 = db.read(|c| {
            Ok(c.prepare_cached(
                "SELECT coalesce(sum(approved_leads + pending_leads), 0) FROM rollups
                 WHERE user_id = ?1 AND dim = 'destination' AND day = ?2 AND value = ?3",
            )?
            .query_row(params![user_id, day, destination_id.to_string()], |r| r.get(0))?)
        })?;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > 100_000 {
            counts.clear();
        }
        if self.changes.load(SeqCst) == changes {
            let read_at = std::time::Instant::now();
            counts.insert(destination_id, CapCount { day: day.to_string(), conversions: n, read_at });
        } else {
            // A postback landed meanwhile: read again next time.
            counts.remove(&destination_id);
        }
        Ok(n)
    }

    /// A committed postback changed an offer's conversions of `day`.
    pub fn add(&self, destination_id: i64, day: &str, conversions: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        self.changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(c) = counts.get_mut(&destination_id) {
            if c.day == day {
                c.conversions += conversions;
            }
        }
    }
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Offer => "offer",
            Kind::Lander => "lander",
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Weighted => "weighted",
            Mode::Optimize => "optimize",
        }
    }
}

/// The routing as the API shows it (`GET /api/links/{id}/routing`).
pub fn to_json(r: &Routing) -> Value {
    let destinations: Vec<Value> = r
        .destinations
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "kind": d.kind.as_str(),
                "name": d.name,
                "url": d.url,
                "weight": d.weight,
                "payout": d.payout_cents.map(super::money),
                "daily_cap": d.daily_cap,
                "status": if d.active { "active" } else { "paused" },
                "monitor": {
                    "state": match (d.health.down, d.health.checked_at) {
                        (true, _) => "down",
                        (false, Some(_)) => "up",
                        (false, None) => "unknown",
                    },
                    "checked_at": d.health.checked_at.map(crate::clock::format),
                    "error": d.health.error,
                },
            })
        })
        .collect();
    json!({
        "destinations": destinations,
        "rules": rules_json(r),
        "mode": r.mode.as_str(),
        "fallback_url": r.fallback_url,
    })
}

/// Rules as JSON naming their destinations: the API's shape, and how
/// `links.rules` stores them.
fn rules_json(r: &Routing) -> Value {
    let rules: Vec<Value> = r
        .rules
        .iter()
        .map(|rule| {
            let c = &rule.conditions;
            let mut cond = Map::new();
            for (key, list) in
                [("country", &c.country), ("device", &c.device), ("os", &c.os), ("language", &c.language)]
            {
                if let Some(list) = list {
                    cond.insert(key.into(), json!(list));
                }
            }
            if let Some((from, to)) = c.hour {
                cond.insert("hour".into(), json!({"from": from, "to": to}));
            }
            if !c.param.is_empty() {
                let params: Map<String, Value> = c.param.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                cond.insert("param".into(), Value::Object(params));
            }
            if let Some(u) = c.unique {
                cond.insert("unique".into(), json!(u));
            }
            let to: Vec<&str> = rule.to.iter().map(|&i| r.destinations[i].name.as_str()).collect();
            json!({"name": rule.name, "if": cond, "to": to})
        })
        .collect();
    Value::Array(rules)
}

const DESTINATION_COLUMNS: &str =
    "id, kind, name, url, weight, payout_cents, daily_cap, status, monitor_state, monitor_checked_at, monitor_error";

/// A link's stored routing: its destinations in order (removed ones left
/// out), and its mode, fallback URL and rules as stored on the link.
pub fn load(conn: &Connection, link_id: i64, mode: &str, fallback_url: &str, rules: &str) -> rusqlite::Result<Routing> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE link_id = ?1 AND status != 'removed' ORDER BY position, id"
    ))?;
    let destinations = stmt
        .query_map([link_id], |r| {
            Ok(Destination {
                id: r.get(0)?,
                kind: if r.get::<_, String>(1)? == "lander" { Kind::Lander } else { Kind::Offer },
                name: r.get(2)?,
                url: r.get(3)?,
                weight: r.get::<_, i64>(4)?.clamp(0, MAX_WEIGHT) as u32,
                payout_cents: r.get(5)?,
                daily_cap: r.get(6)?,
                active: r.get::<_, String>(7)? == "active",
                health: Health { down: r.get::<_, String>(8)? == "down", checked_at: r.get(9)?, error: r.get(10)? },
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Stored rules were checked when saved; one that no longer reads (a
    // hand-edited database) is left out rather than failing every click.
    let mut rule_list = Vec::new();
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(rules) {
        for (i, item) in items.iter().enumerate() {
            let mut errors = FieldErrors::default();
            if let Some(mut rule) = rule(&format!("rules.{i}"), item, &destinations, &mut errors) {
                if rule.name.is_empty() {
                    rule.name = format!("Rule {}", i + 1);
                }
                rule_list.push(rule);
            }
        }
    }
    Ok(Routing {
        destinations,
        rules: rule_list,
        mode: if mode == "optimize" { Mode::Optimize } else { Mode::Weighted },
        fallback_url: Some(fallback_url.to_string()).filter(|u| !u.is_empty()),
    })
}

/// Replaces a link's routing inside the caller's transaction. A
/// destination whose name is kept keeps its id (and so its history); one
/// left out is marked removed. Sets the ids of `r`'s destinations, and the
/// link's `url` to its first offer's. `keep_fallback` leaves the link's
/// fallback URL as it is.
pub fn save(tx: &Connection, link_id: i64, r: &mut Routing, keep_fallback: bool, now: i64) -> rusqlite::Result<()> {
    let existing: Vec<(i64, String)> = tx
        .prepare_cached("SELECT id, name FROM destinations WHERE link_id = ?1")?
        .query_map([link_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (position, d) in r.destinations.iter_mut().enumerate() {
        let status = if d.active { "active" } else { "paused" };
        let values = params![
            link_id,
            position as i64,
            d.kind.as_str(),
            d.name,
            d.url,
            d.weight,
            d.payout_cents,
            d.daily_cap,
            status
        ];
        match existing.iter().find(|(_, name)| *name == d.name) {
            Some((id, _)) => {
                tx.prepare_cached(&format!(
                    "UPDATE destinations SET position = ?2, kind = ?3, weight = ?6, payout_cents = ?7,
                         daily_cap = ?8, status = ?9, {}
                     WHERE link_id = ?1 AND name = ?4",
                    set_url("?5")
                ))?
                .execute(values)?;
                d.id = *id;
            }
            None => {
                tx.prepare_cached(
                    "INSERT INTO destinations (link_id, position, kind, name, url, weight, payout_cents, daily_cap, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(values)?;
                d.id = tx.last_insert_rowid();
            }
        }
    }
    for (id, name) in &existing {
        if !r.destinations.iter().any(|d| d.name == *name) {
            tx.prepare_cached("UPDATE destinations SET status = 'removed', position = -1 WHERE id = ?1")?
                .execute([id])?;
        }
    }
    let url = r.first_offer().map(|d| d.url.clone()).unwrap_or_default();
    let rules = rules_json(r).to_string();
    tx.prepare_cached(
        "UPDATE links SET url = ?2, mode = ?3, rules = ?4, updated_at = ?5,
             fallback_url = CASE WHEN ?6 THEN fallback_url ELSE ?7 END WHERE id = ?1",
    )?
    .execute(params![
        link_id,
        url,
        r.mode.as_str(),
        rules,
        now,
        keep_fallback,
        r.fallback_url.as_deref().unwrap_or("")
    ])?;
    Ok(())
}

/// The new link's one offer, named "Offer 1", at its URL.
pub fn create_first_offer(tx: &Connection, link_id: i64, url: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO destinations (link_id, position, kind, name, url) VALUES (?1, 0, 'offer', 'Offer 1', ?2)",
    )?
    .execute(params![link_id, url])?;
    Ok(())
}

/// A link's `url` changed through `PUT /api/links/{id}`: it is its first
/// offer's.
pub fn set_first_offer_url(tx: &Connection, link_id: i64, url: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "UPDATE destinations SET {} WHERE id = (SELECT id FROM destinations WHERE link_id = ?1
             AND kind = 'offer' AND status != 'removed' ORDER BY position, id LIMIT 1)",
        set_url("?2")
    ))?
    .execute(params![link_id, url])?;
    Ok(())
}

/// The `SET` of a destination's URL (the parameter `param`): a new URL is
/// a new page, so what monitoring knew of the old one goes (and a down
/// offer is back in the rotation until checked).
fn set_url(param: &str) -> String {
    format!(
        "monitor_state = CASE WHEN url = {param} THEN monitor_state ELSE 'unknown' END,
         monitor_failures = CASE WHEN url = {param} THEN monitor_failures ELSE 0 END,
         monitor_checked_at = CASE WHEN url = {param} THEN monitor_checked_at END,
         monitor_error = CASE WHEN url = {param} THEN monitor_error END,
         url = {param}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: Value) -> Result<Routing, Error> {
        parse(v.as_object().unwrap())
    }

    fn fields(e: Error) -> Vec<String> {
        match e {
            Error::Validation(f) => f.0.keys().cloned().collect(),
            other => panic!("not a 422: {other:?}"),
        }
    }

    fn visit<'a>(country: &'a str, device: &'a str, params: &'a [(&'a str, &'a str)]) -> Visit<'a> {
        Visit { country, device, os: "android", language: "id", hour: 23, params, unique: true }
    }

    #[test]
    fn a_routing_is_read_with_defaults_and_rules_name_their_destinations() {
        let r = parse_json(json!({
            "destinations": [
                {"name": "A", "url": "https://a.example/?c={clickid}"},
                {"name": "B", "url": "https://b.example/", "weight": 50, "daily_cap": 10, "payout": "1.50"},
                {"kind": "lander", "name": "L1", "url": "https://lp.example/?go={click_url}", "status": "paused"}
            ],
            "rules": [{"name": "id mobile", "if": {"country": ["id"], "device": ["mobile"]}, "to": ["B"]},
                      {"if": {"param": {"sub2": ["tiktok"]}, "hour": {"from": 22, "to": 2}}, "to": ["L1"]}],
            "mode": "optimize",
            "fallback_url": "https://fallback.example/"
        }))
        .unwrap();
        assert_eq!(r.destinations.len(), 3);
        assert_eq!(
            (r.destinations[0].weight, r.destinations[0].kind, r.destinations[0].active),
            (100, Kind::Offer, true)
        );
        assert_eq!((r.destinations[1].payout_cents, r.destinations[1].daily_cap), (Some(150), Some(10)));
        assert!(!r.destinations[2].active);
        assert_eq!(r.rules[0].to, [1]);
        assert_eq!(r.rules[0].conditions.country, Some(vec!["ID".to_string()]));
        assert_eq!(r.mode, Mode::Optimize);
        // Rules: first match wins; every condition must hold; hours wrap past midnight.
        assert_eq!(r.matching_rule(&visit("ID", "mobile", &[])), Some(0));
        assert_eq!(r.matching_rule(&visit("ID", "desktop", &[("sub2", "tiktok")])), Some(1));
        assert_eq!(r.matching_rule(&visit("MY", "desktop", &[("sub2", "fb")])), None);
        let mut v = visit("MY", "desktop", &[("sub2", "tiktok")]);
        v.hour = 12;
        assert_eq!(r.matching_rule(&v), None, "12:00 is outside 22-2");
    }

    #[test]
    fn bad_values_are_422s_naming_their_field() {
        let e = parse_json(json!({
            "destinations": [
                {"name": "A", "url": "javascript:alert(1)", "weight": 1001},
                {"name": "A", "url": "http://{sub_id}/", "weight": -1, "daily_cap": 0, "status": "gone", "kind": "popup"}
            ],
            "rules": [{"if": {"country": "ID"}, "to": ["A"]},
                      {"if": {"colour": ["red"], "device": ["phone"], "hour": {"from": 25, "to": 1}}, "to": ["Nope"]}],
            "mode": "fastest"
        }))
        .unwrap_err();
        let mut f = fields(e);
        f.sort();
        for expected in [
            "destinations.0.url",
            "destinations.0.weight",
            "destinations.1.url",
            "destinations.1.weight",
            "destinations.1.daily_cap",
            "destinations.1.status",
            "destinations.1.kind",
            "rules.0.if.country",
            "rules.1.if.colour",
            "rules.1.if.device.0",
            "rules.1.if.hour",
            "rules.1.to.0",
            "mode",
        ] {
            assert!(f.iter().any(|x| x == expected), "{expected} not in {f:?}");
        }
        assert_eq!(fields(parse_json(json!({"destinations": []})).unwrap_err()), ["destinations"]);
        let many: Vec<Value> = (0..51).map(|i| json!({"name": format!("d{i}"), "url": "https://x.example/"})).collect();
        assert_eq!(fields(parse_json(json!({"destinations": many})).unwrap_err()), ["destinations"]);
        let only_landers = json!({"destinations": [{"kind": "lander", "name": "L", "url": "https://l.example/"}]});
        assert_eq!(fields(parse_json(only_landers).unwrap_err()), ["destinations"]);
        let dup = json!({"destinations": [{"name": "A", "url": "https://a.example/"}, {"name": "A", "url": "https://b.example/"}]});
        assert_eq!(fields(parse_json(dup).unwrap_err()), ["destinations.1.name"]);
    }

    #[test]
    fn weights_split_visitors_and_each_keeps_its_destination_when_others_change() {
        let mut r = parse_json(json!({"destinations": [
            {"name": "A", "url": "https://a.example/", "weight": 300},
            {"name": "B", "url": "https://b.example/", "weight": 100},
            {"name": "C", "url": "https://c.example/", "weight": 0}
        ]}))
        .unwrap();
        let all = [0, 1, 2];
        let mut counts = [0u32; 3];
        let chosen: Vec<usize> = (0..40_000u64).map(|v| r.choose_by_weight(&all, v).unwrap()).collect();
        for &c in &chosen {
            counts[c] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 gets nobody");
        let share = f64::from(counts[0]) / 40_000.0;
        assert!((0.74..0.76).contains(&share), "A got {share}");
        // Adding D moves visitors only to D, never between A and B.
        r.destinations.push(Destination {
            name: "D".into(),
            url: "https://d.example/".into(),
            ..r.destinations[1].clone()
        });
        for (v, &before) in chosen.iter().enumerate() {
            let now = r.choose_by_weight(&[0, 1, 2, 3], v as u64).unwrap();
            assert!(now == before || now == 3, "visitor {v} moved from {before} to {now}");
        }
        assert_eq!(r.choose_by_weight(&[2], 7), None, "only weight 0: no choice");
    }

    #[test]
    fn os_and_language_are_read_from_the_headers() {
        assert_eq!(os_of("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile"), "android");
        assert_eq!(os_of("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"), "ios");
        assert_eq!(os_of("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"), "windows");
        assert_eq!(os_of("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1)"), "macos");
        assert_eq!(os_of("Mozilla/5.0 (X11; Linux x86_64)"), "linux");
        assert_eq!(os_of("curl/8.0"), "other");
        assert_eq!(language_of("id-ID,en;q=0.8"), "id");
        assert_eq!(language_of("EN_us"), "en");
        assert_eq!(language_of("*"), "");
        assert_eq!(language_of("x'; DROP TABLE links;--"), "");
    }
}
