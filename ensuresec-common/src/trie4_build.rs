//! Builds one copy of the IPv4 prefix trie (see `trie4`) from the full rule set.
//!
//! Rules are inserted shortest prefix first, so when a longer rule splits a slot
//! into a node, the node's slots inherit the slot's current winner ("leaf pushing").

use crate::{
    maps::{FLAG_EXACT_ALLOW_INSIDE, TrieRule},
    precedence::wins_over,
    trie4::{NODE_BITS, NODE_SLOTS, Node, ROOT_BITS, SLOT_NODE},
};

/// Where one copy starts in the maps and how much room it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyRegion {
    pub node_base: u32,
    pub node_capacity: u32,
    pub rule_base: u32,
    pub rule_capacity: u32,
}

/// One copy of the trie, ready to be written into the maps.
#[derive(Clone, Debug)]
pub struct TrieLayout {
    /// 65536 root slots, indexed by the top 16 address bits.
    pub root: Vec<u32>,
    pub nodes: Vec<Node>,
    /// Rules sorted by (prefix length, address); slot `rule_base + i + 1` is `rules[i]`.
    pub rules: Vec<TrieRule>,
    pub region: CopyRegion,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrieError {
    #[error("{count} IPv4 prefixes exceed the capacity of {capacity} (maps.cidr_v4)")]
    TooManyRules { count: usize, capacity: u32 },
    #[error("the IPv4 prefixes need more than {capacity} trie nodes")]
    TooManyNodes { capacity: u32 },
    #[error("{addr:#010x}/{len} is not a prefix the trie holds (lengths 1 to 31, no host bits)")]
    BadPrefix { addr: u32, len: u32 },
    #[error("prefix {addr:#010x}/{len} appears twice")]
    Duplicate { addr: u32, len: u32 },
}

impl TrieLayout {
    /// Builds a copy holding `rules` (any order, each prefix once).
    /// `exact_allows` are the exact IPv4 allowlist entries (host byte order, any
    /// order); rules covering one of them get `FLAG_EXACT_ALLOW_INSIDE`.
    pub fn build(
        rules: &[TrieRule],
        exact_allows: &[u32],
        region: CopyRegion,
    ) -> Result<Self, TrieError> {
        if rules.len() > region.rule_capacity as usize {
            return Err(TrieError::TooManyRules {
                count: rules.len(),
                capacity: region.rule_capacity,
            });
        }
        let mut allows = exact_allows.to_vec();
        allows.sort_unstable();
        let mut sorted = rules.to_vec();
        sorted.sort_by_key(|r| (r.prefix_len, r.addr));
        for rule in &mut sorted {
            let last = rule.addr | (u32::MAX >> rule.prefix_len.min(31));
            let first_inside = allows.partition_point(|a| *a < rule.addr);
            let inside = allows.get(first_inside).is_some_and(|a| *a <= last);
            rule.entry.flags &= !FLAG_EXACT_ALLOW_INSIDE;
            if inside {
                rule.entry.flags |= FLAG_EXACT_ALLOW_INSIDE;
            }
        }
        for pair in sorted.windows(2) {
            if (pair[0].prefix_len, pair[0].addr) == (pair[1].prefix_len, pair[1].addr) {
                return Err(TrieError::Duplicate {
                    addr: pair[0].addr,
                    len: pair[0].prefix_len,
                });
            }
        }
        let mut layout = TrieLayout {
            root: vec![0; 1 << ROOT_BITS],
            nodes: Vec::new(),
            rules: sorted,
            region,
        };
        for i in 0..layout.rules.len() {
            layout.insert(i)?;
        }
        Ok(layout)
    }

    fn insert(&mut self, i: usize) -> Result<(), TrieError> {
        let TrieRule {
            addr, prefix_len, ..
        } = self.rules[i];
        let len = prefix_len;
        if !(1..=31).contains(&len) || addr & (u32::MAX >> len) != 0 {
            return Err(TrieError::BadPrefix { addr, len });
        }
        let slot_value = self.region.rule_base + i as u32 + 1;
        if len <= ROOT_BITS {
            let first = (addr >> ROOT_BITS) as usize;
            let count = 1usize << (ROOT_BITS - len);
            for s in first..first + count {
                self.root[s] = self.pick(self.root[s], slot_value);
            }
            return Ok(());
        }
        let mut node = self.split_root((addr >> ROOT_BITS) as usize)?;
        let mut depth = ROOT_BITS;
        loop {
            let shift = 32 - depth - NODE_BITS;
            let nibble = ((addr >> shift) as usize) & (NODE_SLOTS - 1);
            if len <= depth + NODE_BITS {
                let count = 1usize << (depth + NODE_BITS - len);
                for s in nibble..nibble + count {
                    let current = self.nodes[node][s];
                    self.nodes[node][s] = self.pick(current, slot_value);
                }
                return Ok(());
            }
            node = self.split_node(node, nibble)?;
            depth += NODE_BITS;
        }
    }

