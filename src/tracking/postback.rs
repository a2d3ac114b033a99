//! Conversion postbacks, `GET|POST /api/postback/conversion`: a network
//! tells us a click converted. Idempotent per user and transaction id;
//! every postback and its outcome is logged for the user to read.

use super::notify;
use super::rollup::{self, Delta, Dims};
use super::routing::Caps;
use super::{clip, money, parse_money};
use crate::accounts;
use crate::base::Core;
use crate::clock::{self, Micros, MINUTE};
use crate::crypto;
use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use crate::outbox;
use crate::ratelimit::{self, Limit};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

pub const STATUSES: &[&str] = &["approved", "pending", "rejected"];

/// The user's postback secret: `<user id>-<32 hex>`, derived from the
/// instance key and a version the user can bump (rotate), never stored.
pub fn secret(app: &Core, user_id: i64, version: i64) -> String {
    let mac = crypto::hmac_sha256(&app.signing_key, format!("postback:{user_id}:{version}").as_bytes());
    format!("{user_id}-{}", &crypto::hex(&mac)[..32])
}

/// The URL a user pastes into their network, with the network's values as
/// `{placeholders}` to replace in the network's own macro syntax.
pub fn url(app: &Core, user_id: i64, version: i64) -> String {
    format!(
        "{}/api/postback/conversion?clickid={{clickid}}&payout={{payout}}&status={{status}}&txid={{txid}}&secret={}",
        app.config.app_url(),
        secret(app, user_id, version)
    )
}

/// Deletes up to `limit` log rows older than 30 days (through the
/// `postback_log_received` index); run by the maintenance thread.
pub fn prune_log(conn: &Connection, now: Micros, limit: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM postback_log WHERE id IN (SELECT id FROM postback_log WHERE received_at < ?1 LIMIT ?2)",
        params![now - 30 * crate::clock::DAY, limit],
    )
}

/// The first of `names` present in the parameters.
fn param<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str()))
}

/// A JSON body's scalar values as parameters.
pub fn json_params(body: &Map<String, Value>) -> Vec<(String, String)> {
    body.iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), text))
        })
        .collect()
}

/// What became of a postback: the HTTP status and body to answer with.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// The change this postback made to an offer's conversions of a day,
    /// for the offer's daily cap.
    counted: Option<Counted>,
    /// The lead this postback created or moved, if it did.
    changed: Option<Changed>,
}

/// A lead a postback created (no previous status) or moved.
struct Changed {
    previous_status: Option<String>,
    /// Its payout now.
    cents: i64,
}

/// Conversions (approved + pending) an offer gained or lost on a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub destination_id: i64,
    pub day: String,
    pub conversions: i64,
}

impl Answer {
    /// The lead this postback made `approved` (created so or moved there),
    /// which its traffic source is told of.
    fn approved_now(&self, status: &str) -> Option<&Changed> {
        self.changed.as_ref().filter(|_| status == "approved")
    }
}

fn answer(status: u16, message: &str, outcome: &str) -> Answer {
    Answer { status, body: json!({"message": message, "outcome": outcome}), counted: None, changed: None }
}

/// Whether a lead in `status` counts against its offer's daily cap.
fn counts_for_cap(status: &str) -> i64 {
    i64::from(status == "approved" || status == "pending")
}

struct Click {
    id: i64,
    user_id: i64,
    link_id: i64,
    clickid: String,
    sub1: String,
    ext_id: String,
    country: String,
    device: String,
    destination_id: Option<i64>,
    os: &'static str,
    at: Micros,
    /// The destination's payout, else the link's.
    link_payout: i64,
    source_postback_url: String,
    secret_version: i64,
    allowlist: String,
}

fn find_click(conn: &Connection, clickid: &str) -> rusqlite::Result<Option<Click>> {
    let Some(c) = super::store::find(conn, clickid)? else { return Ok(None) };
    conn.prepare_cached(
        "SELECT coalesce((SELECT payout_cents FROM destinations WHERE id = ?2), l.payout_cents),
                l.source_postback_url, u.postback_secret_version, u.postback_allowlist
         FROM links l JOIN users u ON u.id = l.user_id WHERE l.id = ?1",
    )?
    .query_row(params![c.link_id, c.destination_id], |r| {
        Ok(Click {
            id: c.id,
            user_id: c.user_id,
            link_id: c.link_id,
            clickid: c.clickid.clone(),
            sub1: c.sub1.clone(),
            ext_id: c.ext_id.clone(),
            country: c.country.clone(),
            device: c.device.to_string(),
            destination_id: c.destination_id,
            os: super::routing::os_of(&c.user_agent),
            at: c.at_ms * 1000,
            link_payout: r.get(0)?,
            source_postback_url: r.get(1)?,
            secret_version: r.get(2)?,
            allowlist: r.get(3)?,
        })
    })
    .optional()
}

