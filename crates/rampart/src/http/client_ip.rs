//! The client's address, taken from forwarding headers only when a trusted proxy sent them.
//!
//! Defends against address spoofing: anyone can write `X-Forwarded-For: 1.2.3.4`, so a rate
//! limit or audit record keyed on it would be trivially bypassed. The socket peer is the client
//! unless the peer is inside a configured proxy network; then the chain in `X-Forwarded-For`
//! (or RFC 7239 `Forwarded`) is walked from the right and the first address that is not itself a
//! trusted proxy is the client. Malformed entries stop the walk at the last address proven by a
//! trusted hop, so garbage cannot pick an arbitrary key.
//!
//! No crate does this with the rightmost-untrusted rule and the `Forwarded` syntax together, so
//! it is written here (about a hundred lines, property-tested in `tests`).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use super::stage::{stage_layer, Stage};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = http::header::FORWARDED;
/// More hops than any real proxy chain; bounds the work one request can cause.
const MAX_HOPS: usize = 32;

/// Which forwarding header the trusted proxies write. Only that one is read: a proxy that
/// writes one passes the other through from the client untouched, so reading both would let
/// the client choose its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`.
    Forwarded,
}

/// Shared state of the resolver.
#[derive(Debug, Clone)]
pub struct ClientIpConfig {
    trusted: Arc<[IpNet]>,
    header: ForwardedHeader,
    warned_untrusted_forwarding: Arc<AtomicBool>,
    warned_no_peer: Arc<AtomicBool>,
}

impl ClientIpConfig {
    pub fn new(trusted: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self {
            trusted: trusted.into(),
            header,
            warned_untrusted_forwarding: Arc::new(AtomicBool::new(false)),
            warned_no_peer: Arc::new(AtomicBool::new(false)),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Resolves the client address of a request: the peer recorded by [`crate::server`] as
    /// `ConnectInfo`, or forwarding headers when the peer is a trusted proxy. Logs once if
    /// forwarding headers arrive while no proxy is trusted (a likely misconfiguration).
    pub fn resolve_request(&self, extensions: &http::Extensions, headers: &HeaderMap) -> IpAddr {
        let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<SocketAddr>>() else {
            if !self.warned_no_peer.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    "no peer address on requests (serve with rampart::server::serve or \
                     into_make_service_with_connect_info): every client shares one address key"
                );
            }
            return IpAddr::from([0, 0, 0, 0]);
        };
        let peer = peer.ip();
        if self.trusted.is_empty()
            && (headers.contains_key(&X_FORWARDED_FOR) || headers.contains_key(&FORWARDED))
            && !self
                .warned_untrusted_forwarding
                .swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "forwarding headers arrived but RAMPART_TRUSTED_PROXIES is empty: they are ignored \
                 and clients are keyed by the socket peer; list the proxy networks if one is in front"
            );
        }
        self.resolve(peer, headers)
    }

    /// Resolves the client address for a request from `peer` with these headers.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let chain = match self.header {
            ForwardedHeader::XForwardedFor => forwarded_for_chain(headers),
            ForwardedHeader::Forwarded => forwarded_chain(headers),
        };
        let mut client = peer;
        for hop in chain.into_iter().rev().take(MAX_HOPS) {
            match hop {
                Some(ip) => {
                    client = canonical(ip);
                    if !self.is_trusted(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// A request's client address, put on it by [`ClientIpLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client of a request: what [`ClientIpLayer`] resolved, else the socket peer (a layer
    /// used without it keys clients by peer), else the unspecified address, which every such
    /// request shares.
    pub fn of(extensions: &http::Extensions) -> IpAddr {
        if let Some(ClientIp(ip)) = extensions.get::<ClientIp>() {
            return *ip;
        }
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| {
                canonical(peer.ip())
            })
    }
}

/// The layer that resolves each request's client address ([`ClientIp`]) once, for the rate
/// limits, load shedding, body budget, access log and audit records after it.
#[derive(Debug, Clone)]
pub struct ClientIpLayer {
    config: ClientIpConfig,
}

impl ClientIpLayer {
    pub fn new(config: ClientIpConfig) -> Self {
        Self { config }
    }
}

impl Stage for ClientIpLayer {
    type Finish = ();

    fn enter(&self, request: &mut Request) -> Result<(), Response> {
        let ip = self
            .config
            .resolve_request(request.extensions(), request.headers());
        request.extensions_mut().insert(ClientIp(ip));
        Ok(())
    }
}

stage_layer!(ClientIpLayer);

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are the IPv4 client they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Every `X-Forwarded-For` entry in order, `None` for an entry that is not an address. Entries
/// are split as bytes, so one non-ASCII entry spoils only itself, not the hop a proxy appended
/// to the same line.
fn forwarded_for_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|entry| {
            std::str::from_utf8(entry)
                .ok()
                .and_then(|e| parse_node(e.trim()))
        })
        .collect()
}

