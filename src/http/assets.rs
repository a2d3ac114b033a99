//! The web UI, embedded: `static/` compiled into the binary, so the one
//! file is the whole program. Pages are one HTML shell (the app routes on
//! the client); scripts, styles and images under `/assets/`.

use super::Ctx;
use crate::error::Error;
use rouille::Response;

/// Paths the client-side app answers; each gets the shell.
pub const PAGES: &[&str] =
    &["", "login", "register", "verify", "dashboard", "links", "settings", "email-verification-error"];

const SHELL: &str = include_str!("../../static/index.html");

/// (name, content type, bytes) of every embedded asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../static/app.js")),
    ("i18n.js", "text/javascript; charset=utf-8", include_bytes!("../../static/i18n.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_bytes!("../../static/chart.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../static/style.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../static/favicon.svg")),
];

/// Everything the pages load comes from here; no inline script, no CDN.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn page(_: &Ctx) -> Result<Response, Error> {
    Ok(Response::html(SHELL)
        .with_unique_header("Content-Security-Policy", CSP)
        .with_unique_header("Cache-Control", "no-cache"))
}

pub fn asset(ctx: &Ctx) -> Result<Response, Error> {
    let name = ctx.segment(1);
    let (_, content_type, bytes) = ASSETS.iter().find(|(n, _, _)| *n == name).ok_or(Error::NotFound)?;
    Ok(Response::from_data(*content_type, *bytes)
        .with_unique_header("Content-Security-Policy", CSP)
        .with_unique_header("Cache-Control", "public, max-age=300"))
}
