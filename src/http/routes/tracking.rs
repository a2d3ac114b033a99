//! HTTP adapters for tracking.

use crate::accounts::store as accounts_store;
use crate::error::{Error, FieldErrors};
use crate::http::input::{self, parse_json};
use crate::http::respond;
use crate::http::Ctx;
use crate::i18n::Msg;
use crate::net::form_pairs;
use crate::tracking::dashboard::{self, Range};
use crate::tracking::{clicks, costs, links, payment, postback, routing};
use rouille::Response;
use serde_json::{json, Value};

fn user_id(ctx: &Ctx) -> Result<i64, Error> {
    Ok(ctx.session()?.user.id)
}

/// `GET /api/links?limit&offset&sortBy&sort&search`: a page of links.
pub fn list_links(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let page = input::page(|name| ctx.req.get_param(name), 50, 200, &links::SORTS)?;
    let search = ctx.req.get_param("search").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if search.as_ref().is_some_and(|s| s.chars().count() > links::MAX_SEARCH) {
        let msg = Msg::new("validation.max").arg("attribute", "search").arg("max", links::MAX_SEARCH);
        return Err(FieldErrors::single("search", msg));
    }
    let (rows, total) = ctx.app.db.read(|c| {
        Ok(links::page(c, user, search.as_deref(), page.sort_by, page.ascending, page.limit, page.offset)?)
    })?;
    let data: Vec<Value> = rows
        .iter()
        .map(|(link, clicks)| {
            let mut json = links::to_json(ctx.app, link);
            json["clicks"] = json!(clicks);
            json
        })
        .collect();
    Ok(respond::json(200, &json!({"data": data, "total": total, "limit": page.limit, "offset": page.offset})))
}

/// `POST /api/links {name, url, payout?, slug?, status?, source_postback_url?}` → 201.
pub fn create_link(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let fields = links::read_fields(&input.0, true)?;
    let link = links::create(ctx.app, user_id(ctx)?, fields)?;
    Ok(respond::json(201, &json!({"data": links::to_json(ctx.app, &link)})))
}

/// `GET /api/links/{id}`.
pub fn show_link(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let link = ctx.app.db.read(|c| links::find_owned(c, user, ctx.segment(2)))?;
    Ok(respond::json(200, &json!({"data": links::to_json(ctx.app, &link)})))
}

/// `PUT /api/links/{id}`: changes the fields sent.
pub fn update_link(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let fields = links::read_fields(&input.0, false)?;
    let link = links::update(ctx.app, &ctx.app.tracking.slugs, user_id(ctx)?, ctx.segment(2), fields)?;
    Ok(respond::json(200, &json!({"data": links::to_json(ctx.app, &link)})))
}

/// `DELETE /api/links/{id}`.
pub fn delete_link(ctx: &Ctx) -> Result<Response, Error> {
    links::delete(ctx.app, &ctx.app.tracking.slugs, user_id(ctx)?, ctx.segment(2))?;
    Ok(respond::message(200, &Msg::new("links.deleted"), ctx.lang.get()))
}

/// `GET /api/links/{id}/routing`.
pub fn show_routing(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let routing = ctx.app.db.read(|c| links::routing_of(c, user, ctx.segment(2)))?;
    Ok(respond::json(200, &json!({"data": routing::to_json(&routing)})))
}

/// `PUT /api/links/{id}/routing {destinations, rules?, mode?, fallback_url?}`:
/// replaces the routing at once.
pub fn update_routing(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    // Another user's link is a 404 before its body is judged.
    ctx.app.db.read(|c| links::find_owned(c, user, ctx.segment(2)))?;
    let input = ctx.json()?;
    let parsed = routing::parse(&input.0)?;
    let keep_fallback = !input.0.contains_key("fallback_url");
    let stored = links::set_routing(ctx.app, &ctx.app.tracking.slugs, user, ctx.segment(2), parsed, keep_fallback)?;
    Ok(respond::json(200, &json!({"data": routing::to_json(&stored)})))
}

