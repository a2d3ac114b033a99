//! The connections under rouille's `Request` and `Response`: HTTP/1.1 with
//! keep-alive, one thread per open connection, and no hand-off between
//! threads from the socket to the handler and back.
//!
//! rouille's own server (tiny_http) passes every request through three
//! threads (the connection's, rouille's loop, a pool thread), and starves
//! a burst of keep-alive connections: its pool queues a new connection
//! behind threads that sit on idle ones, which never time out. Here the
//! thread that accepts a connection serves it to the end; when it finds
//! no other thread left waiting in `accept`, it starts one (up to
//! `server.max_connections`), so a new connection never waits behind an
//! idle one. An idle connection is closed after `server.keep_alive_secs`,
//! and right after its answer when the server is near its limit.

use crate::clock;
use rouille::{Request, Response};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest request head (request line and headers), and most headers.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Longest a request (head and body) may take to arrive once it has begun:
/// a client trickling a byte at a time does not hold a thread for long.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Empty lines tolerated before a request line.
const MAX_BLANK_LINES: usize = 8;
/// Longest a client may take to accept a part of an answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Answers up to this size leave in one write.
const ONE_WRITE: usize = 64 * 1024;
/// Pending connections the kernel holds while every thread is busy.
const BACKLOG: i32 = 1024;

/// What the connection layer asks of the application.
pub trait Service: Send + Sync + 'static {
    /// Answers a request.
    fn handle(&self, req: &Request) -> Response;
    /// The answer to bytes that are not an HTTP request we can take
    /// (`status` 400, 408, 413, 431 or 501; 500 if the handler panicked).
    fn reject(&self, peer: SocketAddr, status: u16, detail: &str) -> Response;
}

pub struct Limits {
    /// Threads kept waiting for new connections.
    pub spare_threads: usize,
    /// Connections served at once; more wait in the kernel's queue.
    pub max_connections: usize,
    /// How long an idle keep-alive connection (or a stalled read) is kept;
    /// also how long a thread beyond `spare_threads` waits in `accept`
    /// before it leaves.
    pub keep_alive: Duration,
    /// Largest body read. A bigger declared one is left unread for the
    /// handler to refuse by its `Content-Length`; a chunked one that grows
    /// bigger is refused here (413).
    pub max_body: u64,
}

/// A listening server; [`Server::shutdown`] stops it.
pub struct Server {
    shared: Arc<dyn Control>,
    addr: SocketAddr,
}

/// The part of the shared state a [`Server`] handle needs, free of `S`.
trait Control: Send + Sync {
    fn shutdown(&self);
    fn open_connections(&self) -> usize;
}

struct Shared<S> {
    service: S,
    limits: Limits,
    listener: TcpListener,
    /// Threads blocked in `accept`.
    waiting: AtomicUsize,
    /// Threads alive.
    threads: AtomicUsize,
    /// Connections being served.
    open: AtomicUsize,
    /// A handle on each and whether it is in a request, so that a stop can
    /// close the idle ones at once.
    /// (Descriptors: an entry leaves, under the lock, before its socket is
    /// closed, so the stop never touches a closed or reused descriptor.)
    connections: Mutex<HashMap<u64, (RawFd, Arc<AtomicBool>)>>,
    next_id: AtomicU64,
    stopping: AtomicBool,
}

impl<S> Shared<S> {
    /// Ends every connection that is between requests: its thread's next
    /// read sees the end of the stream.
    fn close_idle(&self) {
        for (fd, busy) in self.connections.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if !busy.load(Ordering::SeqCst) {
                // SAFETY: the descriptor is open while its entry is in the
                // map, and the map is locked (see `connections`).
                let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
                let _ = socket2::SockRef::from(&fd).shutdown(Shutdown::Read);
            }
        }
    }
}