/// Refused postbacks answered before the 429s start: per address a minute,
/// and per clickid an hour.
const REFUSED_PER_IP: Limit = Limit { max: 60, window: MINUTE };
const REFUSED_PER_CLICK: Limit = Limit { max: 10, window: 60 * MINUTE };
/// Rows of the postback log kept per user; older ones make room.
pub const MAX_LOG_ROWS: i64 = 10_000;

/// Keeps the user's newest [`MAX_LOG_ROWS`] log rows (give or take 64).
/// Finding the cut walks that many entries of the `(user_id, id)` index,
/// so it is done every 64th row, not on each.
fn cap_log(conn: &Connection, user: i64) -> rusqlite::Result<()> {
    if conn.last_insert_rowid() % 64 != 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "DELETE FROM postback_log WHERE user_id = ?1 AND id <= (
             SELECT id FROM postback_log WHERE user_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![user, MAX_LOG_ROWS])?;
    Ok(())
}

/// Whether `ip` may post for a user with this allowlist ('' allows all).
pub fn allowed(allowlist: &str, ip: IpAddr) -> bool {
    let entries: Vec<&str> = allowlist.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    entries.is_empty()
        || entries
            .iter()
            .filter_map(|e| crate::net::parse_cidr(e))
            .any(|(net, len)| crate::net::in_network(ip, net, len))
}

/// Handles one postback. Never fails outright: every outcome is an answer,
/// and is logged (attributed to the user when the click or secret tells who).
/// A lead it created or moved counts at once in its offer's daily cap (`caps`).
pub fn handle(app: &Core, caps: &Caps, method: &str, ip: IpAddr, params: &[(String, String)]) -> Result<Answer, Error> {
    let result = received(app, method, ip, params);
    if let Ok(Answer { counted: Some(c), .. }) = &result {
        caps.add(c.destination_id, &c.day, c.conversions);
    }
    app.metrics.postback(match &result {
        Ok(answer) => answer.body["outcome"].as_str().unwrap_or("other"),
        Err(Error::TooManyRequests { .. }) => "throttled",
        Err(_) => "error",
    });
    result
}

