//! The addresses a journal entry's target covers, as two 16-byte keys
//! (IPv4 mapped) that compare in address order, so that one query finds
//! every entry about an address: its own, its networks', its destinations'.

use std::net::IpAddr;

use ensuresec_common::{entry::Target, features::AddrKey};

use crate::store::decisions::{DecisionTarget, addr_key};

pub type Range = (AddrKey, AddrKey);

fn of_list_target(t: &Target) -> Range {
    match t {
        Target::V4(a) => (addr_key(IpAddr::V4(*a)), addr_key(IpAddr::V4(*a))),
        Target::V6(a) => (addr_key(IpAddr::V6(*a)), addr_key(IpAddr::V6(*a))),
        Target::Net4(n) => (
            addr_key(IpAddr::V4(n.network())),
            addr_key(IpAddr::V4(n.broadcast())),
        ),
        Target::Net6(n) => (
            addr_key(IpAddr::V6(n.network())),
            addr_key(IpAddr::V6(n.broadcast())),
        ),
    }
}

/// The range of a target as the journal writes it: a list target, or a
/// decision target (a destination is its address; a storefront has none).
pub fn of(target: &str) -> Option<Range> {
    if let Ok(t) = target.parse::<Target>() {
        return Some(of_list_target(&t));
    }
    let decision = target.parse::<DecisionTarget>().ok()?;
    if let Some(t) = decision.list_target() {
        return Some(of_list_target(&t));
    }
    if decision.storefront_id().is_some() {
        return None;
    }
    Some((decision.0.addr, decision.0.addr))
}

/// The range an address or a prefix the operator asks about covers.
pub fn of_query(text: &str) -> Option<Range> {
    text.parse::<Target>().ok().map(|t| of_list_target(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_what_the_target_covers() {
        let (lo, hi) = of("198.51.100.0/24").unwrap();
        let inside = addr_key("198.51.100.7".parse().unwrap());
        let outside = addr_key("198.51.101.0".parse().unwrap());
        assert!(lo <= inside && inside <= hi);
        assert!(!(lo <= outside && outside <= hi));
        assert_eq!(
            of("10.77.0.1:80/tcp").unwrap().0,
            addr_key("10.77.0.1".parse().unwrap())
        );
        assert_eq!(of("storefront#3"), None);
        let (lo6, hi6) = of("2001:db8:1:2::/64").unwrap();
        let in6 = addr_key("2001:db8:1:2::99".parse().unwrap());
        assert!(lo6 <= in6 && in6 <= hi6);
    }
}
