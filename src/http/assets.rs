//! The web UI, embedded: `static/` compiled into the binary, so the one
//! file is the whole program. Pages are one HTML shell (the app routes on
//! the client); scripts, styles and images under `/assets/`.

use super::Ctx;
use crate::error::Error;
use rouille::Response;

/// Paths the client-side app answers; each gets the shell.
pub const PAGES: &[&str] = &[
    "",
    "login",
    "register",
    "verify",
    "dashboard",
    "links",
    "reports",
    "settings",
    "money",
    "email-verification-error",
];

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

/// A file of `server.static_dir` when it is set (only the known names, so
/// no path reaches outside it), else the embedded copy.
fn load(ctx: &Ctx, name: &str, embedded: &'static [u8]) -> Vec<u8> {
    let dir = &ctx.app.config.server.static_dir;
    if dir.is_empty() {
        return embedded.to_vec();
    }
    std::fs::read(std::path::Path::new(dir).join(name)).unwrap_or_else(|_| embedded.to_vec())
}

pub fn page(ctx: &Ctx) -> Result<Response, Error> {
    let shell = load(ctx, "index.html", SHELL.as_bytes());
    Ok(Response::from_data("text/html; charset=utf-8", shell)
        .with_unique_header("Content-Security-Policy", CSP)
        .with_unique_header("Cache-Control", "no-cache"))
}

pub fn asset(ctx: &Ctx) -> Result<Response, Error> {
    let name = ctx.segment(1);
    let (name, content_type, bytes) = ASSETS.iter().find(|(n, _, _)| *n == name).ok_or(Error::NotFound)?;
    Ok(Response::from_data(*content_type, load(ctx, name, bytes))
        .with_unique_header("Content-Security-Policy", CSP)
        .with_unique_header("Cache-Control", "public, max-age=300"))
}
