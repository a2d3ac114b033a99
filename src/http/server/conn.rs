//! Reading requests off a connection: the head, the body (by length or
//! chunked), and the deadline a request must arrive within.

use super::{MAX_BLANK_LINES, MAX_HEAD, MAX_HEADERS, REQUEST_DEADLINE};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

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
pub(super) struct Conn<'b> {
    pub(super) stream: TcpStream,
    /// The thread's buffer, kept from one connection to the next.
    pub(super) buf: &'b mut [u8],
    pub(super) pos: usize,
    pub(super) len: usize,
    /// Whether it is in a request (from its first byte to the end of its
    /// answer); a stop or a full server closes only those that are not.
    pub(super) busy: &'b AtomicBool,
    /// When the current request's first byte arrived.
    pub(super) started: Option<Instant>,
}

impl Conn<'_> {
    pub(super) fn mark(&self, busy: bool) {
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
    pub(super) fn read_body(&mut self, head: &Head, max: u64) -> Result<(Vec<u8>, bool), Stop> {
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
