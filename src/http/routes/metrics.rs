//! `GET /metrics`: the server's counters in Prometheus text format, behind
//! `server.metrics_token` (off, 404, while that is empty).

use crate::crypto;
use crate::error::Error;
use crate::http::Ctx;
use crate::metrics::ROUTES;
use rouille::Response;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

pub fn serve(ctx: &Ctx) -> Result<Response, Error> {
    let expected = &ctx.app.config.server.metrics_token;
    if expected.is_empty() {
        return Err(Error::NotFound);
    }
    // Read as every token is (`Authorization: Bearer`, any case, or `X-Token`).
    let given = crate::http::auth::token(ctx).unwrap_or_default();
    if !crypto::ct_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(Error::Unauthenticated);
    }
    Ok(Response::from_data("text/plain; version=0.0.4; charset=utf-8", render(ctx)?))
}

fn render(ctx: &Ctx) -> Result<String, Error> {
    let app = ctx.app;
    let m = &app.metrics;
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP apextrack_clicks_total Clicks recorded since the server started, by kind.\n\
         # TYPE apextrack_clicks_total counter"
    );
    for (kind, n) in [("unique", &m.clicks_unique), ("repeat", &m.clicks_repeat), ("bot", &m.clicks_bot)] {
        let _ = writeln!(out, "apextrack_clicks_total{{kind=\"{kind}\"}} {}", n.load(Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP apextrack_postbacks_total Conversion postbacks received since the server started, by outcome.\n\
         # TYPE apextrack_postbacks_total counter"
    );
    for (outcome, n) in m.postbacks() {
        let _ = writeln!(out, "apextrack_postbacks_total{{outcome=\"{outcome}\"}} {n}");
    }
    let queues = app.db.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT CASE WHEN channel IN ('mail', 'sms') THEN 'account' ELSE 'integrations' END AS queue,
                    sum(status = 'pending'), sum(status = 'failed')
             FROM outbox GROUP BY queue",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })?;
    let count = |queue: &str, failed: bool| {
        queues.iter().find(|(q, _, _)| q == queue).map_or(0, |(_, p, f)| if failed { *f } else { *p })
    };
    let _ = writeln!(
        out,
        "# HELP apextrack_outbox_pending Messages waiting in the outbox, by queue.\n# TYPE apextrack_outbox_pending gauge"
    );
    for queue in ["account", "integrations"] {
        let _ = writeln!(out, "apextrack_outbox_pending{{queue=\"{queue}\"}} {}", count(queue, false));
    }
    let _ = writeln!(
        out,
        "# HELP apextrack_outbox_failed Messages given up on after every retry and still kept (30 days), by queue.\n\
         # TYPE apextrack_outbox_failed gauge"
    );
    for queue in ["account", "integrations"] {
        let _ = writeln!(out, "apextrack_outbox_failed{{queue=\"{queue}\"}} {}", count(queue, true));
    }
    let _ = writeln!(
        out,
        "# HELP apextrack_group_commit_batch_size Clicks written per transaction.\n\
         # TYPE apextrack_group_commit_batch_size histogram"
    );
    app.tracking.click_writer.batch_sizes.render("apextrack_group_commit_batch_size", "", &mut out);
    let _ = writeln!(
        out,
        "# HELP apextrack_http_request_duration_seconds Time to answer a request, by route class.\n\
         # TYPE apextrack_http_request_duration_seconds histogram"
    );
    for (route, histogram) in ROUTES.iter().zip(&m.http) {
        histogram.render("apextrack_http_request_duration_seconds", &format!("route=\"{route}\""), &mut out);
    }
    let path = app.db.path();
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    for (name, help, value) in [
        ("apextrack_connections_open", "Connections open now.", m.connections_open.load(Relaxed) as u64),
        ("apextrack_db_bytes", "Size of the database file.", size(path)),
        ("apextrack_wal_bytes", "Size of the database's write-ahead log.", size(std::path::Path::new(&wal))),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    Ok(out)
}
