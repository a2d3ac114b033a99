//! The outgoing HTTP clients: one for the providers the operator
//! configured (mail, SMS, Telegram's Bot API), one for source postbacks
//! and webhooks, whose URLs users set, and one for checking offers' pages.
//! The last two resolve a host once and refuses, on the very
//! addresses it then connects to, anything on this machine or in a
//! private, shared, reserved or documentation range, so a DNS answer that
//! changes between a check and the connection (rebinding) gets nowhere.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

const USER_AGENT: &str = concat!("apextrack/", env!("CARGO_PKG_VERSION"));

/// The client for mail and SMS providers: a timeout, non-2xx as a value
/// rather than an error, and no pooled connections (deliveries are
/// occasional, and a pooled connection the far end dropped would hang).
pub fn http_agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| ureq::Agent::new_with_config(config(Duration::from_secs(15), 0)))
}

/// The client for users' source postbacks: short time-outs (a traffic
/// source answers at once or not at all), no redirects (a redirect could
/// lead into a private network), and, unless `allow_internal`
/// (`tracking.allow_private_targets`), only public addresses.
pub fn postback_agent(allow_internal: bool) -> &'static ureq::Agent {
    static AGENTS: [OnceLock<ureq::Agent>; 2] = [OnceLock::new(), OnceLock::new()];
    guarded(
        &AGENTS,
        allow_internal,
        config(Duration::from_secs(5), 0),
        PublicOnly::new("tracking.allow_private_targets"),
    )
}

/// The client that checks offers' pages (`monitor`): 10 s in all, up to 5
/// redirects (an offer URL is often a network's redirect; every hop is
/// resolved through the same guard), and, unless `allow_internal`
/// (`monitor.allow_private`), only public addresses on ports 80 and 443.
pub fn monitor_agent(allow_internal: bool) -> &'static ureq::Agent {
    static AGENTS: [OnceLock<ureq::Agent>; 2] = [OnceLock::new(), OnceLock::new()];
    let resolver = PublicOnly { web_ports_only: true, ..PublicOnly::new("monitor.allow_private") };
    guarded(&AGENTS, allow_internal, config(Duration::from_secs(10), 5), resolver)
}

/// One of a pair of agents made once: open (`allow_internal`, as a
/// setting allows) or resolving through `resolver`'s guard.
fn guarded(
    agents: &'static [OnceLock<ureq::Agent>; 2],
    allow_internal: bool,
    config: ureq::config::Config,
    resolver: PublicOnly,
) -> &'static ureq::Agent {
    if allow_internal {
        agents[0].get_or_init(|| ureq::Agent::new_with_config(config))
    } else {
        agents[1].get_or_init(|| ureq::Agent::with_parts(config, DefaultConnector::default(), resolver))
    }
}

/// Reads at most `max_bytes` of a response body as text (invalid UTF-8
/// replaced); the rest is never read.
pub fn read_text(body: ureq::Body, max_bytes: u64) -> String {
    use std::io::Read;
    let mut bytes = Vec::new();
    let _ = body.into_reader().take(max_bytes).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn config(total: Duration, redirects: u32) -> ureq::config::Config {
    ureq::Agent::config_builder()
        .timeout_global(Some(total))
        .timeout_connect(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .max_redirects(redirects)
        // No proxy from the environment (HTTP_PROXY, ALL_PROXY...): through
        // one, the address connected to would be the proxy's, and the guard
        // would never see where a user's URL really leads.
        .proxy(None)
        .user_agent(USER_AGENT)
        .build()
}

/// Resolves like ureq does, then keeps only public addresses; none left
/// is an error naming the reason and the setting that would allow it.
#[derive(Debug)]
pub struct PublicOnly {
    inner: DefaultResolver,
    setting: &'static str,
    /// Only a scheme's own port (80, 443), on every hop of a redirect too.
    web_ports_only: bool,
}

impl PublicOnly {
    pub fn new(setting: &'static str) -> PublicOnly {
        PublicOnly { inner: DefaultResolver::default(), setting, web_ports_only: false }
    }
}

impl Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if self.web_ports_only {
            let default = if uri.scheme_str() == Some("https") { 443 } else { 80 };
            if uri.port_u16().is_some_and(|port| port != default) {
                return Err(ureq::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("refused, only ports 80 (http) and 443 (https) are checked ({})", self.setting),
                )));
            }
        }
        let all = self.inner.resolve(uri, config, timeout)?;
        let mut public = self.empty();
        for addr in all.iter().filter(|a| !is_internal(a.ip())) {
            public.push(*addr);
        }
        if public.is_empty() {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("refused, it points into a private network ({})", self.setting),
            )));
        }
        Ok(public)
    }
}

