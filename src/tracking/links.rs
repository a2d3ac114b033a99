//! Tracking links: the `links` table and its rules. Only the owner sees or
//! changes a link; anyone else gets 404, as for a link that does not exist.

use super::routing::{self, Routing};
use super::{clip, money, parse_money};
use crate::base::Core;
use crate::clock::{self, Micros};
use crate::crypto;
use crate::db::Db;
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub const STATUSES: &[&str] = &["active", "paused"];
pub const MACROS: &[&str] = &[
    "{clickid}",
    "{sub_id}",
    "{sub1}",
    "{sub2}",
    "{sub3}",
    "{sub4}",
    "{sub5}",
    "{country_code}",
    "{device_type}",
    "{ext_id}",
    "{destination}",
    "{rule}",
    "{os}",
    "{click_url}",
];
const MAX_URL: usize = 2048;

#[derive(Debug, Clone)]
pub struct Link {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub url: String,
    pub slug: String,
    pub payout_cents: i64,
    pub status: String,
    pub source_postback_url: String,
    pub fallback_url: String,
    pub cost_model: String,
    pub cost_value_micros: i64,
    pub created_at: Micros,
    pub updated_at: Micros,
}

const COLUMNS: &str =
    "id, user_id, name, url, slug, payout_cents, status, source_postback_url, created_at, updated_at, \
                       fallback_url, cost_model, cost_value_micros";

fn from_row(r: &Row) -> rusqlite::Result<Link> {
    Ok(Link {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        url: r.get(3)?,
        slug: r.get(4)?,
        payout_cents: r.get(5)?,
        status: r.get(6)?,
        source_postback_url: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        fallback_url: r.get(10)?,
        cost_model: r.get(11)?,
        cost_value_micros: r.get(12)?,
    })
}

pub fn to_json(app: &Core, link: &Link) -> Value {
    json!({
        "id": link.id,
        "name": link.name,
        "url": link.url,
        "slug": link.slug,
        "tracking_url": format!("{}/go/{}", app.config.app_url(), link.slug),
        "payout": money(link.payout_cents),
        "status": link.status,
        "source_postback_url": link.source_postback_url,
        "fallback_url": Some(&link.fallback_url).filter(|u| !u.is_empty()),
        "cost_model": link.cost_model,
        "cost_value": money(super::micros_to_cents(link.cost_value_micros)),
        "created_at": clock::format(link.created_at),
        "updated_at": clock::format(link.updated_at),
    })
}

/// Orders of the link list; each names its column, never text from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Id,
    Name,
    CreatedAt,
    Clicks,
}

/// The sort names of `GET /api/links?sortBy=`.
pub const SORTS: [(&str, SortBy); 4] =
    [("id", SortBy::Id), ("name", SortBy::Name), ("createdAt", SortBy::CreatedAt), ("clicks", SortBy::Clicks)];

/// Most characters of a name search.
pub const MAX_SEARCH: usize = 100;

