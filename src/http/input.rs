//! Reading requests: the JSON body (bounded, 413 before reading past the
//! limit), typed field extraction that collects Laravel-style errors, and
//! the client address behind trusted proxies.

use crate::error::{Error, FieldErrors};
use crate::i18n::Msg;
use rouille::Request;
use serde_json::{Map, Value};
use std::io::Read;
use std::net::IpAddr;

/// The request path without its query string, undecoded.
pub fn raw_path(req: &Request) -> &str {
    let url = req.raw_url();
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// Parses a body as a JSON object. An empty body is an empty object, so
/// a missing body gets the field errors of the route, not a parse error.
pub fn json_object(body: &[u8]) -> Result<Input, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Input(Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(Input(map)),
        Ok(_) => Err(Error::BadRequest(Msg::new("http.not_object"))),
        Err(e) => Err(Error::BadRequest(Msg::new("http.bad_json").arg("detail", e))),
    }
}

/// Reads at most `limit` bytes; a declared or actual larger body is a 413,
/// found out without reading it whole.
pub fn read_body(req: &Request, limit: u64) -> Result<Vec<u8>, Error> {
    let declared = req.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut body = Vec::new();
    if let Some(data) = req.data() {
        data.take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::BadRequest(Msg::new("http.bad_json").arg("detail", e)))?;
    }
    if body.len() as u64 > limit {
        return Err(Error::PayloadTooLarge { limit });
    }
    Ok(body)
}

/// A JSON object body, read field by field.
pub struct Input(pub Map<String, Value>);

impl Input {
    /// A required string, trimmed. Missing, null or blank → `required`;
    /// another type → `string`. Either way the error is recorded and the
    /// result is None.
    pub fn string(&self, field: &str, errors: &mut FieldErrors) -> Option<String> {
        self.raw_string(field, errors).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).or_else(|| {
            if !errors.has(field) {
                errors.add(field, required(field));
            }
            None
        })
    }

    /// A required string kept exactly as sent (passwords).
    pub fn secret(&self, field: &str, errors: &mut FieldErrors) -> Option<String> {
        match self.raw_string(field, errors) {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            Some(_) => {
                errors.add(field, required(field));
                None
            }
            None => {
                if !errors.has(field) {
                    errors.add(field, required(field));
                }
                None
            }
        }
    }

    /// An optional string: absent or null is None, another type an error.
    pub fn optional_string(&self, field: &str, errors: &mut FieldErrors) -> Option<String> {
        self.raw_string(field, errors).map(str::to_string)
    }

    fn raw_string(&self, field: &str, errors: &mut FieldErrors) -> Option<&str> {
        match self.0.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                errors.add(field, Msg::new("validation.string").arg("attribute", attribute(field)));
                None
            }
        }
    }
}

fn required(field: &str) -> Msg {
    Msg::new("validation.required").arg("attribute", attribute(field))
}

/// Laravel's attribute names: `device_name` reads "device name".
fn attribute(field: &str) -> String {
    field.replace('_', " ")
}

/// The client's address: the socket peer, unless the peer is a trusted
/// proxy, in which case the nearest untrusted hop of `X-Forwarded-For`.
pub fn client_ip(req: &Request, trusted: &[(IpAddr, u8)]) -> IpAddr {
    let peer = req.remote_addr().ip();
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let Some(header) = req.header("X-Forwarded-For") else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip, trusted) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

fn is_trusted(ip: IpAddr, trusted: &[(IpAddr, u8)]) -> bool {
    crate::net::in_any(ip, trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_from(peer: &str, xff: Option<&str>) -> Request {
        let headers = xff.map(|v| vec![("X-Forwarded-For".to_string(), v.to_string())]).unwrap_or_default();
        Request::fake_http_from(peer.parse().unwrap(), "GET", "/", headers, Vec::new())
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec![("10.0.0.0".parse().unwrap(), 8)];
        let ip = |peer, xff| client_ip(&req_from(peer, xff), &trusted).to_string();
        assert_eq!(ip("10.1.2.3:1", Some("203.0.113.9")), "203.0.113.9");
        assert_eq!(ip("10.1.2.3:1", Some("6.6.6.6, 203.0.113.9, 10.0.0.2")), "203.0.113.9");
        assert_eq!(ip("198.51.100.1:1", Some("203.0.113.9")), "198.51.100.1");
        assert_eq!(ip("10.1.2.3:1", None), "10.1.2.3");
        assert_eq!(ip("10.1.2.3:1", Some("garbage")), "10.1.2.3");
        assert_eq!(client_ip(&req_from("10.1.2.3:1", Some("1.2.3.4")), &[]).to_string(), "10.1.2.3");
    }

    #[test]
    fn fields_collect_laravel_errors() {
        let input = Input(
            serde_json::from_str(r#"{"name": "  ", "email": 5, "device_name": null, "password": " x "}"#).unwrap(),
        );
        let mut errors = FieldErrors::default();
        assert_eq!(input.string("name", &mut errors), None);
        assert_eq!(input.string("email", &mut errors), None);
        assert_eq!(input.string("device_name", &mut errors), None);
        assert_eq!(input.secret("password", &mut errors).as_deref(), Some(" x "));
        let rendered: Vec<String> = errors.0.values().flatten().map(|m| m.render(crate::i18n::Lang::En)).collect();
        assert_eq!(
            rendered,
            ["The device name field is required.", "The email must be a string.", "The name field is required."]
        );
    }
}