    /// The slot value that should hold addresses covered by `current` and by the
    /// rule in `candidate`.
    fn pick(&self, current: u32, candidate: u32) -> u32 {
        debug_assert!(
            current & SLOT_NODE == 0,
            "shorter prefixes are inserted first"
        );
        if current == 0 {
            return candidate;
        }
        let rule = |slot: u32| &self.rules[(slot - self.region.rule_base - 1) as usize].entry;
        if wins_over(rule(candidate), rule(current)) {
            candidate
        } else {
            current
        }
    }

    fn alloc_node(&mut self, inherited: u32) -> Result<u32, TrieError> {
        if self.nodes.len() >= self.region.node_capacity as usize {
            return Err(TrieError::TooManyNodes {
                capacity: self.region.node_capacity,
            });
        }
        self.nodes.push([inherited; NODE_SLOTS]);
        Ok(SLOT_NODE | (self.region.node_base + self.nodes.len() as u32 - 1))
    }

    fn local(&self, slot: u32) -> usize {
        ((slot & !SLOT_NODE) - self.region.node_base) as usize
    }

    fn split_root(&mut self, s: usize) -> Result<usize, TrieError> {
        if self.root[s] & SLOT_NODE == 0 {
            self.root[s] = self.alloc_node(self.root[s])?;
        }
        Ok(self.local(self.root[s]))
    }

    fn split_node(&mut self, node: usize, s: usize) -> Result<usize, TrieError> {
        if self.nodes[node][s] & SLOT_NODE == 0 {
            self.nodes[node][s] = self.alloc_node(self.nodes[node][s])?;
        }
        Ok(self.local(self.nodes[node][s]))
    }

    /// The rule that decides `addr` (host byte order), walking the trie exactly as
    /// the XDP program does.
    pub fn lookup(&self, addr: u32) -> Option<&TrieRule> {
        let mut slot = self.root[(addr >> ROOT_BITS) as usize];
        let mut shift = 32 - ROOT_BITS;
        loop {
            if slot == 0 {
                return None;
            }
            if slot & SLOT_NODE == 0 {
                return self.rules.get((slot - self.region.rule_base - 1) as usize);
            }
            shift -= NODE_BITS;
            let node = &self.nodes[self.local(slot)];
            slot = node[((addr >> shift) as usize) & (NODE_SLOTS - 1)];
        }
    }
}

#[cfg(test)]
mod tests {
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

    /// Verdict by brute force over every rule: the reference the trie must match.
    fn brute(rules: &[TrieRule], addr: u32, now: u64) -> Option<bool> {
        let covering = rules.iter().filter(|r| {
            let mask = u32::MAX << (32 - r.prefix_len);
            addr & mask == r.addr
        });
        let merged = covering.fold(ListEntry::default(), |acc, r| merge(&acc, &r.entry));
        verdict_at(&merged, now)
    }

    fn trie_verdict(t: &TrieLayout, addr: u32, now: u64) -> Option<bool> {
        t.lookup(addr).and_then(|r| verdict_at(&r.entry, now))
    }

    #[test]
    fn empty_trie_matches_nothing() {
        let t = TrieLayout::build(&[], &[], REGION).unwrap();
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
            TrieError::TooManyNodes { capacity: 3 }
        );
        let two = [
            rule("10.0.0.0/8", FLAG_BLOCK, 0),
            rule("11.0.0.0/8", FLAG_BLOCK, 0),
        ];
        assert!(matches!(
            TrieLayout::build(&two, &[], small),
            Err(TrieError::TooManyRules {
                count: 2,
                capacity: 1
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
        let t = TrieLayout::build(&rules, &[ip("10.1.255.255"), ip("11.0.0.0")], REGION).unwrap();
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
        (0u32..4, any::<u32>(), 1u32..=31, 0u32..3, 0u64..4).prop_map(
            |(top, bits, len, kind, exp)| {
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
            },
        )
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
}
