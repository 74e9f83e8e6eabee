//! Who is asking: the client address a request is counted against, for the
//! rate limits and for "one session per client per video".
//!
//! Behind the front doors the TCP peer is a proxy (NGINX, HAProxy, an edge),
//! so the address comes from `X-Forwarded-For` (or `X-Real-IP`), but only
//! when the peer is one of the configured proxies: anyone else could write
//! whatever they like there. `X-Forwarded-For` is walked from the right (the
//! hop our own proxy appended) and the first address that is not a trusted
//! proxy is the client, as NGINX's `real_ip_recursive on` does.
//!
//! A request whose client is itself a trusted proxy (a health check, an
//! edge's own fetch, a tool on the proxy's host) is the platform talking to
//! itself: [`Client::Internal`], never limited and never deduplicated.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed: addresses or CIDR
/// blocks, comma- or space-separated; empty or `none` trusts no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "none" {
            return Ok(Self::default());
        }
        s.split([',', ' '])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{p:?} is not an address or CIDR block such as 10.0.0.0/8"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The party a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// An outside client. IPv6 addresses are cut to their /64: one host
    /// usually owns a whole /64, and counting single addresses would let
    /// it take 2^64 fresh allowances.
    Addr(IpAddr),
    /// The platform itself (a trusted proxy with no client behind it), or
    /// a request whose peer is unknown.
    Internal,
}

impl Client {
    /// The client of a request served with connection info (see
    /// `shared::server`); without it the peer is unknown.
    #[inline]
    pub fn of<B>(req: &Request<B>, trusted: &TrustedProxies) -> Self {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Self::resolve(peer, req.headers(), trusted)
    }

    /// `#[inline]`, as the limiter's check: it runs on every limited request.
    #[inline]
    pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> Self {
        let Some(peer) = peer.map(canonical) else { return Client::Internal };
        if !trusted.contains(peer) {
            return Client::addr(peer);
        }
        let forwarded: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
        if forwarded.is_empty() {
            return match headers.get("x-real-ip").and_then(|v| v.to_str().ok()).and_then(parse_hop) {
                Some(ip) if !trusted.contains(ip) => Client::addr(ip),
                _ => Client::Internal,
            };
        }
        for hop in forwarded.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if trusted.contains(ip) => continue,
                Some(ip) => return Client::addr(ip),
                // Not an address: whoever wrote it was left of our last
                // trusted hop, so nothing further left can be believed.
                None => break,
            }
        }
        Client::Internal
    }

    #[inline]
    fn addr(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Client::Addr(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
            }
            v4 => Client::Addr(v4),
        }
    }

    /// A stable text form for keys: the address, or `internal`.
    pub fn key(&self) -> String {
        match self {
            Client::Addr(ip) => ip.to_string(),
            Client::Internal => "internal".to_owned(),
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, what a dual-stack
/// listener reports) is the IPv4 address.
#[inline]
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` hop: an address, optionally with a port
/// (`1.2.3.4:5678`, `[::1]:5678`).
#[inline]
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    raw.parse::<IpAddr>().ok().or_else(|| raw.parse::<SocketAddr>().ok().map(|s| s.ip())).map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn loopback() -> TrustedProxies {
        "127.0.0.0/8, ::1".parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let t = loopback();
        let spoofed = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(Client::resolve(ip("203.0.113.9"), &spoofed, &t), Client::Addr("203.0.113.9".parse().unwrap()), "an untrusted peer is the client");
        assert_eq!(Client::resolve(ip("127.0.0.1"), &spoofed, &t), Client::Addr("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = loopback();
        // A client wrote "1.1.1.1"; NGINX appended the real address; an edge forwarded it.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7"), ("x-forwarded-for", "127.0.0.1")]);
        assert_eq!(Client::resolve(ip("127.0.0.1"), &h, &t), Client::Addr("198.51.100.7".parse().unwrap()));
        let garbage = headers(&[("x-forwarded-for", "198.51.100.7, unknown, 127.0.0.1")]);
        assert_eq!(Client::resolve(ip("127.0.0.1"), &garbage, &t), Client::Internal, "nothing left of a garbled hop is believed");
        let real_ip = headers(&[("x-real-ip", "198.51.100.8")]);
        assert_eq!(Client::resolve(ip("127.0.0.1"), &real_ip, &t), Client::Addr("198.51.100.8".parse().unwrap()));
    }

    #[test]
    fn the_platform_talking_to_itself_is_internal() {
        let t = loopback();
        assert_eq!(Client::resolve(ip("127.0.0.1"), &HeaderMap::new(), &t), Client::Internal);
        assert_eq!(Client::resolve(ip("127.0.0.1"), &headers(&[("x-forwarded-for", "127.0.0.1")]), &t), Client::Internal);
        assert_eq!(Client::resolve(None, &HeaderMap::new(), &t), Client::Internal, "unknown peer");
        assert_eq!(Client::resolve(ip("::ffff:127.0.0.1"), &HeaderMap::new(), &t), Client::Internal, "v4-mapped loopback");
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_ports_are_dropped() {
        let t = TrustedProxies::default();
        let a = Client::resolve(ip("2001:db8:1:2:aaaa::1"), &HeaderMap::new(), &t);
        let b = Client::resolve(ip("2001:db8:1:2:bbbb::2"), &HeaderMap::new(), &t);
        assert_eq!(a, b);
        assert_eq!(a.key(), "2001:db8:1:2::");
        let h = headers(&[("x-forwarded-for", "[2001:db8::5]:4431, 198.51.100.7:80")]);
        assert_eq!(Client::resolve(ip("127.0.0.1"), &h, &loopback()), Client::Addr("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_lists_parse_or_name_the_bad_entry() {
        assert_eq!("none".parse::<TrustedProxies>().unwrap(), TrustedProxies::default());
        assert!("10.0.0.0/8 192.168.1.1,::1".parse::<TrustedProxies>().unwrap().contains("192.168.1.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().unwrap_err().contains("10.0.0.0/33"));
    }
}
