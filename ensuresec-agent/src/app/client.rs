//! Who sent a request: the TCP peer, unless the peer is a trusted proxy, in
//! which case the right-most address of `X-Forwarded-For` that is not a
//! trusted proxy itself. The header is never read from anyone else: a client
//! could write anything into it. IPv6 clients are counted and banned by
//! their network (a /64 by default), since one host owns a whole /64.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The client behind a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    pub addr: IpAddr,
    /// Seen only through a trusted proxy: its packets reach this host from
    /// the proxy's address, so XDP cannot drop it.
    pub via_proxy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRules {
    pub trusted_proxies: Vec<IpNet>,
    /// Prefix length IPv6 clients are grouped by (128: no grouping).
    pub ipv6_prefix: u8,
}

impl Default for ClientRules {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as dual-stack servers
/// log) is the IPv4 client it maps.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

impl ClientRules {
    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.trusted_proxies.iter().any(|net| net.contains(&addr))
    }

    /// The client of a request from `peer` carrying `forwarded_for`; `None`
    /// when the peer is a trusted proxy and the header names no client it
    /// can be pinned on (missing, only proxies, or unreadable): such a
    /// request is counted as read and attributed to no one, so that a proxy
    /// is never taken for an attacker.
    pub fn resolve(&self, peer: IpAddr, forwarded_for: Option<&str>) -> Option<Client> {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return Some(Client {
                addr: peer,
                via_proxy: false,
            });
        }
        let hops = forwarded_for.unwrap_or("").rsplit(',').map(str::trim);
        for hop in hops {
            // A hop may carry a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
            let parsed = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()));
            let Ok(addr) = parsed.map(canonical) else {
                // A hop we cannot read: whatever is left of it was written by
                // someone we do not trust.
                return None;
            };
            if !self.is_trusted(addr) {
                return Some(Client {
                    addr,
                    via_proxy: true,
                });
            }
        }
        None
    }

    /// The client of a line that names only the TCP peer (an error-log line,
    /// a shop event's `ip`): `None` when that is a trusted proxy.
    pub fn direct(&self, peer: IpAddr) -> Option<Client> {
        let peer = canonical(peer);
        (!self.is_trusted(peer)).then_some(Client {
            addr: peer,
            via_proxy: false,
        })
    }

    /// The network a client is counted and banned as: the address itself
    /// for IPv4, its /`ipv6_prefix` for IPv6.
    pub fn group(&self, addr: IpAddr) -> IpNet {
        match canonical(addr) {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, 32).expect("32 is a valid length")),
            IpAddr::V6(v6) => IpNet::V6(
                Ipv6Net::new(v6, self.ipv6_prefix)
                    .expect("validated prefix length")
                    .trunc(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ClientRules {
        ClientRules {
            trusted_proxies: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8:cd::/48".parse().unwrap(),
            ],
            ipv6_prefix: 64,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let r = rules();
        let client = |addr: &str, via_proxy| {
            Some(Client {
                addr: ip(addr),
                via_proxy,
            })
        };
        let forged = r.resolve(ip("203.0.113.9"), Some("1.2.3.4"));
        assert_eq!(forged, client("203.0.113.9", false));
        let behind = r.resolve(ip("10.1.1.1"), Some("1.2.3.4, 198.51.100.7, 10.2.2.2"));
        assert_eq!(behind, client("198.51.100.7", true));
        let mapped = r.resolve(ip("::ffff:10.1.1.1"), Some("::ffff:198.51.100.7"));
        assert_eq!(mapped, client("198.51.100.7", true));
        let ported = r.resolve(ip("10.1.1.1"), Some("[2001:db8::7]:4711, 198.51.100.8:80"));
        assert_eq!(ported, client("198.51.100.8", true));
        let v6 = r.resolve(ip("2001:db8:cd::1"), Some("2001:db8:1:2:3::4"));
        assert_eq!(v6, client("2001:db8:1:2:3::4", true));
    }

    #[test]
    fn a_trusted_proxy_is_never_the_client() {
        let r = rules();
        for header in [
            None,
            Some(""),
            Some("10.3.3.3"),
            Some("198.51.100.7, unknown"),
            Some("junk"),
        ] {
            assert_eq!(r.resolve(ip("10.1.1.1"), header), None, "{header:?}");
        }
        assert_eq!(r.direct(ip("10.1.1.1")), None);
        assert_eq!(
            r.direct(ip("192.0.2.1")).map(|c| c.addr),
            Some(ip("192.0.2.1"))
        );
    }

    #[test]
    fn ipv6_clients_group_by_their_network() {
        let r = rules();
        assert_eq!(
            r.group(ip("2001:db8:1:2:aaaa::1")),
            "2001:db8:1:2::/64".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            r.group(ip("192.0.2.1")),
            "192.0.2.1/32".parse::<IpNet>().unwrap()
        );
        let whole = ClientRules {
            ipv6_prefix: 128,
            ..rules()
        };
        assert_eq!(whole.group(ip("2001:db8::1")).prefix_len(), 128);
    }
}
