//! The HTTP server: rouille's requests and responses over our own
//! connection layer (`server`), one access-log line per request, no panic
//! ever reaching a client, and a graceful stop.

pub mod assets;
pub mod auth;
pub mod input;
pub mod openapi;
pub mod respond;
pub mod router;
pub mod routes;
pub mod server;

use crate::accounts::Session;
use crate::app::App;
use crate::clock;
use crate::error::Error;
use crate::i18n::Lang;
use rouille::{Request, Response};
use std::cell::{Cell, OnceCell};
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// One request being answered: the app, the request, the language the
/// answer will be in, the client's address and, once a guard ran, the session.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub req: &'a Request,
    pub ip: IpAddr,
    pub lang: Cell<Lang>,
    session: OnceCell<Session>,
    body: OnceCell<Vec<u8>>,
    /// The shape of this route's answers, from the route table.
    pub shape: Cell<respond::Shape>,
}

impl<'a> Ctx<'a> {
    pub fn new(app: &'a App, req: &'a Request) -> Ctx<'a> {
        let lang = Lang::negotiate(req.header("Accept-Language"), app.default_lang);
        let ip = input::client_ip(req, &app.trusted_proxies);
        Ctx {
            app,
            req,
            ip,
            lang: Cell::new(lang),
            session: OnceCell::new(),
            body: OnceCell::new(),
            shape: Cell::new(respond::Shape::Plain),
        }
    }

    /// The request body, read once (at most `server.max_body_bytes`, or
    /// [`IMPORT_MAX_BODY`] on an import route).
    pub fn body(&self) -> Result<&[u8], Error> {
        if let Some(body) = self.body.get() {
            return Ok(body);
        }
        let max = self.app.config.server.max_body_bytes;
        let limit =
            if is_import(self.req.method(), input::raw_path(self.req)) { max.max(IMPORT_MAX_BODY) } else { max };
        let body = input::read_body(self.req, limit)?;
        Ok(self.body.get_or_init(|| body))
    }

    /// The body as a JSON object.
    pub fn json(&self) -> Result<input::Input, Error> {
        input::json_object(self.body()?)
    }

    /// Path segment `n` (0-based, undecoded): `/api/email/verify/7/ab` → 3 is `7`.
    pub fn segment(&self, n: usize) -> &'a str {
        input::raw_path(self.req).trim_matches('/').split('/').nth(n).unwrap_or("")
    }

    /// The session a guard of the route table established.
    pub fn session(&self) -> Result<&Session, Error> {
        self.session.get().ok_or(Error::Unauthenticated)
    }

    pub(crate) fn set_session(&self, session: Session) {
        if let Some(lang) = Lang::parse(&session.user.language) {
            self.lang.set(lang);
        }
        let _ = self.session.set(session);
    }
}

/// A running server. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    server: server::Server,
}

