//! The HTTP server: rouille on a thread pool, one access-log line per
//! request, no panic ever reaching a client, and a graceful stop.

pub mod assets;
pub mod auth;
pub mod input;
pub mod openapi;
pub mod respond;
pub mod router;

use crate::accounts::Session;
use crate::app::App;
use crate::clock;
use crate::error::Error;
use crate::i18n::Lang;
use rouille::{Request, Response};
use std::cell::{Cell, OnceCell};
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
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
    /// A seed 004 route: errors answer in its envelope.
    pub envelope: Cell<bool>,
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
            envelope: Cell::new(false),
        }
    }

    /// The request body, read once (at most `server.max_body_bytes`).
    pub fn body(&self) -> Result<&[u8], Error> {
        if let Some(body) = self.body.get() {
            return Ok(body);
        }
        let body = input::read_body(self.req, self.app.config.server.max_body_bytes)?;
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
    addr: SocketAddr,
    stop: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
    gate: Arc<Gate>,
}

/// Requests being handled, and whether new ones are still taken.
///
/// rouille's loop (`poll_timeout`) returns only after a quiet moment, so
/// under steady traffic it never gets to notice a stop. The stop therefore
/// happens here: once `closed`, new requests get a quick 503 without
/// touching anything, and the stop waits for the requests already inside.
#[derive(Default)]
struct Gate {
    closed: AtomicBool,
    inside: AtomicUsize,
}

impl Gate {
    /// Counts a request in, unless closed.
    fn enter(&self) -> bool {
        self.inside.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.inside.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a stop waits for in-flight requests before giving up on them.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests and lets those in flight finish (up to 30 s).
    /// Returns false if requests were still running. The listener closes
    /// when rouille's loop next goes quiet, or when the process exits.
    pub fn stop(self) -> bool {
        self.gate.closed.store(true, Ordering::SeqCst);
        let _ = self.stop.send(());
        let deadline = Instant::now() + DRAIN_LIMIT;
        while self.gate.inside.load(Ordering::SeqCst) > 0 {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        // Give an idle loop the chance to close the listener right away.
        let _ = self.done.recv_timeout(Duration::from_millis(200));
        true
    }
}

/// Binds `server.bind` and answers requests on `server.threads` threads
/// until [`Running::stop`].
pub fn start(app: Arc<App>) -> Result<Running, Error> {
    let bind = app.config.server.bind.clone();
    let threads = app.config.server.threads as usize;
    let handler_app = Arc::clone(&app);
    let gate = Arc::new(Gate::default());
    let handler_gate = Arc::clone(&gate);
    let server = rouille::Server::new(&bind, move |req| {
        if !handler_gate.enter() {
            let busy = respond::error(&Error::Busy, handler_app.default_lang);
            return respond::with_security_headers(busy);
        }
        // Left even if something unwinds past `handle`'s own guard.
        struct Inside<'a>(&'a Gate);
        impl Drop for Inside<'_> {
            fn drop(&mut self) {
                self.0.leave();
            }
        }
        let _inside = Inside(&handler_gate);
        handle(&handler_app, req)
    })
    .map_err(|e| Error::internal(format!("cannot listen on {bind}: {e}")))?
    .pool_size(threads);
    let addr = server.server_addr();
    set_nodelay_on_listener(addr);
    let (stop_tx, stop_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || {
            while stop_rx.try_recv().is_err() {
                server.poll_timeout(Duration::from_millis(50));
            }
            server.join();
            drop(server);
            let _ = done_tx.send(());
        })
        .map_err(Error::internal)?;
    Ok(Running { addr, stop: stop_tx, done: done_rx, gate })
}

/// Turns Nagle's algorithm off for every connection the server accepts.
///
/// tiny_http (under rouille) writes a response through a 1 KiB buffer, so
/// any answer over 1 KiB leaves in two sends; with Nagle on, the second
/// waits for the client's delayed ACK of the first: 40 ms added to every
/// dashboard or list on a keep-alive connection. rouille does not expose
/// its sockets, but on Linux accepted sockets inherit TCP_NODELAY from the
/// listening one, which is the only socket bound to `addr` right after
/// the bind: find it among our descriptors and set the option there.
fn set_nodelay_on_listener(addr: SocketAddr) {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<std::os::fd::RawFd>().ok()) else { continue };
        // SAFETY: the borrow lives only for the calls below and is used for
        // nothing but getsockname/setsockopt. A descriptor that is not a
        // socket, or was closed (or reused) since it was listed, makes them
        // fail or not match; only a socket bound to our address is changed.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        if socket.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr) {
            let _ = socket.set_tcp_nodelay(true);
            return;
        }
    }
}

/// Every request passes here: dispatch, catch panics, render errors, add
/// headers, log one line.
pub fn handle(app: &App, req: &Request) -> Response {
    let started = Instant::now();
    let ctx = Ctx::new(app, req);
    let response = guarded(&ctx, || router::dispatch(&ctx));
    let response = respond::with_security_headers(response);
    // The path only: query strings may carry signatures and secrets.
    let path = loggable_path(input::raw_path(req));
    app.log.line(format!(
        "{} {} {} {} {} {:.1}ms",
        clock::format(app.clock.now()),
        ctx.ip,
        req.method(),
        path.escape_default(),
        response.status_code,
        started.elapsed().as_secs_f64() * 1000.0
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

/// Runs a handler so that neither an error nor a panic escapes: both become
/// the contract's JSON, and internal details go to the log only.
pub fn guarded(ctx: &Ctx, f: impl FnOnce() -> Result<Response, Error>) -> Response {
    let error = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(response)) => return response,
        Ok(Err(error)) => error,
        Err(_) => Error::internal("handler panicked"),
    };
    if let Error::Internal(detail) = &error {
        let path = input::raw_path(ctx.req).escape_default();
        ctx.app.log.line(format!("error: {} {path}: {detail}", ctx.req.method()));
    }
    if ctx.envelope.get() {
        respond::envelope_error(&error, ctx.lang.get())
    } else {
        respond::error(&error, ctx.lang.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Log;
    use crate::Config;
    use std::io::Read;

    #[test]
    fn a_panic_becomes_the_json_500_and_the_detail_stays_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.path = dir.path().join("t.db");
        let mut app = App::open(config).unwrap();
        app.log = Log::capturing();
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
