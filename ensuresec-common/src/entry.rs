//! What an operator can put on a list: one address or one prefix, IPv4 or IPv6.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::{Ipv4Net, Ipv6Net};

/// A list target after normalisation: a `/32` or `/128` prefix is an exact address,
/// and an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as dual-stack servers log
/// IPv4 clients) is the IPv4 address it maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Net4(Ipv4Net),
    Net6(Ipv6Net),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("`{0}` is not an IPv4/IPv6 address or CIDR prefix")]
    NotAnAddress(String),
    #[error("`{text}` has host bits set below the prefix length; did you mean {network}?")]
    HostBitsSet { text: String, network: String },
    #[error("`{0}` covers the whole address family; refusing a /0 prefix")]
    WholeFamily(String),
    #[error("`{0}` is the unspecified address, which no packet comes from; it cannot be listed")]
    Unspecified(String),
}

impl Target {
    pub fn is_v4(&self) -> bool {
        matches!(self, Target::V4(_) | Target::Net4(_))
    }

    pub fn is_prefix(&self) -> bool {
        matches!(self, Target::Net4(_) | Target::Net6(_))
    }

    /// Label for metrics and listings: `ipv4`/`ipv6`.
    pub fn family(&self) -> &'static str {
        if self.is_v4() { "ipv4" } else { "ipv6" }
    }

    /// Label for metrics and listings: `exact`/`cidr`.
    pub fn kind(&self) -> &'static str {
        if self.is_prefix() { "cidr" } else { "exact" }
    }

    /// The address of an exact target; `None` for a prefix.
    pub fn addr(&self) -> Option<IpAddr> {
        match self {
            Target::V4(a) => Some(IpAddr::V4(*a)),
            Target::V6(a) => Some(IpAddr::V6(*a)),
            Target::Net4(_) | Target::Net6(_) => None,
        }
    }

    /// The exact target of an address.
    pub fn of_addr(addr: IpAddr) -> Self {
        match normalize_addr(addr) {
            IpAddr::V4(a) => Target::V4(a),
            IpAddr::V6(a) => Target::V6(a),
        }
    }

    /// Whether `addr` falls under this target.
    /// Bits of the prefix (32 or 128 for a single address).
    pub fn prefix_len(&self) -> u8 {
        match self {
            Target::V4(_) => 32,
            Target::V6(_) => 128,
            Target::Net4(n) => n.prefix_len(),
            Target::Net6(n) => n.prefix_len(),
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, normalize_addr(addr)) {
            (Target::V4(a), IpAddr::V4(b)) => *a == b,
            (Target::V6(a), IpAddr::V6(b)) => *a == b,
            (Target::Net4(n), IpAddr::V4(b)) => n.contains(&b),
            (Target::Net6(n), IpAddr::V6(b)) => n.contains(&b),
            _ => false,
        }
    }
}

/// Maps `::ffff:a.b.c.d` to `a.b.c.d`; leaves every other address alone.
pub fn normalize_addr(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let target = Self::parse_any(text)?;
        // All-zero keys mark empty slots in the kernel's exact tables.
        match target {
            Target::V4(a) if a.is_unspecified() => Err(TargetError::Unspecified(text.to_string())),
            Target::V6(a) if a.is_unspecified() => Err(TargetError::Unspecified(text.to_string())),
            t => Ok(t),
        }
    }
}