/// `GET /api/links/{id}/stats?from&to`: per destination.
pub fn link_stats(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let range = Range::parse(ctx.req.get_param("from"), ctx.req.get_param("to"))?;
    let routing = ctx.app.db.read(|c| links::routing_of(c, user, ctx.segment(2)))?;
    let rows = dashboard::link_stats(ctx.app, user, &routing, &range)?;
    Ok(respond::json(200, &json!({"data": rows})))
}

/// `GET /click/{clickid}`: from a lander to an offer.
pub fn leave_lander(ctx: &Ctx) -> Result<Response, Error> {
    match clicks::leave_lander(ctx.app, &ctx.app.tracking, ctx.segment(1))? {
        Some(location) => Ok(Response::redirect_302(location).with_unique_header("Cache-Control", "no-store")),
        None => Ok(Response::html(NOT_FOUND_PAGE).with_status_code(404)),
    }
}

/// Whether a body that may be JSON or a form/CSV is JSON: by its type, or
/// by its first character.
fn is_json_body(ctx: &Ctx, body: &[u8]) -> bool {
    ctx.req.header("Content-Type").is_some_and(|t| t.contains("json"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// `POST /api/conversions/import`: a network's conversions, as CSV
/// (`clickid,status,payout,txid`; `?dry_run=1`) or JSON
/// (`{"rows": [...], "dry_run": false}`), each row landed as its postback
/// would land. Answers the counts of each outcome and the rows that did
/// not land.
pub fn import_conversions(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let body = ctx.body()?;
    let not_boolean = || FieldErrors::single("dry_run", Msg::new("validation.boolean").arg("attribute", "dry run"));
    let (rows, dry_run) = if is_json_body(ctx, body) {
        // Up to 50 000 rows of a clickid, status, payout and txid each.
        let max_values = 6 * postback::MAX_IMPORT_ROWS + 16;
        let map = match crate::http::input::parse_json_within(body, max_values)? {
            Value::Object(map) => map,
            _ => return Err(Error::BadRequest(Msg::new("http.not_object"))),
        };
        let dry_run = match map.get("dry_run") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(not_boolean()),
        };
        (postback::import_rows_from_json(&map)?, dry_run)
    } else {
        // A mistyped dry_run must not import for real.
        let dry_run = match ctx.req.get_param("dry_run").as_deref().map(str::trim) {
            None | Some("" | "0" | "false" | "no") => false,
            Some("1" | "true" | "yes") => true,
            Some(_) => return Err(not_boolean()),
        };
        (postback::import_rows_from_csv(body)?, dry_run)
    };
    let outcomes = postback::import(ctx.app, &ctx.app.tracking.caps, user, &rows, dry_run)?;
    let mut counts = serde_json::Map::new();
    for name in ["created", "updated", "unchanged", "unknown_clickid", "invalid"] {
        counts.insert(name.into(), json!(outcomes.iter().filter(|o| o.name() == name).count()));
    }
    let failed: Vec<Value> = rows
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, postback::Outcome::UnknownClickid | postback::Outcome::Invalid(_)))
        .map(|(row, o)| {
            let reason = match o {
                postback::Outcome::Invalid(reason) => reason.as_str(),
                _ => "No click of yours has this clickid.",
            };
            json!({"line": row.line, "clickid": crate::tracking::clip(&row.clickid, 64), "outcome": o.name(), "reason": reason})
        })
        .collect();
    Ok(respond::json(200, &json!({"counts": counts, "rows": failed, "dry_run": dry_run})))
}

fn today(ctx: &Ctx) -> String {
    crate::clock::local_date(ctx.app.clock.now(), ctx.app.utc_offset)
}

/// A JSON field as the text a CSV cell would hold: missing or null is
/// empty, a string or number as written, anything else None.
fn cell(value: Option<&Value>) -> Option<String> {
    match value {
        None | Some(Value::Null) => Some(String::new()),
        Some(v) => crate::tracking::scalar_text(v),
    }
}