fn received(app: &Core, method: &str, ip: IpAddr, params: &[(String, String)]) -> Result<Answer, Error> {
    let now = app.clock.now();
    let given_secret = param(params, &["secret"]).unwrap_or("");
    // The log keeps what was sent, minus the secret.
    let logged: Map<String, Value> = params
        .iter()
        .take(30)
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("secret") { "***".to_string() } else { clip(v, 255) };
            (clip(k, 64), Value::String(v))
        })
        .collect();
    let logged = Value::Object(logged).to_string();
    // A refusal is logged for the user whose secret came with it, and only
    // if the secret is genuine: nobody can write into someone else's log.
    let secret_user: Option<i64> =
        given_secret.split_once('-').and_then(|(id, _)| id.parse::<i64>().ok()).filter(|&id| {
            let version = app.db.read(|c| Ok(accounts::store::postback_secret_version(c, id)?)).ok().flatten();
            version.is_some_and(|v| crypto::ct_eq(secret(app, id, v).as_bytes(), given_secret.as_bytes()))
        });
    let log = |conn: &Connection, user: Option<i64>, answer: &Answer, lead: Option<i64>| -> rusqlite::Result<()> {
        // Postbacks nobody can be told about are not kept.
        let Some(user) = user else { return Ok(()) };
        // A refusal for a wrong secret reaches the click's owner (a network
        // still using an old secret shows up), but none of the sender's
        // text does: only the clickid and the outcome.
        let params = if answer.body["outcome"] == "bad_secret" {
            json!({ "clickid": param(params, &["clickid", "cid", "subid"]).map(|c| clip(c, 64)) }).to_string()
        } else {
            logged.clone()
        };
        conn.prepare_cached(
            "INSERT INTO postback_log (user_id, received_at, method, ip, params, outcome, status, lead_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            user,
            now,
            method,
            ip.to_string(),
            params,
            answer.body["outcome"].as_str(),
            answer.status,
            lead
        ])?;
        cap_log(conn, user)?;
        Ok(())
    };
    // Refusals are counted per address and per clickid: past the limits
    // they are answered 429 and not logged, so holding a clickid (it is in
    // every redirect) does not let anyone fill its owner's log.
    let clickid_key =
        param(params, &["clickid", "cid", "subid"]).map(|c| format!("postback-refused-click:{}", clip(c, 64)));
    let refuse = |user: Option<i64>, answer: Answer| -> Result<Answer, Error> {
        app.db.write_then_refuse(|tx| {
            let mut keys = vec![(format!("postback-refused-ip:{ip}"), REFUSED_PER_IP)];
            keys.extend(clickid_key.clone().map(|k| (k, REFUSED_PER_CLICK)));
            for (key, limit) in &keys {
                if let Some(retry_after) = ratelimit::blocked(tx, key, *limit, now)? {
                    let message = Msg::new("postback.too_many_refused").arg("seconds", retry_after);
                    return Ok(Err(Error::TooManyRequests { message, retry_after }));
                }
            }
            for (key, limit) in &keys {
                ratelimit::hit(tx, key, *limit, now)?;
            }
            log(tx, user, &answer, None)?;
            if let (Some(user), Some("bad_secret" | "unknown_click")) = (user, answer.body["outcome"].as_str()) {
                notify::postback_refused(tx, app, user, now)?;
            }
            Ok(Ok(answer))
        })
    };

    let Some(clickid) = param(params, &["clickid", "cid", "subid"]).filter(|c| !c.is_empty()) else {
        return refuse(secret_user, invalid("clickid", "The clickid field is required."));
    };
    let status = param(params, &["status"]).map_or("approved".to_string(), |s| s.trim().to_ascii_lowercase());
    if !STATUSES.contains(&status.as_str()) {
        return refuse(secret_user, invalid("status", "The status must be approved, pending or rejected."));
    }
    let payout = match param(params, &["payout", "sum", "amount"]).filter(|p| !p.trim().is_empty()) {
        Some(text) => match parse_money(&Value::String(text.to_string())) {
            Some(cents) => Some(cents),
            None => return refuse(secret_user, invalid("payout", "The payout must be a positive number.")),
        },
        None => None,
    };
    let txid =
        clip(param(params, &["txid", "tid", "transaction_id"]).filter(|t| !t.is_empty()).unwrap_or(clickid), 255);

    let Some(click) = app.db.read(|c| Ok(find_click(c, clickid)?))? else {
        // The click may have been purged (`tracking.raw_click_days`): its
        // lead, found by the genuine secret's user and the txid, still moves.
        if let Some(user) = secret_user {
            let allowlist = app.db.read(|c| Ok(accounts::store::find_user(c, user)?))?.map(|u| u.postback_allowlist);
            if allowlist.is_some_and(|list| allowed(&list, ip)) {
                let moved = app.db.write(|tx| {
                    let Some(lead) = find_lead(tx, user, &txid)? else { return Ok(None) };
                    let mut rollups = rollup::Batch::default();
                    let (link_id, sub1, country) = (lead.link_id, lead.sub1.clone(), lead.country.clone());
                    let (answer, lead_id) = move_lead(tx, user, lead, &txid, &status, payout, now, &mut rollups)?;
                    rollups.write(tx)?;
                    log(tx, Some(user), &answer, lead_id)?;
                    if let Some(changed) = &answer.changed {
                        let conversion = notify::Conversion {
                            clickid,
                            txid: &txid,
                            status: &status,
                            previous_status: changed.previous_status.as_deref(),
                            payout_cents: changed.cents,
                            link_id,
                            sub_id: &sub1,
                            country: &country,
                        };
                        notify::conversion(tx, app, user, &conversion, now)?;
                    }
                    Ok(Some(answer))
                })?;
                if let Some(answer) = moved {
                    return Ok(answer);
                }
            }
        }
        return refuse(secret_user, answer(404, "Click not found.", "unknown_click"));
    };
    if app.config.tracking.require_postback_secret {
        let expected = secret(app, click.user_id, click.secret_version);
        if !crypto::ct_eq(expected.as_bytes(), given_secret.as_bytes()) {
            return refuse(Some(click.user_id), answer(403, "Invalid postback secret.", "bad_secret"));
        }
    }
    if !allowed(&click.allowlist, ip) {
        return refuse(
            Some(click.user_id),
            answer(403, "This IP address may not send postbacks for this account.", "ip_refused"),
        );
    }

    app.db
        .write(|tx| {
            let mut rollups = rollup::Batch::default();
            let (answer, lead_id) = apply(tx, &click, &txid, &status, payout, now, app.utc_offset, &mut rollups)?;
            rollups.write(tx)?;
            log(tx, Some(click.user_id), &answer, lead_id)?;
            if let Some(changed) = &answer.changed {
                let conversion = notify::Conversion {
                    clickid: &click.clickid,
                    txid: &txid,
                    status: &status,
                    previous_status: changed.previous_status.as_deref(),
                    payout_cents: changed.cents,
                    link_id: click.link_id,
                    sub_id: &click.sub1,
                    country: &click.country,
                };
                notify::conversion(tx, app, click.user_id, &conversion, now)?;
            }
            if let Some(changed) = answer.approved_now(&status).filter(|_| !click.source_postback_url.is_empty()) {
                let target = source_postback(&click, &status, changed.cents);
                if outbox::enqueue_get(tx, click.user_id, &target, now)?.is_none() {
                    app.log.line(format!(
                        "warning: source postback of user {} dropped: {} already waiting",
                        click.user_id,
                        outbox::MAX_PENDING_POSTBACKS
                    ));
                }
            }
            Ok(answer)
        })
        .inspect(|_| app.outbox_wake.notify())
}