/// One page of the user's links (deleted ones are gone from view), each
/// with its clicks of all time (one lookup of its all-time counter row),
/// and how many match `search`, a case-insensitive part of the name.
pub fn page(
    conn: &Connection,
    user_id: i64,
    search: Option<&str>,
    sort_by: SortBy,
    ascending: bool,
    limit: i64,
    offset: i64,
) -> rusqlite::Result<(Vec<(Link, i64)>, i64)> {
    let column = match sort_by {
        SortBy::Id => "id",
        SortBy::Name => "name COLLATE NOCASE",
        SortBy::CreatedAt => "created_at",
        SortBy::Clicks => "clicks",
    };
    let direction = if ascending { "ASC" } else { "DESC" };
    let matches = "user_id = ?1 AND status != 'deleted' AND (?2 IS NULL OR instr(lower(name), lower(?2)) > 0)";
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, coalesce((SELECT r.clicks FROM rollups r WHERE r.user_id = links.user_id AND r.dim = 'link'
                                     AND r.day = '' AND r.value = CAST(links.id AS TEXT)), 0) AS clicks
         FROM links WHERE {matches} ORDER BY {column} {direction}, id {direction} LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt
        .query_map(params![user_id, search, limit, offset], |r| Ok((from_row(r)?, r.get(13)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let total = conn
        .prepare_cached(&format!("SELECT count(*) FROM links WHERE {matches}"))?
        .query_row(params![user_id, search], |r| r.get(0))?;
    Ok((rows, total))
}

/// One link of this user, or 404: another user's link does not exist for them.
pub fn find_owned(conn: &Connection, user_id: i64, id: &str) -> Result<Link, Error> {
    let id: i64 = id.parse().map_err(|_| Error::NotFound)?;
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM links WHERE id = ?1 AND user_id = ?2 AND status != 'deleted'"))?
        .query_row(params![id, user_id], from_row)
        .optional()?
        .ok_or(Error::NotFound)
}

/// What the click path needs of a link, by its public slug: its routing
/// too, so choosing a destination reads nothing.
#[derive(Debug)]
pub struct Target {
    pub id: i64,
    pub user_id: i64,
    pub url: String,
    pub active: bool,
    pub payout_cents: i64,
    pub cost: CostModel,
    pub routing: Routing,
    /// The optimize mode's shares of the offers and when they were drawn.
    pub shares: std::sync::Mutex<Option<(Micros, Arc<Vec<f64>>)>>,
}

/// What a click on a link costs (SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostModel {
    None,
    /// This many micro-units per non-bot click.
    Cpc(i64),
    /// The click's `cost` parameter, as the traffic source fills it.
    Param,
}

impl CostModel {
    fn of(model: &str, value_micros: i64) -> CostModel {
        match model {
            "cpc" => CostModel::Cpc(value_micros),
            "param" => CostModel::Param,
            _ => CostModel::None,
        }
    }
}

pub const COST_MODELS: &[&str] = &["none", "cpc", "param"];

/// Active links by slug, kept in memory so a click costs no read query.
/// Only this process changes links, and every change clears the cache;
/// only hits are kept (a flood of made-up slugs cannot grow it), at most
/// `MAX_CACHED` of them. Offer monitoring (another process, maybe) tells
/// of links whose offers went down or came back through
/// `monitor::changed_since`; the server forgets those.
#[derive(Debug, Default)]
pub struct SlugCache {
    map: RwLock<HashMap<String, Arc<Target>>>,
    /// Bumped by every clear: a lookup that raced a change is not cached.
    generation: std::sync::atomic::AtomicU64,
    /// `monitor.auto_pause`: offers found down leave the rotation.
    auto_pause: bool,
}

const MAX_CACHED: usize = 50_000;

impl SlugCache {
    pub fn new(auto_pause: bool) -> SlugCache {
        SlugCache { auto_pause, ..SlugCache::default() }
    }

    pub fn get(&self, db: &Db, slug: &str) -> Result<Option<Arc<Target>>, Error> {
        use std::sync::atomic::Ordering;
        if let Some(hit) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(slug) {
            return Ok(Some(Arc::clone(hit)));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(mut target) = db.read(|c| Ok(find_by_slug(c, slug)?))?.filter(|t| t.active) else { return Ok(None) };
        if self.auto_pause {
            target.routing.pause_down();
        }
        let target = Arc::new(target);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            if map.len() >= MAX_CACHED {
                map.clear();
            }
            map.insert(slug.to_string(), Arc::clone(&target));
        }
        Ok(Some(target))
    }

    pub fn clear(&self) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        map.clear();
    }

    /// Forgets one link, changed or gone: its next click reads it afresh
    /// (and a lookup under way when it changed is not kept). Other links
    /// keep their entries, and their optimize mode's shares.
    pub fn forget(&self, slug: &str) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        map.remove(slug);
    }
}

pub fn find_by_slug(conn: &Connection, slug: &str) -> rusqlite::Result<Option<Target>> {
    let found = conn
        .prepare_cached(
            "SELECT id, user_id, url, status, payout_cents, mode, fallback_url, rules, cost_model, cost_value_micros
             FROM links WHERE slug = ?1",
        )?
        .query_row([slug], |r| {
            let link = (r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?, r.get(4)?);
            let cost = CostModel::of(&r.get::<_, String>(8)?, r.get(9)?);
            Ok((link, r.get::<_, String>(5)?, r.get::<_, String>(6)?, r.get::<_, String>(7)?, cost))
        })
        .optional()?;
    let Some(((id, user_id, url, status, payout_cents), mode, fallback_url, rules, cost)) = found else {
        return Ok(None);
    };
    Ok(Some(Target {
        id,
        user_id,
        url,
        active: status == "active",
        payout_cents,
        cost,
        routing: routing::load(conn, id, &mode, &fallback_url, &rules)?,
        shares: Default::default(),
    }))
}

/// The fields of a create or update, each already checked.
#[derive(Default)]
pub struct Fields {
    pub name: Option<String>,
    pub url: Option<String>,
    pub payout_cents: Option<i64>,
    pub status: Option<String>,
    pub slug: Option<String>,
    pub source_postback_url: Option<String>,
    /// Some("") clears it.
    pub fallback_url: Option<String>,
    pub cost_model: Option<String>,
    pub cost_value_micros: Option<i64>,
}

fn invalid(field: &str, key: &'static str) -> Msg {
    Msg::new(key).arg("attribute", field.replace('_', " "))
}