/// `POST /api/costs {link_id, day, amount, sub_id?}`: that day's total cost
/// for the link (or one sub_id of it), replacing what its clicks carried.
pub fn set_cost(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let input = ctx.json()?;
    let mut errors = FieldErrors::default();
    let mut field = |name: &str| -> String {
        cell(input.0.get(name)).unwrap_or_else(|| {
            errors.add(name, Msg::new("validation.string").arg("attribute", name.replace('_', " ")));
            String::new()
        })
    };
    let (link, day, sub, amount) = (field("link_id"), field("day"), field("sub_id"), field("amount"));
    errors.into_result()?;
    let today = today(ctx);
    let entry = ctx.app.db.read(|c| {
        costs::check(c, user, &link, &day, &sub, &amount, &today).map_err(|problems| {
            let mut errors = FieldErrors::default();
            for (field, msg) in problems {
                errors.add(field, msg);
            }
            errors.into_result().err().unwrap_or(Error::NotFound)
        })
    })?;
    let saved = costs::set(ctx.app, user, &[entry])?;
    Ok(respond::json(201, &json!({"data": saved.first().map(costs::to_json)})))
}

/// `GET /api/costs?from&to`: the user's cost entries.
pub fn list_costs(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let range = Range::parse(ctx.req.get_param("from"), ctx.req.get_param("to"))?;
    let (from, to) = range.bounds();
    let entries = ctx.app.db.read(|c| Ok(costs::list(c, user, from, to)?))?;
    let data: Vec<Value> = entries.iter().map(costs::to_json).collect();
    Ok(respond::json(200, &json!({"data": data})))
}

/// `DELETE /api/costs/{id}`: its scope's clicks count what they carried again.
pub fn delete_cost(ctx: &Ctx) -> Result<Response, Error> {
    costs::delete(ctx.app, user_id(ctx)?, ctx.segment(2))?;
    Ok(respond::message(200, &Msg::new("costs.deleted"), ctx.lang.get()))
}

/// `POST /api/costs/import` (`text/csv`, `day,link_id,sub_id,amount`): the
/// whole file or nothing.
pub fn import_costs(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let body = ctx.body()?;
    let today = today(ctx);
    let entries = ctx.app.db.read(|c| costs::from_csv(c, user, body, &today))?;
    let saved = costs::set(ctx.app, user, &entries)?;
    let data: Vec<Value> = saved.iter().map(costs::to_json).collect();
    Ok(respond::json(200, &json!({"count": data.len(), "data": data})))
}

const NOT_FOUND_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Link not found</title></head>\
<body style=\"font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1d2733\">\
<h1>Link not found</h1><p>This link does not exist or is paused.</p></body></html>";

/// `GET /go/{slug}`: record, then 302. Unknown or paused: a 404 page.
pub fn click(ctx: &Ctx) -> Result<Response, Error> {
    let header_name = &ctx.app.config.tracking.country_header;
    let visit = clicks::Visit {
        slug: ctx.segment(1),
        query: ctx.req.raw_query_string(),
        user_agent: ctx.req.header("User-Agent").unwrap_or(""),
        ip: ctx.ip,
        country_header: if header_name.is_empty() { None } else { ctx.req.header(header_name) },
        accept_language: ctx.req.header("Accept-Language").unwrap_or(""),
    };
    // Link checkers and previews send HEAD: answer, but count nothing.
    if ctx.req.method() == "HEAD" {
        return Ok(match ctx.app.tracking.slugs.get(&ctx.app.db, visit.slug)? {
            Some(target) => Response::redirect_302(clicks::fill(&target.url, |_| Some("".into()))),
            None => Response::html(NOT_FOUND_PAGE).with_status_code(404),
        });
    }
    match clicks::record(ctx.app, &ctx.app.tracking, &visit)? {
        Some(location) => Ok(Response::redirect_302(location).with_unique_header("Cache-Control", "no-store")),
        None => Ok(Response::html(NOT_FOUND_PAGE).with_status_code(404)),
    }
}