/// Most rows one conversion import takes.
pub const MAX_IMPORT_ROWS: usize = 50_000;
/// Rows written per transaction: about two milliseconds of the writer,
/// so clicks wait no longer than that behind an import…
const IMPORT_BATCH: usize = 100;
/// …and the pause between two, in which waiting clicks take the writer.
const IMPORT_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// One row of a conversion import (`clickid,status,payout,txid`), as sent.
#[derive(Debug, Clone, Default)]
pub struct ImportRow {
    /// The row's line in the file (the header is 1), or its place in a
    /// JSON list counted from 1.
    pub line: usize,
    pub clickid: String,
    pub status: Option<String>,
    pub payout: Option<String>,
    pub txid: Option<String>,
}

/// What became of an imported row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    UnknownClickid,
    Invalid(String),
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::UnknownClickid => "unknown_clickid",
            Outcome::Invalid(_) => "invalid",
        }
    }
}

/// A row checked: the values a postback would carry.
struct Checked<'r> {
    clickid: &'r str,
    status: String,
    payout: Option<i64>,
    txid: String,
}

fn check_row(row: &ImportRow) -> Result<Checked<'_>, String> {
    let clickid = row.clickid.trim();
    if clickid.is_empty() {
        return Err("The clickid is required.".into());
    }
    let status = row.status.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or("approved");
    let status = status.to_ascii_lowercase();
    if !STATUSES.contains(&status.as_str()) {
        return Err("The status must be approved, pending or rejected.".into());
    }
    let payout = match row.payout.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(text) => {
            Some(parse_money(&Value::String(text.to_string())).ok_or("The payout must be a positive number.")?)
        }
        None => None,
    };
    let txid = clip(row.txid.as_deref().map(str::trim).filter(|t| !t.is_empty()).unwrap_or(clickid), 255);
    Ok(Checked { clickid, status, payout, txid })
}