/// How long a stop waits for in-flight requests before giving up on them.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Connections open right now (accepted and not yet closed).
    pub fn open_connections(&self) -> usize {
        self.server.open_connections()
    }

    /// Refuses new connections, closes idle ones and lets the requests in
    /// flight finish (up to 30 s): those being handled, and those whose
    /// body is still arriving. Returns false if some were still running.
    pub fn stop(self) -> bool {
        self.server.shutdown();
        let deadline = Instant::now() + DRAIN_LIMIT;
        while self.server.open_connections() > 0 {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// Routes that take files (SPEC §12): their bodies may be this big
/// whatever `server.max_body_bytes` says, once the sender is known.
pub const IMPORT_PATHS: &[&str] = &["/api/conversions/import", "/api/costs/import"];
pub const IMPORT_MAX_BODY: u64 = 8 * 1024 * 1024;
/// Import bodies held in memory at once: two.
const IMPORT_BODY_MEMORY: u64 = 2 * IMPORT_MAX_BODY;

fn is_import(method: &str, path: &str) -> bool {
    method == "POST" && IMPORT_PATHS.contains(&path.trim_end_matches('/'))
}

/// The application as the connection layer sees it.
struct Service {
    app: Arc<App>,
}

impl server::Service for Service {
    fn handle(&self, req: &Request) -> Response {
        handle(&self.app, req)
    }

    /// An import's body may be large when its sender is a verified user's
    /// token or an API key that may import (its signature, which covers
    /// the body, is checked once the body is read). Strangers get the
    /// usual limit, so they cannot make the server hold 8 MiB each.
    fn large_body(&self, method: &str, target: &str, header: &dyn Fn(&str) -> Option<String>) -> Option<u64> {
        let path = target.split('?').next().unwrap_or("");
        if !is_import(method, path) {
            return None;
        }
        let app = &self.app;
        let known = match auth::token_in(|name| header(name)) {
            Some(token) => crate::accounts::authenticate(app, &token)
                .is_ok_and(|session| crate::accounts::require_verified(&session.user).is_ok()),
            // A key's id is not a secret: the request must also carry a
            // fresh timestamp and a signature (checked with the body).
            None => {
                let fresh =
                    header("X-API-TIMESTAMP").is_some_and(|t| auth::fresh_timestamp(&t, app.clock.now() / 1000));
                let signed = header("X-API-SIGNATURE")
                    .is_some_and(|s| s.trim().len() == 64 && s.trim().bytes().all(|b| b.is_ascii_hexdigit()));
                fresh
                    && signed
                    && header("X-API-KEY").is_some_and(|key| {
                        crate::settings::api_keys::find_by_api_key(app, key.trim())
                            .ok()
                            .flatten()
                            .is_some_and(|k| k.permissions.iter().any(|p| p == "conversions:write"))
                    })
            }
        };
        known.then(|| app.config.server.max_body_bytes.max(IMPORT_MAX_BODY))
    }

    fn reject(&self, peer: SocketAddr, status: u16, detail: &str) -> Response {
        let lang = self.app.default_lang;
        let response = if status == 500 {
            respond::error(&Error::internal(detail), respond::Shape::Plain, lang)
        } else if status == 503 {
            respond::error(&Error::Busy, respond::Shape::Plain, lang)
        } else if status == 413 {
            respond::error(
                &Error::PayloadTooLarge { limit: self.app.config.server.max_body_bytes },
                respond::Shape::Plain,
                lang,
            )
        } else {
            respond::message(status, &crate::i18n::Msg::new("http.bad_request").arg("detail", detail), lang)
        };
        let now = clock::format(self.app.clock.now());
        self.app.log.line(format!("{now} {} - - {status} ({})", peer.ip(), detail.escape_default()));
        respond::with_security_headers(response)
    }
}

/// Binds `server.bind` and answers requests until [`Running::stop`].
pub fn start(app: Arc<App>) -> Result<Running, Error> {
    let cfg = &app.config.server;
    let limits = server::Limits {
        spare_threads: cfg.threads as usize,
        max_connections: cfg.max_connections as usize,
        keep_alive: Duration::from_secs(cfg.keep_alive_secs),
        max_body: cfg.max_body_bytes,
        max_body_memory: cfg.max_body_memory_bytes,
        large_body_memory: IMPORT_BODY_MEMORY,
        max_connections_per_ip: cfg.max_connections_per_ip as usize,
        uncapped: app.trusted_proxies.clone(),
        open: Arc::clone(&app.metrics.connections_open),
    };
    let bind = cfg.bind.clone();
    let service = Service { app: Arc::clone(&app) };
    let server = server::Server::start(&bind, limits, service)
        .map_err(|e| Error::internal(format!("cannot listen on {bind}: {e}")))?;
    Ok(Running { server })
}

/// Every request passes here: dispatch, catch panics, render errors, add
/// headers, log one line.
pub fn handle(app: &App, req: &Request) -> Response {
    let started = Instant::now();
    let ctx = Ctx::new(app, req);
    let response = guarded(&ctx, || router::dispatch(&ctx));
    let response = respond::with_security_headers(response);
    let elapsed = started.elapsed();
    app.metrics.route(input::raw_path(req)).observe(elapsed.as_secs_f64());
    // The path only: query strings may carry signatures and secrets.
    let path = loggable_path(input::raw_path(req));
    app.log.access(format!(
        "{} {} {} {} {} {:.1}ms",
        clock::format(app.clock.now()),
        ctx.ip,
        req.method(),
        path.escape_default(),
        response.status_code,
        elapsed.as_secs_f64() * 1000.0
    ));
    response
}

/// The path as the access log shows it: the email hash of a verification
/// link is personal data and is left out.
fn loggable_path(path: &str) -> &str {
    match path.strip_prefix("/api/email/verify/") {
        Some(rest) if rest.contains('/') => "/api/email/verify/{id}/{hash}",
        _ => path,
    }
}

/// Runs `work` (a report, the dashboard: reads that may take a while) on a
/// thread of lower scheduling priority (nice 10), and waits for it. Under
/// a flood of clicks on a small machine the clicks get the CPU first: a
/// paid click must not wait behind someone's report, which can wait.
pub fn low_priority<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let work = std::sync::Mutex::new(Some(work));
    let run = || work.lock().unwrap_or_else(|e| e.into_inner()).take().map(|f| f());
    let done = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new().name("report".into()).spawn_scoped(scope, || {
            // SAFETY: setpriority only changes the scheduling priority of
            // this thread (its own id); raising the nice value needs no privilege.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
            }
            run()
        });
        spawned.ok().and_then(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    // No thread to be had: here, at normal priority.
    match done {
        Some(out) => out,
        None => run().expect("the work ran on the thread or is still here"),
    }
}

/// Runs a handler so that neither an error nor a panic escapes: both become
/// the contract's JSON, and internal details go to the log only.
pub fn guarded(ctx: &Ctx, f: impl FnOnce() -> Result<Response, Error>) -> Response {
    let error = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(response)) => return response,
        Ok(Err(error)) => error,
        Err(_) => Error::internal("handler panicked"),
    };
    if let Error::Internal(detail) | Error::Config(detail) = &error {
        let path = input::raw_path(ctx.req).escape_default();
        ctx.app.log.line(format!("error: {} {path}: {detail}", ctx.req.method()));
    }
    respond::error(&error, ctx.shape.get(), ctx.lang.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Log;
    use crate::Config;
    use std::io::Read;

    #[test]
    fn a_panic_becomes_the_json_500_and_the_detail_stays_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.path = dir.path().join("t.db");
        let mut app = App::open(config).unwrap();
        app.core.log = Log::capturing();
        let req = Request::fake_http("GET", "/api/x?signature=abc", vec![], vec![]);
        let ctx = Ctx::new(&app, &req);
        let response = guarded(&ctx, || panic!("boom"));
        assert_eq!(response.status_code, 500);
        let mut body = String::new();
        response.data.into_reader_and_size().0.read_to_string(&mut body).unwrap();
        assert_eq!(body, r#"{"message":"Server Error."}"#);
        let log = app.log.lines().join("\n");
        assert!(log.contains("error: GET /api/x: handler panicked"), "{log}");
        assert!(!log.contains("signature"), "{log}");
    }
}