/// Percent-encodes every non-ASCII byte, so the URL is valid in a
/// `Location` header (which must be ASCII).
pub fn ascii_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// An absolute http(s) URL without spaces or control characters, whose
/// host has no `{macro}`: a visitor's parameter must never choose where
/// the redirect goes (`http://{sub_id}/` would be an open redirect).
pub fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && authority.is_some_and(|a| !a.contains(['{', '}']))
        && url.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// A redirect target as given: made ASCII, then kept only if it is an
/// http(s) URL of at most `MAX_URL` bytes (see [`is_http_url`]).
pub fn redirect_url(text: &str) -> Option<String> {
    let url = ascii_url(text.trim());
    (url.len() <= MAX_URL && is_http_url(&url)).then_some(url)
}

/// Reads and checks link fields from a JSON body. `creating` makes name
/// and url required.
pub fn read_fields(body: &Map<String, Value>, creating: bool) -> Result<Fields, Error> {
    let mut errors = FieldErrors::default();
    let mut fields = Fields::default();
    let text = |field: &str, errors: &mut FieldErrors| -> Option<String> {
        match body.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => {
                errors.add(field, invalid(field, "validation.string"));
                None
            }
        }
    };
    fields.name = text("name", &mut errors);
    match &fields.name {
        Some(n) if n.is_empty() => errors.add("name", invalid("name", "validation.required")),
        Some(n) if n.chars().count() > 255 => {
            errors.add("name", invalid("name", "validation.max").arg("max", 255));
        }
        None if creating && !errors.has("name") => errors.add("name", invalid("name", "validation.required")),
        _ => {}
    }
    fields.url = text("url", &mut errors).map(|u| ascii_url(&u));
    match &fields.url {
        Some(u) if u.len() > MAX_URL => errors.add("url", invalid("url", "validation.max").arg("max", MAX_URL)),
        Some(u) if !is_http_url(u) => errors.add("url", invalid("url", "validation.url")),
        None if creating && !errors.has("url") => errors.add("url", invalid("url", "validation.required")),
        _ => {}
    }
    if let Some(v) = body.get("payout").filter(|v| !v.is_null()) {
        match parse_money(v) {
            Some(cents) => fields.payout_cents = Some(cents),
            None => errors.add("payout", invalid("payout", "validation.money")),
        }
    }
    fields.status = text("status", &mut errors);
    if let Some(s) = &fields.status {
        if !STATUSES.contains(&s.as_str()) {
            errors.add("status", invalid("status", "validation.in").arg("values", STATUSES.join(", ")));
        }
    }
    fields.slug = text("slug", &mut errors);
    if let Some(s) = &fields.slug {
        let ok = (3..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            errors.add("slug", invalid("slug", "validation.slug"));
        }
    }
    // Optional URLs: empty clears, anything else must be a redirect URL.
    for (name, slot) in
        [("source_postback_url", &mut fields.source_postback_url), ("fallback_url", &mut fields.fallback_url)]
    {
        *slot = text(name, &mut errors).and_then(|u| match redirect_url(&u) {
            _ if u.is_empty() => Some(u),
            Some(url) => Some(url),
            None => {
                errors.add(name, invalid(name, "validation.url"));
                None
            }
        });
    }
    fields.cost_model = text("cost_model", &mut errors);
    if let Some(m) = &fields.cost_model {
        if !COST_MODELS.contains(&m.as_str()) {
            errors.add("cost_model", invalid("cost_model", "validation.in").arg("values", COST_MODELS.join(", ")));
        }
    }
    if let Some(v) = body.get("cost_value").filter(|v| !v.is_null()) {
        match super::scalar_text(v).and_then(|t| super::parse_micros(&t, super::MAX_CLICK_COST_MICROS)) {
            Some(micros) => fields.cost_value_micros = Some(micros),
            None => {
                let m = invalid("cost_value", "validation.between").arg("min", 0).arg("max", 1000);
                errors.add("cost_value", m);
            }
        }
    }
    errors.into_result()?;
    Ok(fields)
}