/// Whether `ip` is on this machine, in a private, shared or reserved
/// network, multicast, or a documentation or benchmarking range: the
/// addresses a user's URL must not make the server call.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0 // "this network"
                || a >= 240 // reserved
                || a == 100 && (64..128).contains(&b) // carrier-grade NAT
                || a == 198 && (18..20).contains(&b) // benchmarking
                || a == 192 && b == 0 && c == 0 // IETF protocol assignments
                || v4.is_documentation()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
                // IPv4-compatible (::a.b.c.d, deprecated), NAT64 (64:ff9b::/96)
                // and its local-use prefix (64:ff9b:1::/48) reach the IPv4
                // address in their last 32 bits; 6to4 (2002::/16) the one in
                // bits 16 to 48.
                || (s[..6] == [0, 0, 0, 0, 0, 0] && is_internal(IpAddr::V4(last_32_bits(v6))))
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_internal(IpAddr::V4(last_32_bits(v6))))
                || (s[..3] == [0x64, 0xff9b, 1] && is_internal(IpAddr::V4(last_32_bits(v6))))
                || (s[0] == 0x2002
                    && is_internal(IpAddr::V4(std::net::Ipv4Addr::new(
                        (s[1] >> 8) as u8,
                        s[1] as u8,
                        (s[2] >> 8) as u8,
                        s[2] as u8,
                    ))))
        }
    }
}

fn last_32_bits(v6: std::net::Ipv6Addr) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u128::from(v6) as u32)
}

/// The host and port of a URL (no scheme, user or path): deliveries to one
/// server go one at a time.
pub fn authority_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// The host of a URL (no scheme, user, port or path), for logs.
pub fn host_of(url: &str) -> &str {
    let host = authority_of(url);
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "198.19.255.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.7",
            "::1",
            "::",
            "ff02::1",
            "fc00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "::7f00:1",
            "::10.0.0.1",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "198.20.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn no_proxy_from_the_environment_is_used() {
        std::env::set_var("ALL_PROXY", "http://203.0.113.1:3128");
        std::env::set_var("HTTP_PROXY", "http://203.0.113.1:3128");
        assert!(config(Duration::from_secs(1), 0).proxy().is_none());
        std::env::remove_var("ALL_PROXY");
        std::env::remove_var("HTTP_PROXY");
    }

    #[test]
    fn the_monitor_client_refuses_other_ports_on_every_hop() {
        let err = monitor_agent(false).get("http://example.com:6379/").call().unwrap_err().to_string();
        assert!(err.contains("only ports 80"), "{err}");
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_of("https://user:pw@Example.com:8443/p?q#f"), "Example.com");
        assert_eq!(authority_of("https://user:pw@Example.com:8443/p?q#f"), "Example.com:8443");
        assert_eq!(host_of("http://[::1]:9/x"), "::1");
        assert_eq!(host_of("http://a.b"), "a.b");
    }

    #[test]
    fn the_postback_client_refuses_private_targets_on_the_address_it_connects_to() {
        // A name, not an address: the check is on what the name resolves to.
        let err = postback_agent(false).get("http://localhost:9/x").call().unwrap_err().to_string();
        assert!(err.contains("private network"), "{err}");
        let err = postback_agent(false).get("http://user@[::1]:9/x").call().unwrap_err().to_string();
        assert!(err.contains("private network"), "{err}");
    }
}
