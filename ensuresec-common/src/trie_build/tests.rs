//! The trie against a brute-force reference, IPv4 and IPv6.

use super::*;
use crate::{
    maps::{FLAG_ALLOW, FLAG_BLOCK, ListEntry},
    precedence::{merge, verdict_at},
};
use proptest::prelude::*;

const REGION: CopyRegion = CopyRegion {
    node_base: 1000,
    node_capacity: 4 * 512,
    rule_base: 77,
    rule_capacity: 512,
};

fn rule(net: &str, flags: u32, expires: u64) -> TrieRule {
    let net: ipnet::Ipv4Net = net.parse().unwrap();
    TrieRule {
        entry: ListEntry {
            expires_at_ns: expires,
            flags,
            ..Default::default()
        },
        addr: u32::from(net.network()),
        prefix_len: net.prefix_len() as u32,
    }
}

fn ip(s: &str) -> u32 {
    u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
}

fn left(addr: u32) -> u128 {
    (addr as u128) << 96
}

/// Verdict by brute force over every rule: the reference the trie must match.
fn brute(rules: &[TrieRule], addr: u32, now: u64) -> Option<bool> {
    let covering = rules.iter().filter(|r| {
        let mask = u32::MAX << (32 - r.prefix_len);
        addr & mask == r.addr
    });
    let merged = covering.fold(ListEntry::default(), |acc, r| merge(&acc, &r.entry));
    verdict_at(&merged, now)
}

fn trie_verdict(t: &TrieLayout<TrieRule>, addr: u32, now: u64) -> Option<bool> {
    t.lookup(addr).and_then(|r| verdict_at(&r.entry, now))
}

#[test]
fn empty_trie_matches_nothing() {
    let t = TrieLayout::<TrieRule>::build(&[], &[], REGION).unwrap();
    assert!(t.lookup(ip("10.1.2.3")).is_none());
    assert!(t.nodes.is_empty());
}

#[test]
fn nested_prefixes_resolve_by_precedence() {
    let rules = [
        rule("10.0.0.0/8", FLAG_BLOCK, 0),
        rule("10.1.0.0/16", FLAG_ALLOW, 0),
        rule("10.1.2.0/23", FLAG_BLOCK, 0),
        rule("10.1.2.128/25", FLAG_BLOCK, 50),
        rule("192.168.0.0/30", FLAG_BLOCK, 40),
    ];
    let t = TrieLayout::build(&rules, &[], REGION).unwrap();
    assert_eq!(trie_verdict(&t, ip("10.200.0.1"), 1), Some(false));
    // The /16 allow wins over the /8 and the /23 blocks under it.
    assert_eq!(trie_verdict(&t, ip("10.1.2.200"), 1), Some(true));
    assert_eq!(trie_verdict(&t, ip("11.0.0.1"), 1), None);
    assert_eq!(trie_verdict(&t, ip("192.168.0.3"), 1), Some(false));
    assert_eq!(trie_verdict(&t, ip("192.168.0.3"), 40), None);
    assert_eq!(trie_verdict(&t, ip("192.168.0.4"), 1), None);
}

#[test]
fn longer_lasting_outer_block_keeps_dropping_after_inner_expires() {
    let rules = [
        rule("203.0.113.0/24", FLAG_BLOCK, 0),
        rule("203.0.113.64/26", FLAG_BLOCK, 10),
    ];
    let t = TrieLayout::build(&rules, &[], REGION).unwrap();
    assert_eq!(trie_verdict(&t, ip("203.0.113.70"), 20), Some(false));
}

#[test]
fn slots_carry_absolute_indices() {
    let t = TrieLayout::build(&[rule("172.16.5.0/29", FLAG_BLOCK, 0)], &[], REGION).unwrap();
    assert_eq!(t.nodes.len(), 4);
    assert_eq!(
        t.root[(ip("172.16.0.0") >> 16) as usize],
        SLOT_NODE | REGION.node_base
    );
    assert_eq!(t.lookup(ip("172.16.5.7")).unwrap().prefix_len, 29);
    assert!(t.lookup(ip("172.16.5.8")).is_none());
}

#[test]
fn refuses_overflow_and_bad_input() {
    let small = CopyRegion {
        node_capacity: 3,
        rule_capacity: 1,
        ..REGION
    };
    assert_eq!(
        TrieLayout::build(&[rule("172.16.5.0/29", FLAG_BLOCK, 0)], &[], small).unwrap_err(),
        TrieError::TooManyNodes {
            family: "IPv4",
            capacity: 3
        }
    );
    let two = [
        rule("10.0.0.0/8", FLAG_BLOCK, 0),
        rule("11.0.0.0/8", FLAG_BLOCK, 0),
    ];
    assert!(matches!(
        TrieLayout::build(&two, &[], small),
        Err(TrieError::TooManyRules {
            count: 2,
            capacity: 1,
            ..
        })
    ));
    let dup = [
        rule("10.0.0.0/8", FLAG_BLOCK, 0),
        rule("10.0.0.0/8", FLAG_ALLOW, 0),
    ];
    assert!(matches!(
        TrieLayout::build(&dup, &[], REGION),
        Err(TrieError::Duplicate { .. })
    ));
    let mut host_bits = rule("10.0.0.0/8", FLAG_BLOCK, 0);
    host_bits.addr |= 1;
    assert!(matches!(
        TrieLayout::build(&[host_bits], &[], REGION),
        Err(TrieError::BadPrefix { .. })
    ));
}