fn slug_taken() -> Error {
    FieldErrors::single("slug", invalid("slug", "validation.unique"))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

pub fn create(app: &Core, user_id: i64, f: Fields) -> Result<Link, Error> {
    let now = app.clock.now();
    let max = app.config.tracking.max_links_per_user;
    app.db.write(|tx| {
        let count: i64 = tx
            .prepare_cached("SELECT count(*) FROM links WHERE user_id = ?1 AND status != 'deleted'")?
            .query_row([user_id], |r| r.get(0))?;
        if count >= i64::from(max) {
            return Err(FieldErrors::single("links", Msg::new("links.too_many").arg("max", max)));
        }
        // A random slug collides about never; try a few before giving up.
        for attempt in 0..5 {
            let slug = match &f.slug {
                Some(s) if attempt == 0 => s.clone(),
                Some(_) => return Err(slug_taken()),
                None => crypto::random_alphanumeric(8),
            };
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO links (user_id, name, url, slug, payout_cents, status, source_postback_url, created_at,
                                    updated_at, fallback_url, cost_model, cost_value_micros)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    user_id,
                    clip(f.name.as_deref().unwrap_or_default(), 255),
                    f.url.as_deref().unwrap_or_default(),
                    slug,
                    f.payout_cents.unwrap_or(0),
                    f.status.as_deref().unwrap_or("active"),
                    f.source_postback_url.as_deref().unwrap_or_default(),
                    now,
                    f.fallback_url.as_deref().unwrap_or_default(),
                    f.cost_model.as_deref().unwrap_or("none"),
                    f.cost_value_micros.unwrap_or(0)
                ]);
            match inserted {
                Ok(_) => {
                    let id = tx.last_insert_rowid();
                    routing::create_first_offer(tx, id, f.url.as_deref().unwrap_or_default())?;
                    return find_owned(tx, user_id, &id.to_string());
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(slug_taken())
    })
}

pub fn update(app: &Core, slugs: &SlugCache, user_id: i64, id: &str, f: Fields) -> Result<Link, Error> {
    let now = app.clock.now();
    let forget = ForgetOnDrop::new(slugs);
    app.db.write(|tx| {
        let link = find_owned(tx, user_id, id)?;
        forget.slug(&link.slug);
        let result = tx.execute(
            "UPDATE links SET name = ?2, url = ?3, payout_cents = ?4, status = ?5, slug = ?6,
                 source_postback_url = ?7, updated_at = ?8, fallback_url = ?9, cost_model = ?10,
                 cost_value_micros = ?11 WHERE id = ?1",
            params![
                link.id,
                f.name.unwrap_or(link.name),
                f.url.clone().unwrap_or(link.url),
                f.payout_cents.unwrap_or(link.payout_cents),
                f.status.unwrap_or(link.status),
                f.slug.unwrap_or(link.slug),
                f.source_postback_url.unwrap_or(link.source_postback_url),
                now,
                f.fallback_url.unwrap_or(link.fallback_url),
                f.cost_model.unwrap_or(link.cost_model),
                f.cost_value_micros.unwrap_or(link.cost_value_micros)
            ],
        );
        match result {
            Err(e) if is_unique_violation(&e) => Err(slug_taken()),
            other => {
                other?;
                if let Some(url) = &f.url {
                    routing::set_first_offer_url(tx, link.id, url)?;
                }
                find_owned(tx, user_id, id)
            }
        }
    })
}

/// The routing of this user's link (`GET /api/links/{id}/routing`).
pub fn routing_of(conn: &Connection, user_id: i64, id: &str) -> Result<Routing, Error> {
    let link = find_owned(conn, user_id, id)?;
    let (mode, rules): (String, String) =
        conn.query_row("SELECT mode, rules FROM links WHERE id = ?1", [link.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(routing::load(conn, link.id, &mode, &link.fallback_url, &rules)?)
}

/// Replaces the routing of this user's link in one transaction
/// (`PUT /api/links/{id}/routing`); `keep_fallback` when the body had no
/// `fallback_url`. Returns the routing as stored, with its ids.
pub fn set_routing(
    app: &Core,
    slugs: &SlugCache,
    user_id: i64,
    id: &str,
    mut routing: Routing,
    keep_fallback: bool,
) -> Result<Routing, Error> {
    let now = app.clock.now();
    let forget = ForgetOnDrop::new(slugs);
    app.db.write(|tx| {
        let link = find_owned(tx, user_id, id)?;
        forget.slug(&link.slug);
        routing::save(tx, link.id, &mut routing, keep_fallback, now)?;
        routing_of(tx, user_id, id)
    })
}

/// Forgets the changed link's slug when the change is over, committed or
/// not (a slug change forgets the old one; the new one was not cached).
struct ForgetOnDrop<'a> {
    slugs: &'a SlugCache,
    slug: std::cell::RefCell<Option<String>>,
}

impl<'a> ForgetOnDrop<'a> {
    fn new(slugs: &'a SlugCache) -> Self {
        ForgetOnDrop { slugs, slug: Default::default() }
    }

    fn slug(&self, slug: &str) {
        *self.slug.borrow_mut() = Some(slug.to_string());
    }
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(slug) = self.slug.get_mut() {
            self.slugs.forget(slug);
        }
    }
}

/// Hides the link and stops its redirect; its clicks and leads stay counted.
pub fn delete(app: &Core, slugs: &SlugCache, user_id: i64, id: &str) -> Result<(), Error> {
    let now = app.clock.now();
    let forget = ForgetOnDrop::new(slugs);
    app.db.write(|tx| {
        let link = find_owned(tx, user_id, id)?;
        forget.slug(&link.slug);
        tx.execute("UPDATE links SET status = 'deleted', updated_at = ?2 WHERE id = ?1", params![link.id, now])?;
        Ok(())
    })
}