impl<S: Service> Control for Shared<S> {
    fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // On Linux this wakes every thread blocked in accept (with EINVAL)
        // and refuses new connections from here on.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        // A connection between requests sees its end and closes; one in
        // the middle of a request still writes its answer.
        self.close_idle();
    }

    fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Server {
    /// Binds `bind` (`host:port`) and starts `limits.spare_threads` threads.
    pub fn start<S: Service>(bind: &str, limits: Limits, service: S) -> io::Result<Server> {
        let listener = listen(bind, &limits)?;
        let addr = listener.local_addr()?;
        let spare = limits.spare_threads.max(1);
        let shared = Arc::new(Shared {
            service,
            limits,
            listener,
            waiting: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        for _ in 0..spare {
            if let Err(e) = spawn(&shared) {
                shared.shutdown();
                return Err(e);
            }
        }
        Ok(Server { shared, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting: new connections are refused, idle ones are closed,
    /// and the others after the request they are in. Returns at once.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// Connections still open: after [`Server::shutdown`], those finishing
    /// a request already begun.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }
}

fn listen(bind: &str, limits: &Limits) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
    for addr in bind.to_socket_addrs()? {
        let attempt = (|| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            // Accepted sockets inherit it: no 40 ms Nagle stall on an
            // answer that leaves in two writes.
            socket.set_tcp_nodelay(true)?;
            socket.bind(&addr.into())?;
            socket.listen(BACKLOG)?;
            // Accepted sockets inherit both time-outs, which saves two
            // system calls per connection. The read time-out is also how
            // long `accept` waits before a thread beyond the spare ones
            // leaves, once a burst is over.
            socket.set_read_timeout(Some(limits.keep_alive))?;
            socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
            Ok::<_, io::Error>(TcpListener::from(socket))
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Starts one more thread; false if `server.max_connections` are running.
fn spawn<S: Service>(shared: &Arc<Shared<S>>) -> io::Result<bool> {
    if shared.threads.fetch_add(1, Ordering::SeqCst) >= shared.limits.max_connections {
        shared.threads.fetch_sub(1, Ordering::SeqCst);
        return Ok(false);
    }
    let shared_for_thread = Arc::clone(shared);
    thread::Builder::new().name("http".into()).spawn(move || accept_loop(shared_for_thread)).map(|_| true).inspect_err(
        |_| {
            shared.threads.fetch_sub(1, Ordering::SeqCst);
        },
    )
}

/// One thread: accept a connection, serve it to its end, repeat; leave
/// after a quiet spell when enough other threads are waiting.
fn accept_loop<S: Service>(shared: Arc<Shared<S>>) {
    let mut buf = vec![0; MAX_HEAD];
    let mut out = Vec::with_capacity(1024);
    loop {
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        let accepted = shared.listener.accept();
        let still_waiting = shared.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        let (stream, peer) = match accepted {
            Err(_) if shared.stopping.load(Ordering::SeqCst) => break,
            Ok(connection) => connection,
            // Nothing came for a while (the listener's receive timeout):
            // leave if enough others are waiting.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if still_waiting >= shared.limits.spare_threads.max(1) {
                    break;
                }
                continue;
            }
            Err(e) => {
                // Out of descriptors or memory: give the others a moment
                // to close something instead of spinning.
                if !matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) {
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        if still_waiting == 0 && !shared.stopping.load(Ordering::SeqCst) {
            // At the limit, idle keep-alive connections make room (their
            // clients reconnect); a failed spawn leaves this thread to
            // accept again after its connection.
            if let Ok(false) = spawn(&shared) {
                shared.close_idle();
            }
        }
        shared.open.fetch_add(1, Ordering::SeqCst);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicBool::new(false));
        shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (stream.as_raw_fd(), Arc::clone(&busy)));
        // Accepted as a stop began (after its sweep of idle connections):
        // its first request is still served, but it gets a second, not the
        // keep-alive time, to send one.
        if shared.stopping.load(Ordering::SeqCst) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        }
        let mut conn = Conn { stream, buf: &mut buf, pos: 0, len: 0, busy: &busy, started: None };
        let _ = catch_unwind(AssertUnwindSafe(|| serve(&shared, &mut conn, peer, &mut out)));
        conn.mark(false);
        shared.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        drop(conn);
        shared.open.fetch_sub(1, Ordering::SeqCst);
    }
    shared.threads.fetch_sub(1, Ordering::SeqCst);
}

/// Why a connection stops being read.
enum Stop {
    /// The client closed, went idle, or the socket failed: just close.
    Quiet,
    /// Answer with this status and detail, then close.
    Reject(u16, String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Stop::Reject(408, "the request timed out".into()),
            _ => Stop::Quiet,
        }
    }
}

/// A request head, parsed.
struct Head {
    method: String,
    target: String,
    http11: bool,
    headers: Vec<(String, String)>,
}

impl Head {
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// A connection and the bytes read from it but not used yet.
struct Conn<'b> {
    stream: TcpStream,
    /// The thread's buffer, kept from one connection to the next.
    buf: &'b mut [u8],
    pos: usize,
    len: usize,
    /// Whether it is in a request (from its first byte to the end of its
    /// answer); a stop or a full server closes only those that are not.
    busy: &'b AtomicBool,
    /// When the current request's first byte arrived.
    started: Option<Instant>,
}

impl Conn<'_> {
    fn mark(&self, busy: bool) {
        self.busy.store(busy, Ordering::SeqCst);
    }

    /// 408 once the current request has taken too long to arrive.
    fn check_deadline(&self) -> Result<(), Stop> {
        match self.started {
            Some(started) if started.elapsed() > REQUEST_DEADLINE => {
                Err(Stop::Reject(408, "the request took too long to arrive".into()))
            }
            _ => Ok(()),
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    /// Reads more bytes after those buffered; 0 at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            return Err(io::Error::other("buffer full"));
        }
        loop {
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(n) => {
                    self.len += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next request head; None when the client closed or stayed idle
    /// past the keep-alive time between requests.
    fn read_head(&mut self) -> Result<Option<Head>, Stop> {
        let mut blank = 0;
        loop {
            if !self.buffered().is_empty() {
                self.started.get_or_insert_with(Instant::now);
                // A few empty lines before a request line are allowed (RFC 9112 §2.2).
                while self.buffered().first().is_some_and(|&b| b == b'\r' || b == b'\n') {
                    self.pos += 1;
                    blank += 1;
                }
                if blank > 2 * MAX_BLANK_LINES {
                    return Err(Stop::Reject(400, "too many empty lines before the request".into()));
                }
            }
            if !self.buffered().is_empty() {
                self.mark(true);
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(self.buffered()) {
                    Ok(httparse::Status::Complete(used)) => {
                        let head = Head {
                            method: req.method.unwrap_or("GET").to_string(),
                            target: req.path.unwrap_or("/").to_string(),
                            http11: req.version == Some(1),
                            headers: req
                                .headers
                                .iter()
                                .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                                .collect(),
                        };
                        self.pos += used;
                        return Ok(Some(head));
                    }
                    Ok(httparse::Status::Partial) if self.len - self.pos >= MAX_HEAD => {
                        return Err(Stop::Reject(431, format!("the request head is over {MAX_HEAD} bytes")));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(Stop::Reject(431, format!("more than {MAX_HEADERS} headers")));
                    }
                    Err(e) => return Err(Stop::Reject(400, format!("malformed request: {e}"))),
                }
            }
            self.check_deadline()?;
            let partial = self.started.is_some();
            match self.fill() {
                Ok(0) if partial => return Err(Stop::Quiet),
                Ok(0) => return Ok(None),
                Ok(_) => {}
                // Idle between requests: close quietly.
                Err(e) if !partial && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Moves `n` bytes of the body into `out`: the buffered ones first,
    /// then as they arrive (memory grows with what was sent, not with what
    /// was announced).
    fn read_exact_into(&mut self, out: &mut Vec<u8>, n: usize) -> Result<(), Stop> {
        let from_buffer = n.min(self.len - self.pos);
        out.extend_from_slice(&self.buf[self.pos..self.pos + from_buffer]);
        self.pos += from_buffer;
        let mut rest = n - from_buffer;
        while rest > 0 {
            self.check_deadline()?;
            let start = out.len();
            out.resize(start + rest.min(64 * 1024), 0);
            match self.stream.read(&mut out[start..]) {
                Ok(0) => return Err(Stop::Quiet),
                Ok(got) => {
                    out.truncate(start + got);
                    rest -= got;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => out.truncate(start),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// One line (of a chunked body), without its CRLF.
    fn read_line(&mut self) -> Result<String, Stop> {
        loop {
            if let Some(end) = self.buffered().iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[self.pos..self.pos + end]).trim_end().to_string();
                self.pos += end + 1;
                return Ok(line);
            }
            if self.len - self.pos >= 4096 {
                return Err(Stop::Reject(400, "a chunk line is too long".into()));
            }
            self.check_deadline()?;
            if self.fill()? == 0 {
                return Err(Stop::Quiet);
            }
        }
    }

    /// The body: all of it (true), or nothing when its declared length is
    /// over `max` (false: the handler refuses it by its `Content-Length`,
    /// and the connection closes). A chunked body that grows past `max` is
    /// refused here.
    fn read_body(&mut self, head: &Head, max: u64) -> Result<(Vec<u8>, bool), Stop> {
        let lengths: Vec<&str> = head
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .collect();
        let codings: Vec<&str> = head
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Transfer-Encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .collect();
        let chunked = match codings.as_slice() {
            [] => false,
            _ if !lengths.is_empty() => {
                return Err(Stop::Reject(400, "both Content-Length and Transfer-Encoding".into()))
            }
            _ if !head.http11 => return Err(Stop::Reject(400, "Transfer-Encoding in an HTTP/1.0 request".into())),
            [only] if only.eq_ignore_ascii_case("chunked") => true,
            _ => return Err(Stop::Reject(501, format!("unsupported Transfer-Encoding: {}", codings.join(", ")))),
        };
        let length = match lengths.first() {
            None => 0,
            Some(first) => {
                if lengths.iter().any(|l| l != first) || !first.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Stop::Reject(400, "invalid Content-Length".into()));
                }
                first.parse::<u64>().map_err(|_| Stop::Reject(400, "invalid Content-Length".into()))?
            }
        };
        if length > max {
            return Ok((Vec::new(), false));
        }
        let wants_body = chunked || length > 0;
        if wants_body && head.http11 && head.has_token("Expect", "100-continue") && self.buffered().is_empty() {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut body = Vec::new();
        if !chunked {
            self.read_exact_into(&mut body, length as usize)?;
            return Ok((body, true));
        }
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Stop::Reject(400, "invalid chunk size".into()));
            }
            let size = u64::from_str_radix(size, 16).map_err(|_| Stop::Reject(400, "invalid chunk size".into()))?;
            if size == 0 {
                // Trailers, up to the empty line; ignored.
                let mut trailers = 0;
                while !self.read_line()?.is_empty() {
                    trailers += 1;
                    if trailers > MAX_HEADERS {
                        return Err(Stop::Reject(431, format!("more than {MAX_HEADERS} trailers")));
                    }
                }
                return Ok((body, true));
            }
            if size > max.saturating_sub(body.len() as u64) {
                return Err(Stop::Reject(413, format!("the body is over {max} bytes")));
            }
            self.read_exact_into(&mut body, size as usize)?;
            if !self.read_line()?.is_empty() {
                return Err(Stop::Reject(400, "a chunk is longer than its size".into()));
            }
        }
    }
}

/// Serves one connection until it closes, idles out or must be closed.
fn serve<S: Service>(shared: &Shared<S>, conn: &mut Conn, peer: SocketAddr, out: &mut Vec<u8>) {
    let limits = &shared.limits;
    let mut first = true;
    loop {
        conn.mark(false);
        conn.started = None;
        // Between requests, a stop either saw this connection idle (and shut
        // it) or is seen here; a connection accepted just before the stop
        // still gets its first request served.
        if !first && shared.stopping.load(Ordering::SeqCst) && conn.buffered().is_empty() {
            return;
        }
        first = false;
        let head = match conn.read_head() {
            Ok(Some(head)) => head,
            Ok(None) | Err(Stop::Quiet) => return,
            Err(Stop::Reject(status, detail)) => return reject(shared, conn, out, peer, status, &detail),
        };
        let (body, complete) = match conn.read_body(&head, limits.max_body) {
            Ok(body) => body,
            Err(Stop::Quiet) => return,
            Err(Stop::Reject(status, detail)) => return reject(shared, conn, out, peer, status, &detail),
        };
        let head_only = head.method == "HEAD";
        let mut keep = complete
            && if head.http11 {
                !head.has_token("Connection", "close")
            } else {
                head.has_token("Connection", "keep-alive")
            };
        let http11 = head.http11;
        let req = Request::fake_http_from(peer, head.method, head.target, head.headers, body);
        let response = catch_unwind(AssertUnwindSafe(|| shared.service.handle(&req)))
            .unwrap_or_else(|_| shared.service.reject(peer, 500, "the handler panicked"));
        drop(req);
        // Near the limit, or stopping: free this thread for someone else.
        let crowded = shared.open.load(Ordering::Relaxed) + limits.max_connections / 8 >= limits.max_connections;
        if crowded || shared.stopping.load(Ordering::Relaxed) {
            keep = false;
        }
        let written = write_response(&mut conn.stream, out, response, head_only, keep, http11);
        // One big answer must not pin its memory to this thread for good.
        if out.capacity() > 16 * 1024 {
            *out = Vec::with_capacity(1024);
        }
        match written {
            Ok(true) => {}
            // An unread body is still coming: let the answer arrive first.
            Ok(false) if !complete => return linger(conn),
            Ok(false) | Err(_) => return,
        }
    }
}

/// Answers a request that could not be read, then closes.
fn reject<S: Service>(
    shared: &Shared<S>,
    conn: &mut Conn,
    out: &mut Vec<u8>,
    peer: SocketAddr,
    status: u16,
    detail: &str,
) {
    let response = shared.service.reject(peer, status, detail);
    let _ = write_response(&mut conn.stream, out, response, false, false, true);
    linger(conn);
}

/// Closes after an answer while the client may still be sending: unread
/// bytes at close make the kernel reset the connection, which can destroy
/// the answer before the client reads it; so stop writing, and read (and
/// drop) what still comes for a moment first.
fn linger(conn: &mut Conn) {
    let _ = conn.stream.shutdown(Shutdown::Write);
    let _ = conn.stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until && matches!(conn.stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Writes the answer; returns whether the connection stays open.
fn write_response(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    response: Response,
    head_only: bool,
    mut keep: bool,
    http11: bool,
) -> io::Result<bool> {
    let status = response.status_code;
    if response.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("Connection") && v.eq_ignore_ascii_case("close")) {
        keep = false;
    }
    let (mut body, size) = response.data.into_reader_and_size();
    // A body of unknown size is sent chunked, or (HTTP/1.0) ended by closing.
    if size.is_none() && !http11 {
        keep = false;
    }
    out.clear();
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in &response.headers {
        let framing = ["Connection", "Content-Length", "Transfer-Encoding", "Date"];
        if framing.iter().any(|f| name.eq_ignore_ascii_case(f)) || has_line_break(name) || has_line_break(value) {
            continue;
        }
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            out.extend_from_slice(part);
        }
    }
    DATE.with(|date| out.extend_from_slice(date.borrow_mut().now().as_bytes()));
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if !http11 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    let bodiless = status < 200 || status == 204 || status == 304;
    match size {
        Some(size) => {
            if !bodiless {
                let _ = write!(out, "Content-Length: {size}\r\n");
            }
            out.extend_from_slice(b"\r\n");
            if head_only || bodiless {
                stream.write_all(out)?;
            } else if size <= ONE_WRITE {
                body.read_to_end(out)?;
                stream.write_all(out)?;
            } else {
                stream.write_all(out)?;
                io::copy(&mut body, stream)?;
            }
        }
        None if head_only || bodiless => {
            out.extend_from_slice(b"\r\n");
            stream.write_all(out)?;
        }
        None if http11 => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            stream.write_all(out)?;
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                let n = body.read(&mut chunk)?;
                out.clear();
                let _ = write!(out, "{n:x}\r\n");
                out.extend_from_slice(&chunk[..n]);
                out.extend_from_slice(b"\r\n");
                stream.write_all(out)?;
                if n == 0 {
                    break;
                }
            }
        }
        None => {
            out.extend_from_slice(b"\r\n");
            stream.write_all(out)?;
            io::copy(&mut body, stream)?;
        }
    }
    Ok(keep)
}

fn has_line_break(text: &str) -> bool {
    text.bytes().any(|b| b == b'\r' || b == b'\n')
}

thread_local! {
    static DATE: RefCell<DateHeader> = const { RefCell::new(DateHeader { second: -1, line: String::new() }) };
}

/// The `Date` header line, formatted once a second per thread.
struct DateHeader {
    second: i64,
    line: String,
}

impl DateHeader {
    fn now(&mut self) -> &str {
        let second = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if second != self.second {
            self.second = second;
            self.line = format!("Date: {}\r\n", clock::http_date(second));
        }
        &self.line
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        423 => "Locked",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