#[test]
fn rules_know_whether_exact_allows_lie_inside() {
    let rules = [
        rule("10.0.0.0/8", FLAG_BLOCK, 0),
        rule("10.1.0.0/16", FLAG_BLOCK, 0),
        rule("192.168.0.0/24", FLAG_BLOCK, 0),
    ];
    let t = TrieLayout::build(
        &rules,
        &[left(ip("10.1.255.255")), left(ip("11.0.0.0"))],
        REGION,
    )
    .unwrap();
    let flagged = |addr| t.lookup(ip(addr)).unwrap().entry.flags & FLAG_EXACT_ALLOW_INSIDE != 0;
    assert!(flagged("10.1.0.1"), "the /16 holds 10.1.255.255");
    assert!(flagged("10.2.0.1"), "so does the /8");
    assert!(!flagged("192.168.0.1"));
}

#[test]
fn node_count_never_exceeds_four_per_rule() {
    // Prefixes of every length 17..=31 scattered over distinct /16s.
    let rules: Vec<_> = (17..=31u32)
        .map(|len| {
            let addr = (len << 24) | (0x5a5a_5a5a & (u32::MAX << (32 - len)) & 0x00ff_ffff);
            TrieRule {
                entry: ListEntry {
                    flags: FLAG_BLOCK,
                    ..Default::default()
                },
                addr,
                prefix_len: len,
            }
        })
        .collect();
    let t = TrieLayout::build(&rules, &[], REGION).unwrap();
    assert!(t.nodes.len() <= rules.len() * 4);
}

fn arb_rule() -> impl Strategy<Value = TrieRule> {
    // A few /8s so that random prefixes overlap often.
    (0u32..4, any::<u32>(), 1u32..=31, 0u32..3, 0u64..4).prop_map(|(top, bits, len, kind, exp)| {
        let addr = ((10 + top) << 24 | (bits & 0x00ff_ffff)) & (u32::MAX << (32 - len));
        let flags = [FLAG_ALLOW, FLAG_BLOCK, FLAG_ALLOW | FLAG_BLOCK][kind as usize];
        TrieRule {
            entry: ListEntry {
                expires_at_ns: exp * 10,
                flags,
                ..Default::default()
            },
            addr,
            prefix_len: len,
        }
    })
}

proptest! {
    #[test]
    fn trie_agrees_with_brute_force(
        rules in proptest::collection::vec(arb_rule(), 0..60),
        probes in proptest::collection::vec((0u32..4, any::<u32>()), 64),
        now in 0u64..40,
    ) {
        let mut rules = rules;
        rules.sort_by_key(|r| (r.prefix_len, r.addr));
        rules.dedup_by_key(|r| (r.prefix_len, r.addr));
        let t = TrieLayout::build(&rules, &[], REGION).unwrap();
        for (top, bits) in probes {
            let addr = (10 + top) << 24 | (bits & 0x00ff_ffff);
            prop_assert_eq!(trie_verdict(&t, addr, now), brute(&rules, addr, now), "{:#x}", addr);
        }
        // Probe the edges of every rule too.
        for r in &rules {
            let last = r.addr | (u32::MAX >> r.prefix_len);
            for addr in [r.addr, last, r.addr.wrapping_sub(1), last.wrapping_add(1)] {
                prop_assert_eq!(trie_verdict(&t, addr, now), brute(&rules, addr, now));
            }
        }
    }
}

fn rule6(bits16: u16, len: u32, kind: u32, exp: u64) -> TrieRule6 {
    let mask = u128::MAX << (128 - len);
    let addr = (0x2001_0db8u128 << 96 | (bits16 as u128) << 80 | 0xfeed) & mask;
    TrieRule6 {
        entry: ListEntry {
            expires_at_ns: exp * 10,
            flags: [FLAG_ALLOW, FLAG_BLOCK, FLAG_ALLOW | FLAG_BLOCK][kind as usize],
            ..Default::default()
        },
        addr: addr.to_be_bytes(),
        prefix_len: len,
        _pad: 0,
    }
}

fn brute6(rules: &[TrieRule6], addr: u128, now: u64) -> Option<bool> {
    let covering = rules
        .iter()
        .filter(|r| addr & (u128::MAX << (128 - r.prefix_len)) == r.bits());
    let merged = covering.fold(ListEntry::default(), |acc, r| merge(&acc, &r.entry));
    verdict_at(&merged, now)
}