/// Imports conversions for `user_id` from a network's export, each row
/// through the postback's own idempotent path (a lead per txid; a repeat
/// changes nothing; a status may move as a postback's would), in
/// transactions of [`IMPORT_BATCH`] rows. A clickid of another user is
/// unknown. `dry_run` reads and decides the same, and writes nothing.
/// Returns each row's outcome, in order. Each committed transaction's
/// leads count at once in their offers' daily caps (`caps`).
pub fn import(app: &Core, caps: &Caps, user_id: i64, rows: &[ImportRow], dry_run: bool) -> Result<Vec<Outcome>, Error> {
    let now = app.clock.now();
    let mut outcomes = Vec::with_capacity(rows.len());
    // Dry run: the statuses this import would have given, by txid.
    let mut would: HashMap<String, String> = HashMap::new();
    let mut enqueued = false;
    for chunk in rows.chunks(IMPORT_BATCH) {
        let mut step = |tx: &Connection| -> Result<Vec<(Outcome, Option<Counted>, bool)>, Error> {
            let mut rollups = rollup::Batch::default();
            let mut done = Vec::with_capacity(chunk.len());
            for row in chunk {
                let row = match check_row(row) {
                    Ok(row) => row,
                    Err(reason) => {
                        done.push((Outcome::Invalid(reason), None, false));
                        continue;
                    }
                };
                let click = match find_click(tx, row.clickid)? {
                    Some(click) if click.user_id == user_id => click,
                    Some(_) => {
                        done.push((Outcome::UnknownClickid, None, false));
                        continue;
                    }
                    // A purged click's lead still moves by its txid, as by a postback.
                    None => {
                        let Some(lead) = find_lead(tx, user_id, &row.txid)? else {
                            done.push((Outcome::UnknownClickid, None, false));
                            continue;
                        };
                        if dry_run {
                            let before = would.get(&row.txid).cloned().unwrap_or(lead.status);
                            let outcome = decide(Some(&before), &row.status);
                            if matches!(outcome, Outcome::Updated) {
                                would.insert(row.txid.clone(), row.status.clone());
                            }
                            done.push((outcome, None, false));
                        } else {
                            let (answer, _) =
                                move_lead(tx, user_id, lead, &row.txid, &row.status, row.payout, now, &mut rollups)?;
                            done.push((outcome_of(&answer), answer.counted, false));
                        }
                        continue;
                    }
                };
                if dry_run {
                    let before = match would.get(&row.txid) {
                        Some(status) => Some(status.clone()),
                        None => find_lead(tx, user_id, &row.txid)?.map(|l| l.status),
                    };
                    let outcome = decide(before.as_deref(), &row.status);
                    if matches!(outcome, Outcome::Created | Outcome::Updated) {
                        would.insert(row.txid.clone(), row.status.clone());
                    }
                    done.push((outcome, None, false));
                    continue;
                }
                let (answer, _) =
                    apply(tx, &click, &row.txid, &row.status, row.payout, now, app.utc_offset, &mut rollups)?;
                let outcome = outcome_of(&answer);
                let mut source = false;
                if let Some(changed) =
                    answer.approved_now(&row.status).filter(|_| !click.source_postback_url.is_empty())
                {
                    let target = source_postback(&click, &row.status, changed.cents);
                    source = outbox::enqueue_get(tx, click.user_id, &target, now)?.is_some();
                }
                done.push((outcome, answer.counted, source));
            }
            rollups.write(tx)?;
            Ok(done)
        };
        let done = if dry_run {
            app.db.read(|c| step(c))?
        } else {
            let done = app.db.write(|tx| step(tx))?;
            std::thread::sleep(IMPORT_PAUSE);
            done
        };
        for (outcome, counted, source) in done {
            outcomes.push(outcome);
            if let Some(c) = counted {
                caps.add(c.destination_id, &c.day, c.conversions);
            }
            enqueued |= source;
        }
    }
    if enqueued {
        app.outbox_wake.notify();
    }
    Ok(outcomes)
}

/// The rows of a CSV import: a header naming `clickid` and any of
/// `status`, `payout`, `txid` (other columns are ignored), then one row a
/// line. A file that is not one is a 422 saying why.
pub fn import_rows_from_csv(body: &[u8]) -> Result<Vec<ImportRow>, Error> {
    let file = super::CsvFile::read(body, MAX_IMPORT_ROWS, &["clickid"], "clickid,status,payout,txid")?;
    let [clickid, status, payout, txid] = ["clickid", "status", "payout", "txid"].map(|c| file.column(c));
    let cell = super::CsvFile::cell;
    Ok(file
        .rows
        .iter()
        .map(|(line, fields)| ImportRow {
            line: *line,
            clickid: cell(fields, clickid).unwrap_or_default(),
            status: cell(fields, status),
            payout: cell(fields, payout),
            txid: cell(fields, txid),
        })
        .collect())
}

