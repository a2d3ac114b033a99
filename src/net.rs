//! Addresses and URLs: CIDR ranges, membership, and the percent-encoding
//! of URL parts and form bodies (through the `percent-encoding` and
//! `form_urlencoded` crates, so every escape is read the standard way).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use std::net::IpAddr;

/// Everything but RFC 3986's unreserved characters is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `10.0.0.0/8`, `::1`, `192.168.1.7` → (network, prefix length).
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip.trim().parse::<IpAddr>().ok()?, len.trim().parse::<u8>().ok()?),
        None => {
            let ip = text.trim().parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Whether `ip` lies in `net/len` (never across address families).
pub fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Whether `ip` lies in any of `ranges`.
pub fn in_any(ip: IpAddr, ranges: &[(IpAddr, u8)]) -> bool {
    ranges.iter().any(|&(net, len)| in_network(ip, net, len))
}

/// The part of a client address a limit counts by: an IPv4 address
/// whole, an IPv6 address by its /64 (one subscriber's usual share, which
/// holds more addresses than anyone could exhaust).
pub fn limit_key(ip: IpAddr) -> String {
    prefix_key(ip, 64)
}

/// For an IPv6 client, the /48 its /64 belongs to (what a site or a
/// server host is routed): a limit that counts /64s alone lets such a
/// holder through 65 536 times. None for IPv4 (and IPv4-mapped) clients.
pub fn site_key(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => Some(prefix_key(ip, 48)),
        _ => None,
    }
}

fn prefix_key(ip: IpAddr, bits: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let mask = u128::MAX << (128 - u32::from(bits));
                let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
                format!("{net}/{bits}")
            }
        },
    }
}

/// Decodes an `application/x-www-form-urlencoded` string (a query string
/// or a form body) into pairs, in order. Invalid escapes stay as sent.
pub fn form_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Decodes `%XX` escapes (and `+` as a space, as forms write it).
pub fn percent_decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space).decode_utf8_lossy().into_owned()
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a
/// value is safe anywhere in a URL (and so in a `Location` header).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    percent_encode_into(&mut out, s);
    out
}

/// [`percent_encode`], appending to `out`.
pub fn percent_encode_into(out: &mut String, s: &str) {
    for part in percent_encoding::utf8_percent_encode(s, COMPONENT) {
        out.push_str(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_ipv4_whole_and_ipv6_by_its_64() {
        let key = |s: &str| limit_key(s.parse().unwrap());
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(key("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        let site = |s: &str| site_key(s.parse().unwrap());
        assert_eq!(site("2001:db8:1:2::1"), site("2001:db8:1:ffff::9"));
        assert_eq!(site("2001:db8:1:2::1").as_deref(), Some("2001:db8:1::/48"));
        assert_ne!(site("2001:db8:1:2::1"), site("2001:db8:2::1"));
        assert_eq!(site("203.0.113.9"), None);
        assert_eq!(site("::ffff:203.0.113.9"), None);
    }

    #[test]
    fn cidr_ranges() {
        assert_eq!(parse_cidr("10.0.0.0/8"), Some(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(parse_cidr("::1"), Some(("::1".parse().unwrap(), 128)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0/8"), None);
        let net = parse_cidr("10.0.0.0/8").unwrap();
        assert!(in_any("10.9.8.7".parse().unwrap(), &[net]));
        assert!(!in_any("11.0.0.1".parse().unwrap(), &[net]));
        assert!(!in_any("::ffff:10.0.0.1".parse().unwrap(), &[net]));
    }

    #[test]
    fn form_encoding_round_trips() {
        assert_eq!(
            form_pairs("a=1&b=x+y&c=%26%3D%0A&d&e=%zz&=v"),
            [("a", "1"), ("b", "x y"), ("c", "&=\n"), ("d", ""), ("e", "%zz"), ("", "v")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%2"), "a%2");
        // A sign is not a hex digit: `%+A` is not an escape (it once decoded to a newline).
        assert_eq!(percent_decode("%+A"), "% A");
        assert_eq!(form_pairs("x=%+A"), [("x".to_string(), "% A".to_string())]);
        let hostile = "a b&c=d\r\nLocation: x\"'<>é";
        let encoded = percent_encode(hostile);
        assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)), "{encoded}");
        assert_eq!(percent_decode(&encoded), hostile);
    }
}
