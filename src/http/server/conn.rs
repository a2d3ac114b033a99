//! Reading requests off a connection: the head, the body (by length or
//! chunked), and the deadlines a head and a whole request must arrive
//! within. Generic over the byte source, so that tests can feed it bytes
//! from memory.

use super::budget::{Budget, Lease};
use super::registry::{Phase, BUSY, HEAD, IDLE};
use super::{HEAD_DEADLINE, MAX_BLANK_LINES, MAX_HEAD, MAX_HEADERS, REQUEST_DEADLINE};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What a connection reads requests from (and writes `100 Continue` to).
pub(super) trait Source: Read + Write {
    /// Bounds how long the next reads wait (a socket's receive time-out).
    fn set_read_timeout(&mut self, _limit: Duration) -> io::Result<()> {
        Ok(())
    }
}

impl Source for &TcpStream {
    fn set_read_timeout(&mut self, limit: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(limit))
    }
}

/// Why a connection stops being read.
pub(super) enum Stop {
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
pub(super) struct Head {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) http11: bool,
    pub(super) headers: Vec<(String, String)>,
}

impl Head {
    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// A connection and the bytes read from it but not used yet.
pub(super) struct Conn<'b, S> {
    pub(super) stream: S,
    /// The thread's buffer, kept from one connection to the next.
    buf: &'b mut [u8],
    pos: usize,
    len: usize,
    /// Where it is (between requests, in a head, in a request): a stop or
    /// a full server closes those between requests, and a full server
    /// evicts those stalled in a head.
    phase: &'b Phase,
    /// When the current request's first byte arrived.
    started: Option<Instant>,
    /// The usual wait for a read (the keep-alive time), and whether a
    /// head's deadline has shortened it.
    keep_alive: Duration,
    shortened: bool,
}

impl<'b, S: Source> Conn<'b, S> {
    pub(super) fn new(stream: S, buf: &'b mut [u8], phase: &'b Phase, keep_alive: Duration) -> Self {
        Conn { stream, buf, pos: 0, len: 0, phase, started: None, keep_alive, shortened: false }
    }

    /// Between requests: the next byte begins a new one.
    pub(super) fn next_request(&mut self) {
        self.phase.set(IDLE);
        self.started = None;
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

    /// While a head is arriving: 408 once it has taken too long, and
    /// otherwise the next read waits no longer than the time left.
    fn head_deadline(&mut self) -> Result<(), Stop> {
        let Some(started) = self.started else { return Ok(()) };
        if self.phase.get() != HEAD {
            self.phase.set(HEAD);
        }
        let left = HEAD_DEADLINE.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Stop::Reject(408, "the request head took too long to arrive".into()));
        }
        if left < self.keep_alive {
            self.stream.set_read_timeout(left.max(Duration::from_millis(1)))?;
            self.shortened = true;
        }
        Ok(())
    }

    /// The head is in: back to the usual wait for the body's reads.
    fn head_done(&mut self) -> Result<(), Stop> {
        self.phase.set(BUSY);
        if self.shortened {
            self.shortened = false;
            self.stream.set_read_timeout(self.keep_alive)?;
        }
        Ok(())
    }

    pub(super) fn buffered(&self) -> &[u8] {
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
    pub(super) fn read_head(&mut self) -> Result<Option<Head>, Stop> {
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
                        self.head_done()?;
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
            self.head_deadline()?;
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
    /// then as they arrive (memory grows with what was sent, up to what
    /// was announced and no further).
    fn read_exact_into(&mut self, out: &mut Vec<u8>, n: usize) -> Result<(), Stop> {
        let from_buffer = n.min(self.len - self.pos);
        out.extend_from_slice(&self.buf[self.pos..self.pos + from_buffer]);
        self.pos += from_buffer;
        let mut rest = n - from_buffer;
        while rest > 0 {
            self.check_deadline()?;
            let start = out.len();
            let want = rest.min(64 * 1024);
            if out.capacity() - start < want {
                // Doubling, but never past the body's end.
                out.reserve_exact(rest.min(out.capacity().max(64 * 1024)));
            }
            out.resize(start + want, 0);
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

    /// The body and its share of `budget`: all of it (true), or nothing
    /// when its declared length is over `max` (false: the handler refuses
    /// it by its `Content-Length`, and the connection closes). A chunked
    /// body that grows past `max` is refused here (413), and so is one that
    /// would take the bodies held at once past the budget (503).
    pub(super) fn read_body<'a>(
        &mut self,
        head: &Head,
        max: u64,
        budget: &'a Budget,
    ) -> Result<(Vec<u8>, Lease<'a>, bool), Stop> {
        let (chunked, length) = framing(head)?;
        let mut lease = budget.lease();
        if length > max {
            return Ok((Vec::new(), lease, false));
        }
        if !lease.grow(length) {
            return Err(short_of_memory());
        }
        let wants_body = chunked || length > 0;
        if wants_body && head.http11 && head.has_token("Expect", "100-continue") && self.buffered().is_empty() {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut body = Vec::new();
        if chunked {
            self.read_chunks(&mut body, max, &mut lease)?;
        } else {
            self.read_exact_into(&mut body, length as usize)?;
        }
        Ok((body, lease, true))
    }

    /// A chunked body, up to its last chunk and trailers (ignored).
    fn read_chunks(&mut self, body: &mut Vec<u8>, max: u64, lease: &mut Lease) -> Result<(), Stop> {
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Stop::Reject(400, "invalid chunk size".into()));
            }
            let size = u64::from_str_radix(size, 16).map_err(|_| Stop::Reject(400, "invalid chunk size".into()))?;
            if size == 0 {
                let mut trailers = 0;
                while !self.read_line()?.is_empty() {
                    trailers += 1;
                    if trailers > MAX_HEADERS {
                        return Err(Stop::Reject(431, format!("more than {MAX_HEADERS} trailers")));
                    }
                }
                return Ok(());
            }
            if size > max.saturating_sub(body.len() as u64) {
                return Err(Stop::Reject(413, format!("the body is over {max} bytes")));
            }
            if !lease.grow(size) {
                return Err(short_of_memory());
            }
            self.read_exact_into(body, size as usize)?;
            if !self.read_line()?.is_empty() {
                return Err(Stop::Reject(400, "a chunk is longer than its size".into()));
            }
        }
    }
}

fn short_of_memory() -> Stop {
    Stop::Reject(503, "too many request bodies are arriving at once".into())
}

/// How the body is framed: chunked or not, and its declared length (0 if
/// none); an ambiguous or unsupported framing is refused.
fn framing(head: &Head) -> Result<(bool, u64), Stop> {
    let values = |name: &str| -> Vec<&str> {
        head.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .collect()
    };
    let lengths = values("Content-Length");
    let codings = values("Transfer-Encoding");
    let chunked = match codings.as_slice() {
        [] => false,
        _ if !lengths.is_empty() => return Err(Stop::Reject(400, "both Content-Length and Transfer-Encoding".into())),
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
    Ok((chunked, length))
}
