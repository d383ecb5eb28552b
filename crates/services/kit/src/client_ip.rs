//! Who the client is: the TCP peer, or, when the peer is a trusted proxy, the right-most address in
//! the forwarding headers that is not a trusted proxy itself.
//!
//! Behind a load balancer every connection comes from the balancer, so a per-address limit keyed on
//! the peer becomes one global cap. Configure the balancer's ranges as `<service>.trusted_proxies`
//! (CIDRs, `10.0.0.0/8`, `fd00::/8`); the kit's server assembly puts them in every request's
//! extensions and [`ClientIp`] reads them:
//!
//! - a peer outside those ranges is the client, whatever headers it sends (anyone can write
//!   `X-Forwarded-For`);
//! - from a trusted peer, `Forwarded` (RFC 7239 `for=`), or else `X-Forwarded-For`, is read from the
//!   right: each hop a trusted proxy appended is skipped, and the first untrusted address is the
//!   client. A value that does not parse (`for=unknown`, an obfuscated name, garbage) ends the walk
//!   at the last trusted hop, so a forged or odd header can only make the client look like the
//!   proxy, never like someone else.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::HeaderMap;
use http::request::Parts;
use ipnet::IpNet;

/// The address ranges whose connections may speak for a client (`<service>.trusted_proxies`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`) or single addresses (`192.0.2.1`, a /32 or /128).
    ///
    /// # Errors
    ///
    /// The first entry that is neither, named.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is not an address or a CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(nets.into()))
    }

    /// Whether `ip` is in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with `headers` (see the [module docs](self)).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_for(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop else { break };
            client = *ip;
            if !self.contains(*ip) {
                break;
            }
        }
        client
    }
}

/// The `for=` hops of `Forwarded`, or when it is absent the entries of `X-Forwarded-For`, left to
/// right over every header line; `None` for a hop that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<_> = headers.get_all(http::header::FORWARDED).iter().collect();
    if !forwarded.is_empty() {
        let mut hops = Vec::new();
        for line in forwarded {
            let Ok(line) = line.to_str() else { return vec![None] };
            for element in line.split(',') {
                let value = element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
                });
                hops.push(value.and_then(forwarded_node));
            }
        }
        return hops;
    }
    let mut hops = Vec::new();
    for line in headers.get_all("x-forwarded-for") {
        let Ok(line) = line.to_str() else { return vec![None] };
        hops.extend(line.split(',').map(|entry| forwarded_node(entry.trim())));
    }
    hops
}

/// An address as a forwarding header writes it: `192.0.2.7`, `192.0.2.7:4711`, `"[2001:db8::1]:4711"`,
/// `2001:db8::1`; `None` for `unknown`, `_obfuscated` and anything else.
fn forwarded_node(value: &str) -> Option<IpAddr> {
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    value.parse::<IpAddr>().ok().or_else(|| value.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The client's IP address: the TCP peer when served by [`crate::server::Server`], resolved through
/// [`TrustedProxies`] when the request carries them (the kit's server assembly adds them); `None` in
/// `oneshot` tests without `ConnectInfo`. Never rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self(None));
        };
        let client = match parts.extensions.get::<TrustedProxies>() {
            Some(trusted) => trusted.client(peer.ip(), &parts.headers),
            None => peer.ip().to_canonical(),
        };
        Ok(Self(Some(client)))
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http::HeaderMap;

    use super::TrustedProxies;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let forged = headers(&[("x-forwarded-for", "198.51.100.1"), ("forwarded", "for=198.51.100.2")]);
        assert_eq!(trusted.client(ip("203.0.113.9"), &forged), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), &forged), ip("10.0.0.1"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1"]).unwrap();
        // The client forged the left-most entry; the balancer appended the real one.
        let xff = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9"), ("x-forwarded-for", "10.1.1.1")]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &xff), ip("203.0.113.9"));
        let forwarded = headers(&[(
            "forwarded",
            r#"for=1.2.3.4, for="[2001:db8:1::7]:4711";proto=https, For="[2001:db8:ffff::1]""#,
        )]);
        assert_eq!(trusted.client(ip("192.0.2.1"), &forwarded), ip("2001:db8:1::7"));
        // Forwarded wins over X-Forwarded-For when both are present.
        let both = headers(&[("forwarded", "for=203.0.113.5"), ("x-forwarded-for", "203.0.113.6")]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &both), ip("203.0.113.5"));
        // An IPv4-mapped peer counts as its IPv4 address.
        assert_eq!(trusted.client(ip("::ffff:10.0.0.2"), &xff), ip("203.0.113.9"));
    }

    #[test]
    fn odd_or_missing_hops_never_name_someone_else() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        // No header: the proxy itself (its clients share one key rather than escape the limit).
        assert_eq!(trusted.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
        // Garbage or `unknown` right of a real address stops the walk at the last trusted hop.
        let odd = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip, 10.0.0.7")]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &odd), ip("10.0.0.7"));
        let unknown = headers(&[("forwarded", "for=203.0.113.9, for=unknown")]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &unknown), ip("10.0.0.2"));
        // Every hop trusted: the left-most.
        let inner = headers(&[("x-forwarded-for", "10.9.9.9, 10.8.8.8")]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &inner), ip("10.9.9.9"));
    }

    #[test]
    fn bad_ranges_are_named() {
        let err = TrustedProxies::parse(&["10.0.0.0/8", "10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(TrustedProxies::parse(&["192.0.2.1"]).unwrap().contains(ip("192.0.2.1")));
    }
}
