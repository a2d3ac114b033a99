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
//!
//! Against clients that hold connections without finishing requests
//! (slowloris): a head must arrive within 10 s of its first byte, one
//! address holds at most `server.max_connections_per_ip` connections, and
//! at `server.max_connections` the connection stalled longest in a head is
//! closed to make room. Request bodies held in memory at once are bounded
//! by `server.max_body_memory_bytes` (503 beyond).

mod budget;
mod conn;
#[cfg(test)]
mod fuzz;
mod registry;
mod response;

use budget::Budget;
use conn::{Conn, Stop};
use registry::Registry;
use response::write_response;
use rouille::{Request, Response};
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest request head (request line and headers), and most headers.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Longest a request (head and body) may take to arrive once it has begun:
/// a client trickling a byte at a time does not hold a thread for long.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Longest a request head may take to arrive once it has begun; a client
/// sends a head in one packet, a slowloris one byte at a time.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
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
    /// (`status` 400, 408, 413, 431 or 501; 500 if the handler panicked;
    /// 503, to come back shortly, when bodies would take too much memory).
    fn reject(&self, peer: SocketAddr, status: u16, detail: &str) -> Response;
    /// A larger body than `max_body` this request may send (an import by
    /// a known user), given its method, target and a header lookup; such
    /// bodies count against their own memory budget (`large_body_memory`).
    fn large_body(&self, _method: &str, _target: &str, _header: &dyn Fn(&str) -> Option<String>) -> Option<u64> {
        None
    }
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
    /// Bytes of request bodies held in memory at once, across connections;
    /// a body that would pass it is refused (503).
    pub max_body_memory: u64,
    /// The same for the bodies [`Service::large_body`] lets through.
    pub large_body_memory: u64,
    /// Connections one client address (the TCP peer's) may hold at once.
    pub max_connections_per_ip: usize,
    /// Networks exempt from `max_connections_per_ip`: the reverse proxies
    /// every connection comes through.
    pub uncapped: Vec<(IpAddr, u8)>,
    /// Where the count of open connections is kept (the application reads
    /// it for its metrics).
    pub open: Arc<AtomicUsize>,
}

impl Limits {
    /// The cap on connections from `ip`, if it has one.
    fn cap_for(&self, ip: IpAddr) -> Option<usize> {
        let exempt = crate::net::in_any(ip, &self.uncapped);
        (!exempt).then_some(self.max_connections_per_ip)
    }
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
    open: Arc<AtomicUsize>,
    /// Each one, where it is, and how many each address holds: a stop
    /// closes the idle ones at once, a full server makes room.
    registry: Registry,
    budget: Budget,
    large_budget: Budget,
    /// When the server started: the clock of stalled heads' ages.
    epoch: Instant,
    stopping: AtomicBool,
}

impl<S: Service> Control for Shared<S> {
    fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // On Linux this wakes every thread blocked in accept (with EINVAL)
        // and refuses new connections from here on.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        // A connection between requests sees its end and closes; one in
        // the middle of a request still writes its answer.
        self.registry.close_idle(true);
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
        let (max_body_memory, large_body_memory) = (limits.max_body_memory, limits.large_body_memory);
        let open = Arc::clone(&limits.open);
        let shared = Arc::new(Shared {
            service,
            limits,
            listener,
            waiting: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            open,
            registry: Registry::default(),
            budget: Budget::new(max_body_memory),
            large_budget: Budget::new(large_body_memory),
            epoch: Instant::now(),
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
        // Over its address's share, a connection is closed unanswered.
        let _: Result<(), TooMany> = take(&shared, stream, peer, still_waiting, &mut buf, &mut out);
    }
    shared.threads.fetch_sub(1, Ordering::SeqCst);
}

struct TooMany;

/// Takes an accepted connection: makes room for it or refuses it, then
/// serves it to its end.
fn take<S: Service>(
    shared: &Arc<Shared<S>>,
    stream: TcpStream,
    peer: SocketAddr,
    still_waiting: usize,
    buf: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<(), TooMany> {
    let cap = shared.limits.cap_for(peer.ip());
    let (id, tracked) = shared.registry.add(stream, peer.ip(), shared.epoch, cap).map_err(|_| TooMany)?;
    if still_waiting == 0 && !shared.stopping.load(Ordering::SeqCst) {
        // At the limit, idle keep-alive connections make room (their
        // clients reconnect), or else the one stalled longest in a head;
        // a failed spawn leaves this thread to accept again after its
        // connection.
        if let Ok(false) = spawn(shared) {
            if shared.registry.close_idle(false) == 0 {
                shared.registry.evict_stalled_head();
            }
        }
    }
    shared.open.fetch_add(1, Ordering::SeqCst);
    let stream = &tracked.stream;
    // Accepted as a stop began (after its sweep of idle connections):
    // its first request is still served, but it gets a second, not the
    // keep-alive time, to send one.
    if shared.stopping.load(Ordering::SeqCst) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    }
    let mut conn = Conn::new(stream, buf, &tracked.phase, shared.limits.keep_alive);
    let _ = catch_unwind(AssertUnwindSafe(|| serve(shared, &mut conn, peer, out)));
    conn.next_request();
    // The entry leaves before the socket closes (with the last handle).
    shared.registry.remove(id);
    drop(tracked);
    shared.open.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

/// Serves one connection until it closes, idles out or must be closed.
fn serve<S: Service>(shared: &Shared<S>, conn: &mut Conn<&TcpStream>, peer: SocketAddr, out: &mut Vec<u8>) {
    let limits = &shared.limits;
    let mut first = true;
    loop {
        // A new connection's first request is on its way (its phase began
        // as NEW at accept): only between requests is it idle, and so the
        // first to be closed for room.
        if !first {
            conn.next_request();
        }
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
        let header =
            |name: &str| head.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let (max_body, budget) = match shared.service.large_body(&head.method, &head.target, &header) {
            Some(limit) => (limit, &shared.large_budget),
            None => (limits.max_body, &shared.budget),
        };
        let (body, lease, complete) = match conn.read_body(&head, max_body, budget) {
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
        // The body leaves memory, and gives its share of the budget back.
        drop(req);
        drop(lease);
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
    conn: &mut Conn<&TcpStream>,
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
fn linger(conn: &mut Conn<&TcpStream>) {
    let _ = conn.stream.shutdown(Shutdown::Write);
    let _ = conn.stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until && matches!(conn.stream.read(&mut sink), Ok(n) if n > 0) {}
}