/// The rows of a JSON import, `{"rows": [{"clickid", "status", "payout",
/// "txid"}, ...]}`: strings or numbers; a row of another shape is kept
/// with no clickid, to be answered `invalid`.
pub fn import_rows_from_json(body: &Map<String, Value>) -> Result<Vec<ImportRow>, Error> {
    let Some(Value::Array(list)) = body.get("rows") else {
        return Err(FieldErrors::single("rows", Msg::new("validation.array").arg("attribute", "rows")));
    };
    if list.len() > MAX_IMPORT_ROWS {
        return Err(too_many_rows());
    }
    let text = |row: &Value, key: &str| row.get(key).and_then(super::scalar_text);
    Ok(list
        .iter()
        .enumerate()
        .map(|(i, row)| ImportRow {
            line: i + 1,
            clickid: text(row, "clickid").unwrap_or_default(),
            status: text(row, "status"),
            payout: text(row, "payout"),
            txid: text(row, "txid"),
        })
        .collect())
}

fn too_many_rows() -> Error {
    FieldErrors::single("rows", Msg::new("import.too_many_rows").arg("max", MAX_IMPORT_ROWS))
}

fn outcome_of(answer: &Answer) -> Outcome {
    match answer.body["outcome"].as_str() {
        Some("created") => Outcome::Created,
        Some("updated") => Outcome::Updated,
        Some("unchanged") => Outcome::Unchanged,
        _ => Outcome::Invalid(answer.body["message"].as_str().unwrap_or("").to_string()),
    }
}

/// What a postback with `status` does to a lead now in `before` (None: no lead).
fn decide(before: Option<&str>, status: &str) -> Outcome {
    match before {
        None => Outcome::Created,
        Some(old) if old == status => Outcome::Unchanged,
        Some(old)
            if matches!(
                (old, status),
                ("pending", "approved") | ("pending", "rejected") | ("approved", "rejected")
            ) =>
        {
            Outcome::Updated
        }
        Some(old) => Outcome::Invalid(format!("A lead cannot go from {old} to {status}.")),
    }
}

fn invalid(field: &str, message: &str) -> Answer {
    Answer {
        counted: None,
        changed: None,
        status: 422,
        body: json!({"message": "The given data was invalid.", "errors": {field: [message]}, "outcome": "invalid"}),
    }
}

/// The traffic source's URL with this lead's values filled in.
fn source_postback(click: &Click, status: &str, payout_cents: i64) -> String {
    let payout = super::money_text(payout_cents);
    super::clicks::fill(&click.source_postback_url, |name| {
        Some(Cow::Borrowed(match name {
            "ext_id" => click.ext_id.as_str(),
            "clickid" => &click.clickid,
            "payout" => &payout,
            "status" => status,
            "sub_id" => &click.sub1,
            _ => return None,
        }))
    })
}

struct Lead {
    id: i64,
    status: String,
    cents: i64,
    day: String,
    sub1: String,
    country: String,
    device: String,
    link_id: i64,
    destination_id: Option<i64>,
    os: Option<String>,
    hour: Option<u8>,
}

/// Creates or moves the lead and its rollups (a new lead counts on today's
/// local date; a later change goes to the same day's rows). Returns the
/// answer (with the lead's change, if any) and the lead id.
#[allow(clippy::too_many_arguments)]
fn apply(
    tx: &Connection,
    click: &Click,
    txid: &str,
    status: &str,
    payout: Option<i64>,
    now: Micros,
    utc_offset: i32,
    rollups: &mut rollup::Batch,
) -> Result<(Answer, Option<i64>), Error> {
    let existing = find_lead(tx, click.user_id, txid)?;
    let Some(lead) = existing else {
        let hour = super::clicks::local_hour(click.at, utc_offset);
        let dims = Dims {
            sub_id: &click.sub1,
            country: &click.country,
            device: &click.device,
            link_id: click.link_id,
            destination_id: click.destination_id,
            os: Some(click.os),
            hour: Some(hour),
        };
        let cents = payout.unwrap_or(click.link_payout);
        let day = clock::local_date(now, utc_offset);
        tx.prepare_cached(
            "INSERT INTO leads (user_id, click_id, link_id, txid, status, payout_cents, sub1, country, device, day,
                                created_at, updated_at, destination_id, os, hour)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            click.user_id,
            click.id,
            click.link_id,
            txid,
            status,
            cents,
            click.sub1,
            click.country,
            click.device,
            day,
            now,
            click.destination_id,
            click.os,
            hour
        ])?;
        let lead_id = tx.last_insert_rowid();
        rollups.add_owned(click.user_id, &day, &dims, Delta::lead(status, cents), false);
        let body = json!({"message": "Conversion recorded.", "outcome": "created",
                          "lead": {"txid": txid, "status": status, "payout": money(cents)}});
        let counted = click.destination_id.map(|id| Counted {
            destination_id: id,
            day: day.clone(),
            conversions: counts_for_cap(status),
        });
        let answer = Answer { status: 200, body, counted, changed: Some(Changed { previous_status: None, cents }) };
        return Ok((answer, Some(lead_id)));
    };
    move_lead(tx, click.user_id, lead, txid, status, payout, now, rollups)
}