#[test]
fn ipv6_rules_of_any_depth_resolve() {
    let rules = [
        rule6(0x1234, 32, 1, 0),
        rule6(0x1234, 127, 0, 0),
        rule6(0x1234, 48, 1, 3),
    ];
    let t = TrieLayout::build(&rules, &[], REGION).unwrap();
    let inside = 0x2001_0db8u128 << 96 | 0x1234u128 << 80;
    // The /127 covers ...feec and ...feed, and its allow wins over both blocks.
    assert_eq!(t.lookup_bits(inside | 0xfeed).unwrap().prefix_len, 127);
    assert_eq!(
        verdict_at(&t.lookup_bits(inside | 0xfeec).unwrap().entry, 1),
        Some(true)
    );
    assert_eq!(
        verdict_at(&t.lookup_bits(inside | 0xfeee).unwrap().entry, 1),
        Some(false)
    );
    assert!(t.lookup6("2001:db9::1".parse().unwrap()).is_none());
    assert!(t.nodes.len() <= 28);
}

#[test]
fn ipv6_refuses_the_whole_family_and_one_address() {
    for len in [128, 0] {
        let mut r = rule6(0, 32, 1, 0);
        r.prefix_len = len;
        assert!(matches!(
            TrieLayout::build(&[r], &[], REGION),
            Err(TrieError::BadPrefix { .. })
        ));
    }
}

proptest! {
    #[test]
    fn ipv6_trie_agrees_with_brute_force(
        rules in proptest::collection::vec((any::<u16>(), 1u32..=127, 0u32..3, 0u64..4), 0..40),
        probes in proptest::collection::vec((any::<u16>(), any::<u16>()), 48),
        now in 0u64..40,
    ) {
        let mut rules: Vec<TrieRule6> =
            rules.into_iter().map(|(b, l, k, e)| rule6(b, l, k, e)).collect();
        rules.sort_by_key(|r| (r.prefix_len, r.bits()));
        rules.dedup_by_key(|r| (r.prefix_len, r.bits()));
        let t = TrieLayout::build(&rules, &[], REGION).unwrap();
        let verdict = |addr: u128| t.lookup_bits(addr).and_then(|r| verdict_at(&r.entry, now));
        for (hi, lo) in probes {
            let addr = 0x2001_0db8u128 << 96 | (hi as u128) << 80 | lo as u128;
            prop_assert_eq!(verdict(addr), brute6(&rules, addr, now), "{:#x}", addr);
        }
        for r in &rules {
            let last = last_of(r);
            for addr in [r.bits(), last, r.bits().wrapping_sub(1), last.wrapping_add(1)] {
                prop_assert_eq!(verdict(addr), brute6(&rules, addr, now));
            }
        }
    }
}

/// The shape `bench xdp` lists: 10,000 random prefixes of /32 to /64 under
/// one /16 fit the nodes the maps give that many rules.
#[test]
fn random_ipv6_prefixes_fit_the_node_budget() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut rules: Vec<TrieRule6> = (0..10_000)
        .map(|_| {
            let len = 32 + (next() % 33) as u32;
            let bits = (0x2a00u128 << 112 | (next() as u128) << 48) & (u128::MAX << (128 - len));
            TrieRule6::from_parts(bits, len, ListEntry::default())
        })
        .collect();
    rules.sort_by_key(|r| (r.prefix_len, r.bits()));
    rules.dedup_by_key(|r| (r.prefix_len, r.bits()));
    let count = rules.len() as u32;
    let region = CopyRegion {
        node_base: 0,
        node_capacity: crate::trie::nodes_v6(count),
        rule_base: 0,
        rule_capacity: count,
    };
    let t = TrieLayout::build(&rules, &[], region).unwrap();
    eprintln!("{} rules, {} nodes", count, t.nodes.len());
    assert!(t.nodes.len() as u32 <= region.node_capacity);
}

#[test]
fn a_lone_ipv6_prefix_is_a_leaf_and_parted_paths_are_nodes() {
    let lone = TrieLayout::build(&[rule6(0x1234, 64, 1, 0)], &[], REGION).unwrap();
    assert!(lone.nodes.is_empty());
    assert_eq!(lone.leaves.len(), 1);
    assert_eq!(lone.root[0x2001] & SLOT_LEAF, SLOT_LEAF);
    // Two /64s that part at bit 44: a node for every 4 bits from 16 to there,
    // then a leaf each.
    let pair = [rule6(0x1234, 64, 1, 0), rule6(0x1238, 64, 1, 0)];
    let t = TrieLayout::build(&pair, &[], REGION).unwrap();
    assert_eq!((t.nodes.len(), t.leaves.len()), (8, 2));
    let small = CopyRegion {
        node_capacity: 4,
        ..REGION
    };
    assert_eq!(
        TrieLayout::build(&pair, &[], small).unwrap_err(),
        TrieError::TooManyNodes {
            family: "IPv6",
            capacity: 4
        }
    );
}
