//! Writing answers: the status line, headers, `Date`, and the body by
//! length, chunked, or (HTTP/1.0) ended by closing.

use super::ONE_WRITE;
use crate::clock;
use rouille::Response;
use std::borrow::Cow;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes the answer; returns whether the connection stays open.
pub(super) fn write_response(
    stream: &mut impl Write,
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
    write_head(out, status, &response.headers, keep, http11);
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
            write_chunks(stream, out, &mut body)?;
        }
        None => {
            out.extend_from_slice(b"\r\n");
            stream.write_all(out)?;
            io::copy(&mut body, stream)?;
        }
    }
    Ok(keep)
}

/// The status line and headers, up to the framing ones, into `out`.
fn write_head(out: &mut Vec<u8>, status: u16, headers: &[(Cow<str>, Cow<str>)], keep: bool, http11: bool) {
    out.clear();
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
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
}

/// A body of unknown size, chunked, up to its last (empty) chunk.
fn write_chunks(stream: &mut impl Write, out: &mut Vec<u8>, body: &mut impl Read) -> io::Result<()> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = body.read(&mut chunk)?;
        out.clear();
        let _ = write!(out, "{n:x}\r\n");
        out.extend_from_slice(&chunk[..n]);
        out.extend_from_slice(b"\r\n");
        stream.write_all(out)?;
        if n == 0 {
            return Ok(());
        }
    }
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