/// Every `for=` of RFC 7239 `Forwarded` in order, one per element. Elements and their pairs are
/// split only outside quoted strings: a proxy copies client-chosen text into quoted values
/// (`host="..."`), and a comma inside one must not start an element of the client's making.
/// A line that leaves a quoted string open is malformed as a whole (one `None`), so the walk
/// stops there rather than guess where the client's text ends.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(&FORWARDED)
        .iter()
        .flat_map(|line| match split_outside_quotes(line.as_bytes(), b',') {
            Some(elements) => elements.into_iter().map(forwarded_for).collect(),
            None => vec![None],
        })
        .collect()
}

/// The address of one element's `for=` pair.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let pairs = split_outside_quotes(element, b';')?;
    let value = pairs.into_iter().find_map(|pair| {
        let pair = std::str::from_utf8(pair).ok()?;
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
    })?;
    match value.strip_prefix('"') {
        Some(quoted) => {
            let inner = quoted.strip_suffix('"')?;
            // A quoted-pair (`\x`) stands for `x`; no address contains one, so refuse it.
            if inner.contains('\\') {
                return None;
            }
            parse_node(inner)
        }
        None => parse_node(value),
    }
}

/// `bytes` split at `separator` outside quoted strings (RFC 9110 quoted-string, with
/// backslash quoted-pairs); `None` when a quoted string is left open.
fn split_outside_quotes(bytes: &[u8], separator: u8) -> Option<Vec<&[u8]>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, &byte) in bytes.iter().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                quoted = false;
            }
        } else if byte == b'"' {
            quoted = true;
        } else if byte == separator {
            parts.push(&bytes[start..at]);
            start = at + 1;
        }
    }
    if quoted {
        return None;
    }
    parts.push(&bytes[start..]);
    Some(parts)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    if raw.len() > 64 {
        return None;
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = raw.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    raw.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn config(trusted: &[&str]) -> ClientIpConfig {
        ClientIpConfig::new(
            trusted.iter().filter_map(|t| t.parse().ok()).collect(),
            ForwardedHeader::XForwardedFor,
        )
    }

    fn forwarded_config(trusted: &[&str]) -> ClientIpConfig {
        ClientIpConfig::new(
            trusted.iter().filter_map(|t| t.parse().ok()).collect(),
            ForwardedHeader::Forwarded,
        )
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([255, 255, 255, 255]))
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let c = config(&[]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(c.resolve(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        let c = config(&["10.0.0.0/8"]);
        assert_eq!(c.resolve(ip("203.0.113.9"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_proxy_yields_the_rightmost_untrusted_hop() {
        let c = config(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxy appended the real peer.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // A proxy writing `Forwarded` passes the client's own X-Forwarded-For through.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        assert_eq!(
            forwarded_config(&["10.0.0.0/8"]).resolve(ip("10.0.0.2"), &h),
            ip("203.0.113.9")
        );
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        assert_eq!(
            config(&["10.0.0.0/8"]).resolve(ip("10.0.0.2"), &h),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_non_ascii_entry_does_not_hide_the_proxys_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff, 203.0.113.9").unwrap_or(HeaderValue::from_static("x")),
        );
        assert_eq!(
            config(&["10.0.0.0/8"]).resolve(ip("10.0.0.2"), &h),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarded_header_is_understood() {
        let c = forwarded_config(&["10.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8::17]:4711";proto=https"#,
        )]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("2001:db8::17"));
    }

    /// The outside review's attack: a proxy copies the client's `Host` into a quoted `host=`
    /// of the element it appends; a comma inside the quotes must not start a new element.
    #[test]
    fn client_text_inside_quotes_cannot_add_a_hop() {
        let c = forwarded_config(&["10.0.0.0/8"]);
        let h = headers(&[("forwarded", r#"for=5.5.5.5;host="evil, for=7.7.7.7""#)]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("5.5.5.5"));
        let h = headers(&[(
            "forwarded",
            r#"for=1.1.1.1, for=5.5.5.5;host="a;for=7.7.7.7, for=8.8.8.8""#,
        )]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("5.5.5.5"));
        // An escaped quote does not end the quoted string.
        let h = headers(&[("forwarded", r#"for=5.5.5.5;host="x\", for=7.7.7.7""#)]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("5.5.5.5"));
        // A quote left open spoils its whole line: the walk stops at the proxy.
        let h = headers(&[("forwarded", r#"for=1.1.1.1;x=", for=7.7.7.7"#)]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn garbage_stops_at_the_last_proven_hop() {
        let c = config(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip")]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            forwarded_config(&["10.0.0.0/8"]).resolve(ip("10.0.0.2"), &h),
            ip("10.0.0.2")
        );
        // All hops trusted: the leftmost is the best we know.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.8.8.8")]);
        assert_eq!(c.resolve(ip("10.0.0.2"), &h), ip("10.9.9.9"));
    }

    #[test]
    fn mapped_ipv4_is_canonical() {
        let c = config(&["127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(c.resolve(ip("::ffff:127.0.0.1"), &h), ip("198.51.100.7"));
    }
}
