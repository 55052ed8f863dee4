//! IPv6 prefixes live in an LPM trie. A longest-prefix match finds one entry, so
//! each entry carries the combined verdict of every rule covering it (itself
//! included); this module computes those combined values.

use std::collections::HashMap;

use ipnet::Ipv6Net;

use crate::{
    maps::{Cidr6Value, ListEntry},
    precedence::merge,
};

/// One IPv6 prefix rule as stored by the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule6 {
    pub net: Ipv6Net,
    pub own: ListEntry,
}

fn bits(net: &Ipv6Net) -> u128 {
    u128::from(net.network())
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

/// The LPM value of every rule, in the order given.
pub fn effective_values(rules: &[Rule6]) -> Vec<Cidr6Value> {
    let by_prefix: HashMap<(u8, u128), usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.net.prefix_len(), bits(&r.net)), i))
        .collect();
    let mut lengths: Vec<u8> = rules.iter().map(|r| r.net.prefix_len()).collect();
    lengths.sort_unstable();
    lengths.dedup();

    let mut order: Vec<usize> = (0..rules.len()).collect();
    order.sort_by_key(|&i| rules[i].net.prefix_len());
    let mut effective: Vec<Option<ListEntry>> = vec![None; rules.len()];
    for i in order {
        let rule = &rules[i];
        let len = rule.net.prefix_len();
        // The longest shorter rule covering this one already merged everything above it.
        let parent = lengths
            .iter()
            .rev()
            .filter(|&&l| l < len)
            .find_map(|&l| by_prefix.get(&(l, bits(&rule.net) & mask(l))));
        let inherited = parent.and_then(|&p| effective[p]).unwrap_or_default();
        effective[i] = Some(merge(&inherited, &rule.own));
    }
    rules
        .iter()
        .zip(effective)
        .map(|(r, e)| {
            let e = e.unwrap_or_default();
            Cidr6Value {
                own: r.own,
                effective_expires_at_ns: e.expires_at_ns,
                effective_flags: e.flags,
                _pad: 0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        maps::{FLAG_ALLOW, FLAG_BLOCK},
        precedence::verdict_at,
    };
    use proptest::prelude::*;

    fn r(net: &str, flags: u32, exp: u64) -> Rule6 {
        Rule6 {
            net: net.parse().unwrap(),
            own: ListEntry {
                expires_at_ns: exp,
                flags,
                ..Default::default()
            },
        }
    }

    /// Longest-prefix match then the entry's effective verdict, as the kernel does.
    fn lpm_verdict(rules: &[Rule6], values: &[Cidr6Value], addr: u128, now: u64) -> Option<bool> {
        let best = rules
            .iter()
            .zip(values)
            .filter(|(r, _)| addr & mask(r.net.prefix_len()) == bits(&r.net))
            .max_by_key(|(r, _)| r.net.prefix_len());
        best.and_then(|(_, v)| verdict_at(&v.effective(), now))
    }

    fn brute(rules: &[Rule6], addr: u128, now: u64) -> Option<bool> {
        let merged = rules
            .iter()
            .filter(|r| addr & mask(r.net.prefix_len()) == bits(&r.net))
            .fold(ListEntry::default(), |acc, r| merge(&acc, &r.own));
        verdict_at(&merged, now)
    }

    #[test]
    fn inner_rule_inherits_outer_allow() {
        let rules = [
            r("2001:db8::/32", FLAG_ALLOW, 0),
            r("2001:db8:1::/48", FLAG_BLOCK, 0),
        ];
        let v = effective_values(&rules);
        assert_eq!(v[1].effective_flags & FLAG_ALLOW, FLAG_ALLOW);
        assert_eq!(v[1].own, rules[1].own);
    }

    #[test]
    fn inner_rule_inherits_longer_outer_block() {
        let rules = [
            r("2001:db8:1:2::/64", FLAG_BLOCK, 5),
            r("2001:db8::/32", FLAG_BLOCK, 0),
        ];
        let v = effective_values(&rules);
        assert_eq!(v[0].effective_expires_at_ns, 0);
        assert_eq!(v[1].effective_expires_at_ns, 0);
    }

    fn arb_rule() -> impl Strategy<Value = Rule6> {
        (any::<u16>(), 1u8..=127, 0u32..3, 0u64..4).prop_map(|(bits16, len, kind, exp)| {
            let addr = (0x2001_0db8u128 << 96 | (bits16 as u128) << 80) & mask(len);
            let flags = [FLAG_ALLOW, FLAG_BLOCK, FLAG_ALLOW | FLAG_BLOCK][kind as usize];
            Rule6 {
                net: Ipv6Net::new(addr.into(), len).unwrap(),
                own: ListEntry {
                    expires_at_ns: exp * 10,
                    flags,
                    ..Default::default()
                },
            }
        })
    }

    proptest! {
        #[test]
        fn longest_match_gives_the_combined_verdict(
            rules in proptest::collection::vec(arb_rule(), 0..40),
            probes in proptest::collection::vec(any::<u16>(), 32),
            now in 0u64..40,
        ) {
            let mut rules = rules;
            rules.sort_by_key(|r| (r.net.prefix_len(), bits(&r.net)));
            rules.dedup_by_key(|r| (r.net.prefix_len(), bits(&r.net)));
            let values = effective_values(&rules);
            for p in probes {
                let addr = 0x2001_0db8u128 << 96 | (p as u128) << 80 | 0x1234;
                prop_assert_eq!(lpm_verdict(&rules, &values, addr, now), brute(&rules, addr, now));
            }
        }
    }
}