/// The user's lead with this transaction id.
fn find_lead(tx: &Connection, user_id: i64, txid: &str) -> rusqlite::Result<Option<Lead>> {
    tx.prepare_cached(
        "SELECT id, status, payout_cents, day, sub1, country, device, link_id, destination_id, os, hour
         FROM leads WHERE user_id = ?1 AND txid = ?2",
    )?
    .query_row(params![user_id, txid], |r| {
        Ok(Lead {
            id: r.get(0)?,
            status: r.get(1)?,
            cents: r.get(2)?,
            day: r.get(3)?,
            sub1: r.get(4)?,
            country: r.get(5)?,
            device: r.get(6)?,
            link_id: r.get(7)?,
            destination_id: r.get(8)?,
            os: r.get(9)?,
            hour: r.get(10)?,
        })
    })
    .optional()
}

/// A known txid moves its own lead, counted where that lead counts (its
/// own day, sub_id, country, device and link), whichever click this
/// postback names, and whether or not that click is still stored.
#[allow(clippy::too_many_arguments)]
fn move_lead(
    tx: &Connection,
    user_id: i64,
    lead: Lead,
    txid: &str,
    status: &str,
    payout: Option<i64>,
    now: Micros,
    rollups: &mut rollup::Batch,
) -> Result<(Answer, Option<i64>), Error> {
    let (lead_id, old_status, old_cents, day) = (lead.id, lead.status, lead.cents, lead.day);
    let dims = Dims {
        sub_id: &lead.sub1,
        country: &lead.country,
        device: &lead.device,
        link_id: lead.link_id,
        destination_id: lead.destination_id,
        os: lead.os.as_deref(),
        hour: lead.hour,
    };
    if old_status == status {
        let body = json!({"message": "Conversion already recorded; nothing changed.", "outcome": "unchanged",
                          "lead": {"txid": txid, "status": status, "payout": money(old_cents)}});
        return Ok((Answer { status: 200, body, counted: None, changed: None }, Some(lead_id)));
    }
    let allowed = matches!(
        (old_status.as_str(), status),
        ("pending", "approved") | ("pending", "rejected") | ("approved", "rejected")
    );
    if !allowed {
        let message = format!("A lead cannot go from {old_status} to {status}.");
        let body = json!({"message": message, "outcome": "refused_transition",
                          "lead": {"txid": txid, "status": old_status, "payout": money(old_cents)}});
        return Ok((Answer { status: 422, body, counted: None, changed: None }, Some(lead_id)));
    }
    let cents = payout.unwrap_or(old_cents);
    tx.prepare_cached("UPDATE leads SET status = ?2, payout_cents = ?3, updated_at = ?4 WHERE id = ?1")?
        .execute(params![lead_id, status, cents, now])?;
    rollups.add_owned(user_id, &day, &dims, Delta::transition(&old_status, old_cents, status, cents), false);
    let body = json!({"message": "Conversion updated.", "outcome": "updated",
                      "lead": {"txid": txid, "status": status, "payout": money(cents)}});
    let counted = lead.destination_id.map(|id| Counted {
        destination_id: id,
        day: day.clone(),
        conversions: counts_for_cap(status) - counts_for_cap(&old_status),
    });
    let answer =
        Answer { status: 200, body, counted, changed: Some(Changed { previous_status: Some(old_status), cents }) };
    Ok((answer, Some(lead_id)))
}
