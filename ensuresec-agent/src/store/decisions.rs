//! Automatic decisions and repeat offenders in their pinned maps.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use ensuresec_common::{
    decisions::{
        DecisionKey, DecisionRecord, Offender, SCOPE_DESTINATION, SCOPE_PREFIX, SCOPE_SOURCE,
        SCOPE_STOREFRONT,
    },
    entry::{Target, normalize_addr},
    features::AddrKey,
};

use super::{Store, Writer};
use crate::error::Result;

/// The address of a key (IPv4-mapped keys are IPv4 addresses).
pub fn key_addr(key: &AddrKey) -> IpAddr {
    normalize_addr(IpAddr::V6((*key).into()))
}

/// The key of an address.
pub fn addr_key(addr: IpAddr) -> AddrKey {
    match normalize_addr(addr) {
        IpAddr::V4(a) => a.to_ipv6_mapped().into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        p => p.to_string(),
    }
}

/// A decision's target as operators write it: `192.0.2.1` for a source,
/// `2001:db8:1:2::/64` for a source network, `10.77.0.1:80/tcp` (or
/// `[fd77::1]:*/udp` for untracked ports) for a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecisionTarget(pub DecisionKey);

impl DecisionTarget {
    /// The decision on a source address.
    pub fn source(addr: IpAddr) -> Self {
        DecisionTarget(DecisionKey::new(addr_key(addr), 0, 0, SCOPE_SOURCE))
    }

    /// The decision on a source network; a whole-address network is the
    /// address's own decision.
    pub fn network(net: IpNet) -> Self {
        let net = net.trunc();
        if net.prefix_len() == net.max_prefix_len() {
            return Self::source(net.addr());
        }
        DecisionTarget(DecisionKey::new(
            addr_key(net.network()),
            net.prefix_len() as u16,
            0,
            SCOPE_PREFIX,
        ))
    }

    /// The decision on a storefront as a whole; `id` is its name's id in
    /// `ES_REASONS`.
    pub fn storefront(id: u32) -> Self {
        let mut addr = AddrKey::ZERO;
        addr.0[..4].copy_from_slice(&id.to_le_bytes());
        DecisionTarget(DecisionKey::new(addr, 0, 0, SCOPE_STOREFRONT))
    }

    /// The storefront's name id, for a storefront-wide decision.
    pub fn storefront_id(&self) -> Option<u32> {
        (self.0.scope == SCOPE_STOREFRONT)
            .then(|| u32::from_le_bytes(self.0.addr.0[..4].try_into().expect("four bytes")))
    }

    /// What a source decision drops in the lists: the address or network.
    pub fn list_target(&self) -> Option<Target> {
        let addr = key_addr(&self.0.addr);
        match self.0.scope {
            SCOPE_SOURCE => Some(Target::of_addr(addr)),
            SCOPE_PREFIX => match addr {
                IpAddr::V4(a) => Ipv4Net::new(a, self.0.port.try_into().ok()?)
                    .ok()
                    .map(Target::Net4),
                IpAddr::V6(a) => Ipv6Net::new(a, self.0.port.try_into().ok()?)
                    .ok()
                    .map(Target::Net6),
            },
            _ => None,
        }
    }
}

impl fmt::Display for DecisionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.0;
        if let Some(id) = self.storefront_id() {
            return write!(f, "storefront#{id}");
        }
        let addr = key_addr(&k.addr);
        if k.scope == SCOPE_SOURCE {
            return write!(f, "{addr}");
        }
        if k.scope == SCOPE_PREFIX {
            return write!(f, "{addr}/{}", k.port);
        }
        let port = if k.port == 0 {
            "*".to_string()
        } else {
            k.port.to_string()
        };
        match addr {
            IpAddr::V4(a) => write!(f, "{a}:{port}/{}", proto_name(k.proto)),
            IpAddr::V6(a) => write!(f, "[{a}]:{port}/{}", proto_name(k.proto)),
        }
    }
}

impl FromStr for DecisionTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "`{s}` is not a decision target (ADDR, ADDR/LEN, ADDR:PORT/PROTO or storefront:NAME as `decisions list` shows it)"
            )
        };
        if let Ok(a) = s.parse::<IpAddr>() {
            return Ok(DecisionTarget::source(a));
        }
        if let Some(id) = s.strip_prefix("storefront#").and_then(|n| n.parse().ok()) {
            return Ok(DecisionTarget::storefront(id));
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(DecisionTarget::network(net));
        }
        let (host_port, proto) = s.rsplit_once('/').ok_or_else(bad)?;
        let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = host.parse().map_err(|_| bad())?;
        let port: u16 = if port == "*" {
            0
        } else {
            port.parse().map_err(|_| bad())?
        };
        let proto = match proto {
            "icmp" => 1,
            "tcp" => 6,
            "udp" => 17,
            "icmpv6" => 58,
            other => other.parse().map_err(|_| bad())?,
        };
        Ok(DecisionTarget(DecisionKey::new(
            addr_key(addr),
            port,
            proto,
            SCOPE_DESTINATION,
        )))
    }
}

impl Store {
    pub fn decisions(&self) -> Result<Vec<(DecisionKey, DecisionRecord)>> {
        self.decisions.dump()
    }

    pub fn decision(&self, key: &DecisionKey) -> Result<Option<DecisionRecord>> {
        self.decisions.get(key)
    }

    pub fn offender(&self, addr: &AddrKey) -> Result<Option<Offender>> {
        self.offenders.get(addr)
    }

    pub fn offenders(&self) -> Result<Vec<(AddrKey, Offender)>> {
        self.offenders.dump()
    }
}

impl Writer<'_> {
    pub fn set_decision(&self, key: &DecisionKey, record: &DecisionRecord) -> Result<()> {
        self.decisions.set(key, record)
    }

    pub fn remove_decision(&self, key: &DecisionKey) -> Result<bool> {
        self.decisions.remove(key)
    }

    pub fn set_offender(&self, addr: &AddrKey, o: &Offender) -> Result<()> {
        self.offenders.set(addr, o)
    }

    pub fn remove_offender(&self, addr: &AddrKey) -> Result<bool> {
        self.offenders.remove(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip() {
        for s in [
            "192.0.2.1",
            "2001:db8::1",
            "2001:db8:1:2::/64",
            "198.51.100.0/24",
            "storefront#7",
            "10.77.0.1:80/tcp",
            "[fd77::1]:*/udp",
            "10.0.0.1:*/icmp",
        ] {
            let t: DecisionTarget = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert_eq!(
            "::ffff:192.0.2.1"
                .parse::<DecisionTarget>()
                .unwrap()
                .to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn bad_targets_are_named() {
        for s in [
            "nope",
            "10.0.0.1:80",
            "10.0.0.1:http/tcp",
            "10.0.0.1:80/sctpx",
        ] {
            let e = s.parse::<DecisionTarget>().unwrap_err();
            assert!(e.contains(s), "{e}");
        }
    }
}
