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
    match parse_json(body)? {
        Value::Object(map) => Ok(Input(map)),
        _ => Err(Error::BadRequest(Msg::new("http.not_object"))),
    }
}

/// Most values (objects, arrays, strings, numbers...) one JSON body may
/// hold. A request names a handful of fields; a body of a million tiny
/// values would cost some thirty times its size in memory once parsed, so
/// it is refused as it is read, before it grows.
pub const MAX_JSON_VALUES: usize = 10_000;

/// Parses a JSON body, at most [`MAX_JSON_VALUES`] values deep and wide;
/// not JSON, or too many values, is a 400 saying why.
pub fn parse_json(body: &[u8]) -> Result<Value, Error> {
    parse_json_within(body, MAX_JSON_VALUES)
}

/// [`parse_json`] with a budget of `max_values` (an import's rows).
pub fn parse_json_within(body: &[u8], max_values: usize) -> Result<Value, Error> {
    use serde::de::DeserializeSeed;
    let budget = std::cell::Cell::new(max_values);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = bounded::Bounded(&budget).deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| Error::BadRequest(Msg::new("http.bad_json").arg("detail", e)))
}

mod bounded {
    //! A `serde_json::Value` built under a budget of values.

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};
    use std::cell::Cell;
    use std::fmt;

    pub struct Bounded<'b>(pub &'b Cell<usize>);

    impl Bounded<'_> {
        fn spend<E: de::Error>(&self) -> Result<(), E> {
            match self.0.get() {
                0 => Err(E::custom(format_args!("more than {} values", super::MAX_JSON_VALUES))),
                left => {
                    self.0.set(left - 1);
                    Ok(())
                }
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Bounded<'_> {
        type Value = Value;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Bounded<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
            self.spend().map(|()| Value::Bool(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
            self.spend().map(|()| Value::from(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
            self.spend().map(|()| Value::from(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            self.spend().map(|()| Number::from_f64(v).map_or(Value::Null, Value::Number))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            self.spend().map(|()| Value::String(v.to_string()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
            self.spend().map(|()| Value::String(v))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            self.spend().map(|()| Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            self.spend()?;
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Bounded(self.0))? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            self.spend()?;
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                self.spend()?;
                let value = map.next_value_seed(Bounded(self.0))?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        }
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

/// One page of a list, as `?limit&offset&sortBy&sort` asked for it.
#[derive(Debug, Clone, Copy)]
pub struct Page<T> {
    pub limit: i64,
    pub offset: i64,
    pub sort_by: T,
    pub ascending: bool,
}

/// Reads a page: `limit` 1..=`max_limit` (default `default_limit`),
/// `offset` >= 0 (default 0), `sortBy` one of `sorts` (the first by
/// default) and `sort` `asc` or `desc` (default). Each bad value is a 422
/// naming its parameter, all at once.
pub fn page<T: Copy>(
    param: impl Fn(&str) -> Option<String>,
    default_limit: i64,
    max_limit: i64,
    sorts: &[(&str, T)],
) -> Result<Page<T>, Error> {
    let mut errors = FieldErrors::default();
    let limit = match param("limit").map(|v| v.trim().parse::<i64>()) {
        None => default_limit,
        Some(Ok(n)) if (1..=max_limit).contains(&n) => n,
        Some(_) => {
            let msg = Msg::new("validation.between").arg("attribute", "limit").arg("min", 1).arg("max", max_limit);
            errors.add("limit", msg);
            default_limit
        }
    };
    let offset = match param("offset").map(|v| v.trim().parse::<i64>()) {
        None => 0,
        Some(Ok(n)) if n >= 0 => n,
        Some(_) => {
            errors.add("offset", Msg::new("validation.integer").arg("attribute", "offset"));
            0
        }
    };
    let sort_by = match param("sortBy") {
        None => sorts[0].1,
        Some(name) => match sorts.iter().find(|(n, _)| *n == name) {
            Some((_, sort)) => *sort,
            None => {
                let values: Vec<&str> = sorts.iter().map(|(n, _)| *n).collect();
                let msg = Msg::new("validation.in").arg("attribute", "sort by").arg("values", values.join(", "));
                errors.add("sortBy", msg);
                sorts[0].1
            }
        },
    };
    let ascending = match param("sort").as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            errors.add("sort", Msg::new("validation.in").arg("attribute", "sort").arg("values", "asc, desc"));
            false
        }
    };
    errors.into_result()?;
    Ok(Page { limit, offset, sort_by, ascending })
}

/// The client's address: the socket peer, unless the peer is a trusted
/// proxy, in which case the nearest untrusted hop of `X-Forwarded-For`.
pub fn client_ip(req: &Request, trusted: &[(IpAddr, u8)]) -> IpAddr {
    // A server bound to [::] sees IPv4 peers as ::ffff:a.b.c.d.
    let peer = req.remote_addr().ip().to_canonical();
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    // Every X-Forwarded-For line in order: a proxy that adds a line of its
    // own (rather than appending to the client's) must not leave the
    // client's forged one in charge.
    let lines: Vec<&str> =
        req.headers().filter(|(k, _)| k.eq_ignore_ascii_case("X-Forwarded-For")).map(|(_, v)| v).collect();
    if lines.is_empty() {
        return peer;
    }
    let header = lines.join(",");
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
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
        // A proxy seen as an IPv4-mapped IPv6 peer (a server on [::]) is still trusted.
        assert_eq!(ip("[::ffff:10.1.2.3]:1", Some("203.0.113.9")), "203.0.113.9");
        assert_eq!(ip("[::ffff:198.51.100.1]:1", Some("203.0.113.9")), "198.51.100.1");
        // Two lines: the proxy's own, added after the client's forged one, counts.
        let two = vec![
            ("X-Forwarded-For".to_string(), "6.6.6.6".to_string()),
            ("X-Forwarded-For".to_string(), "203.0.113.9".to_string()),
        ];
        let req = Request::fake_http_from("10.1.2.3:1".parse().unwrap(), "GET", "/", two, Vec::new());
        assert_eq!(client_ip(&req, &trusted).to_string(), "203.0.113.9");
    }

    #[test]
    fn json_bodies_hold_a_bounded_number_of_values() {
        let ok = parse_json(br#"{"a": [1, 2.5, "x", null, true, {"b": -3}]}"#).unwrap();
        assert_eq!(ok, serde_json::json!({"a": [1, 2.5, "x", null, true, {"b": -3}]}));
        let many = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
        let e = parse_json(many.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("more than 10000 values"), "{e}");
        let keys: String = (0..MAX_JSON_VALUES).map(|i| format!("\"k{i}\":1,")).collect();
        assert!(parse_json(format!("{{{keys}\"z\":1}}").as_bytes()).is_err());
        assert!(parse_json(b"{} x").is_err(), "trailing bytes");
        assert!(parse_json(b"[1,").is_err());
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