impl Target {
    fn parse_any(text: &str) -> Result<Self, TargetError> {
        let Some((addr, len)) = text.split_once('/') else {
            return match text.parse::<IpAddr>().map(normalize_addr) {
                Ok(IpAddr::V4(a)) => Ok(Target::V4(a)),
                Ok(IpAddr::V6(a)) => Ok(Target::V6(a)),
                Err(_) => Err(TargetError::NotAnAddress(text.to_string())),
            };
        };
        let bad = || TargetError::NotAnAddress(text.to_string());
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        // Reject "+8", " 8" and the like that `u8::from_str` would take or that hide typos.
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
            return Err(bad());
        }
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len == 0 {
            return Err(TargetError::WholeFamily(text.to_string()));
        }
        match addr {
            IpAddr::V4(a) => {
                let net = Ipv4Net::new(a, len).map_err(|_| bad())?;
                if net.network() != a {
                    return Err(TargetError::HostBitsSet {
                        text: text.to_string(),
                        network: net.trunc().to_string(),
                    });
                }
                Ok(if len == 32 {
                    Target::V4(a)
                } else {
                    Target::Net4(net)
                })
            }
            IpAddr::V6(a) => {
                if let Some(v4) = a.to_ipv4_mapped()
                    && len >= 96
                {
                    return Self::parse_any(&format!("{v4}/{}", len - 96)).map_err(|e| match e {
                        TargetError::WholeFamily(_) => TargetError::WholeFamily(text.to_string()),
                        _ => bad(),
                    });
                }
                let net = Ipv6Net::new(a, len).map_err(|_| bad())?;
                if net.network() != a {
                    return Err(TargetError::HostBitsSet {
                        text: text.to_string(),
                        network: net.trunc().to_string(),
                    });
                }
                Ok(if len == 128 {
                    Target::V6(a)
                } else {
                    Target::Net6(net)
                })
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::V4(a) => a.fmt(f),
            Target::V6(a) => a.fmt(f),
            Target::Net4(n) => n.fmt(f),
            Target::Net6(n) => n.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<Target, TargetError> {
        s.parse()
    }

    #[test]
    fn parses_addresses_and_prefixes() {
        assert_eq!(t("192.0.2.7"), Ok(Target::V4("192.0.2.7".parse().unwrap())));
        assert_eq!(
            t(" 2001:db8::1 "),
            Ok(Target::V6("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(
            t("10.0.0.0/8"),
            Ok(Target::Net4("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(
            t("2001:db8::/32"),
            Ok(Target::Net6("2001:db8::/32".parse().unwrap()))
        );
    }

    #[test]
    fn full_length_prefixes_are_exact() {
        assert_eq!(t("192.0.2.7/32"), t("192.0.2.7"));
        assert_eq!(t("2001:db8::1/128"), t("2001:db8::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        assert_eq!(t("::ffff:192.0.2.7"), t("192.0.2.7"));
        assert_eq!(t("::ffff:10.0.0.0/104"), t("10.0.0.0/8"));
        assert!(matches!(
            t("::ffff:0.0.0.0/96"),
            Err(TargetError::WholeFamily(_))
        ));
    }

    #[test]
    fn rejects_garbage_with_the_text() {
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "2001:db8::/129",
            "example.com",
            "1.2.3.4/8/9",
            "10.0.0.0/0008",
        ] {
            let err = t(bad).unwrap_err();
            assert!(err.to_string().contains(bad.trim()), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_host_bits_and_suggests_the_network() {
        assert_eq!(
            t("10.1.2.3/8"),
            Err(TargetError::HostBitsSet {
                text: "10.1.2.3/8".into(),
                network: "10.0.0.0/8".into()
            })
        );
        assert!(matches!(
            t("2001:db8::1/64"),
            Err(TargetError::HostBitsSet { .. })
        ));
    }

    #[test]
    fn rejects_unspecified_addresses() {
        for s in ["0.0.0.0", "::", "0.0.0.0/32", "::/128", "::ffff:0.0.0.0"] {
            assert!(matches!(t(s), Err(TargetError::Unspecified(_))), "{s}");
        }
        assert!(t("0.0.0.0/8").is_ok(), "the prefix is fine");
    }

    #[test]
    fn rejects_whole_family() {
        assert!(matches!(t("0.0.0.0/0"), Err(TargetError::WholeFamily(_))));
        assert!(matches!(t("::/0"), Err(TargetError::WholeFamily(_))));
    }

    #[test]
    fn contains_follows_prefixes() {
        let net = t("198.51.100.0/24").unwrap();
        assert!(net.contains("198.51.100.200".parse().unwrap()));
        assert!(net.contains("::ffff:198.51.100.1".parse().unwrap()));
        assert!(!net.contains("198.51.101.1".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn display_round_trips() {
        for s in ["192.0.2.7", "10.0.0.0/8", "2001:db8::/32", "2001:db8::1"] {
            assert_eq!(t(s).unwrap().to_string(), s);
        }
    }
}