/// `GET|POST /api/postback/conversion`: parameters from the query string
/// and, for POST, a JSON or form body.
pub fn conversion(ctx: &Ctx) -> Result<Response, Error> {
    let mut params = form_pairs(ctx.req.raw_query_string());
    if ctx.req.method() == "POST" {
        let body = ctx.body()?;
        if is_json_body(ctx, body) {
            match parse_json(body)? {
                Value::Object(map) => params.extend(postback::json_params(&map)),
                _ => return Err(Error::BadRequest(Msg::new("http.not_object"))),
            }
        } else {
            params.extend(form_pairs(&String::from_utf8_lossy(body)));
        }
    }
    let answer = postback::handle(ctx.app, &ctx.app.tracking.caps, ctx.req.method(), ctx.ip, &params)?;
    Ok(respond::json(answer.status, &answer.body))
}

/// `GET /api/postbacks?limit&offset`: the user's received postbacks, newest first.
pub fn postback_log(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let limit = dashboard::parse_limit(ctx.req.get_param("limit"), 50, 500)?;
    let offset =
        match ctx.req.get_param("offset") {
            None => 0,
            Some(o) => o.trim().parse::<i64>().ok().filter(|o| *o >= 0).ok_or_else(|| {
                FieldErrors::single("offset", Msg::new("validation.integer").arg("attribute", "offset"))
            })?,
        };
    let rows = ctx.app.db.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT id, received_at, method, ip, params, outcome, status, lead_id FROM postback_log
             WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )?;
        let rows = stmt.query_map(rusqlite::params![user, limit, offset], |r| {
            let params: String = r.get(4)?;
            Ok(json!({
                "id": r.get::<_, i64>(0)?,
                "received_at": crate::clock::format(r.get(1)?),
                "method": r.get::<_, String>(2)?,
                "ip": r.get::<_, String>(3)?,
                "params": serde_json::from_str::<Value>(&params).unwrap_or(Value::Null),
                "outcome": r.get::<_, String>(5)?,
                "status": r.get::<_, i64>(6)?,
                "lead_id": r.get::<_, Option<i64>>(7)?,
            }))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })?;
    Ok(respond::json(200, &json!({"data": rows, "limit": limit, "offset": offset})))
}

/// `POST /api/payment/notification`, signed in `X-Callback-Signature`.
pub fn payment_notification(ctx: &Ctx) -> Result<Response, Error> {
    let body = ctx.body()?;
    if !payment::signature_ok(&ctx.app.config.payment.secret, body, ctx.req.header("X-Callback-Signature")) {
        return Err(Error::Forbidden(Msg::new("payment.bad_signature")));
    }
    let fields = if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        match parse_json(body)? {
            Value::Object(map) => map,
            _ => return Err(Error::BadRequest(Msg::new("http.not_object"))),
        }
    } else {
        form_pairs(&String::from_utf8_lossy(body)).into_iter().map(|(k, v)| (k, Value::String(v))).collect()
    };
    let answer = payment::handle(ctx.app, &fields)?;
    Ok(respond::json(200, &answer))
}

fn range(ctx: &Ctx) -> Result<Range, Error> {
    Range::parse(ctx.req.get_param("from"), ctx.req.get_param("to"))
}

/// `GET /api/dashboard-data?from&to&limit`.
pub fn dashboard_data(ctx: &Ctx) -> Result<Response, Error> {
    let range = range(ctx)?;
    let limit = dashboard::parse_limit(ctx.req.get_param("limit"), 100, 1000)?;
    let user = user_id(ctx)?;
    let data = crate::http::low_priority(|| dashboard::dashboard(ctx.app, &ctx.app.tracking, user, &range, limit))?;
    Ok(respond::json(200, &data))
}

/// `GET /api/reports?group_by=day|sub_id|country|device|link|destination|os|hour&from&to&limit&format=csv`.
pub fn reports(ctx: &Ctx) -> Result<Response, Error> {
    let group_by = ctx.req.get_param("group_by").unwrap_or_else(|| "day".into());
    if !dashboard::GROUPS.contains(&group_by.as_str()) {
        let msg = Msg::new("validation.in").arg("attribute", "group by").arg("values", dashboard::GROUPS.join(", "));
        return Err(FieldErrors::single("group_by", msg));
    }
    let range = range(ctx)?;
    let limit = dashboard::parse_limit(ctx.req.get_param("limit"), 1000, 10_000)?;
    let csv = match ctx.req.get_param("format").as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            let msg = Msg::new("validation.in").arg("attribute", "format").arg("values", "json, csv");
            return Err(FieldErrors::single("format", msg));
        }
    };
    let filters = dashboard::Filters::parse(|name| ctx.req.get_param(name))?;
    let user = user_id(ctx)?;
    // The rows and their CSV are made on the report thread, behind the clicks.
    let (rows, csv) = ctx.app.tracking.reports.run(user, || {
        crate::http::low_priority(|| {
            let rows = if filters.is_empty() {
                dashboard::report(ctx.app, user, &group_by, &range, limit)?
            } else {
                dashboard::report_filtered(ctx.app, user, &group_by, &range, &filters, limit)?
            };
            if !csv {
                return Ok::<_, Error>((rows, None));
            }
            let csv = dashboard::report_csv(&group_by, &rows);
            Ok((Vec::new(), Some(csv)))
        })
    })?;
    match csv {
        None => {
            #[derive(serde::Serialize)]
            struct Answer<'a> {
                group_by: &'a str,
                from: &'a Option<String>,
                to: &'a Option<String>,
                today: String,
                data: dashboard::JsonRows<'a>,
            }
            let today = today(ctx);
            let data = dashboard::JsonRows { group_by: &group_by, rows: &rows };
            let answer = Answer { group_by: &group_by, from: &range.from, to: &range.to, today, data };
            let body = serde_json::to_vec(&answer).map_err(|e| Error::internal(format!("report: {e}")))?;
            Ok(Response::from_data("application/json", body))
        }
        Some(csv) => Ok(Response::from_data("text/csv; charset=utf-8", csv)
            .with_unique_header("Content-Disposition", format!("attachment; filename=\"apextrack-{group_by}.csv\""))),
    }
}

/// `POST /api/user/postback-secret`: a new secret; the old URL stops working.
pub fn rotate_secret(ctx: &Ctx) -> Result<Response, Error> {
    let user = user_id(ctx)?;
    let version = ctx.app.db.write(|tx| Ok(accounts_store::bump_postback_secret(tx, user)?))?;
    Ok(respond::json(200, &json!({"postback_url": postback::url(ctx.app, user, version)})))
}

/// `PUT /api/user/postback-allowlist {"allowlist": ["203.0.113.7", "10.0.0.0/8"]}`; `[]` allows any address.
pub fn set_allowlist(ctx: &Ctx) -> Result<Response, Error> {
    let input = ctx.json()?;
    let invalid = || FieldErrors::single("allowlist", Msg::new("validation.allowlist").arg("attribute", "allowlist"));
    let Some(Value::Array(items)) = input.0.get("allowlist") else { return Err(invalid()) };
    let mut entries = Vec::new();
    for item in items {
        match item.as_str().map(str::trim) {
            Some(e) if crate::net::parse_cidr(e).is_some() && entries.len() < 100 => entries.push(e.to_string()),
            _ => return Err(invalid()),
        }
    }
    let joined = entries.join(",");
    let user = user_id(ctx)?;
    ctx.app.db.write(|tx| Ok(accounts_store::set_postback_allowlist(tx, user, &joined)?))?;
    Ok(respond::json(200, &json!({"allowlist": entries})))
}
