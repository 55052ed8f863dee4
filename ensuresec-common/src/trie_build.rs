//! Builds one copy of a prefix trie (see `trie`) from the full rule set, for
//! IPv4 or IPv6 rules alike: addresses are handled as 128-bit numbers aligned
//! to the left, so an IPv4 address is the top 32 bits.
//!
//! Rules are inserted shortest prefix first, so when a longer rule splits a slot
//! into a node, the node's slots inherit the slot's current winner ("leaf pushing").

use std::net::Ipv6Addr;

pub use crate::trie_rule::PrefixRule;
use crate::{
    maps::{FLAG_EXACT_ALLOW_INSIDE, TrieLeaf, TrieRule, TrieRule6},
    precedence::wins_over,
    trie::{NODE_BITS, NODE_SLOTS, Node, ROOT_BITS, SLOT_LEAF, SLOT_NODE},
};

/// Where one copy starts in the maps and how much room it has. Leaves share
/// the rules' base and capacity (a rule has at most one leaf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyRegion {
    pub node_base: u32,
    pub node_capacity: u32,
    pub rule_base: u32,
    pub rule_capacity: u32,
}

/// One copy of the trie, ready to be written into the maps.
#[derive(Clone, Debug)]
pub struct TrieLayout<R> {
    /// 65536 root slots, indexed by the top 16 address bits.
    pub root: Vec<u32>,
    pub nodes: Vec<Node>,
    /// Rules sorted by (prefix length, address); slot `rule_base + i + 1` is `rules[i]`.
    pub rules: Vec<R>,
    /// Path-compressed leaves (families with `R::COMPRESSED`), at `rule_base + i`.
    pub leaves: Vec<TrieLeaf>,
    pub region: CopyRegion,
    /// While building: per node, how many rules went through or into it, the
    /// last of them and the slot value the node inherited when it was split.
    growth: Vec<Growth>,
}

#[derive(Clone, Copy, Debug)]
struct Growth {
    rules: u32,
    last_rule: u32,
    inherited: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrieError {
    #[error("{count} {family} prefixes exceed the capacity of {capacity}")]
    TooManyRules {
        family: &'static str,
        count: usize,
        capacity: u32,
    },
    #[error("the {family} prefixes need more than {capacity} trie nodes")]
    TooManyNodes { family: &'static str, capacity: u32 },
    #[error(
        "{prefix} is not a prefix the trie holds (no host bits, not the whole family or one address)"
    )]
    BadPrefix { prefix: String },
    #[error("prefix {prefix} appears twice")]
    Duplicate { prefix: String },
}

/// The host bits of a prefix of `len` bits, aligned to the left.
fn host_bits(len: u32) -> u128 {
    u128::MAX.checked_shr(len).unwrap_or(0)
}

/// The last address of a rule, aligned to the left.
fn last_of<R: PrefixRule>(rule: &R) -> u128 {
    rule.bits() | host_bits(rule.prefix_bits())
}

/// Refuses what the trie cannot hold: the whole family, a single address (the
/// exact table's) and host bits.
fn check<R: PrefixRule>(rule: &R) -> Result<(), TrieError> {
    if !(1..R::WIDTH).contains(&rule.prefix_bits())
        || rule.bits() & host_bits(rule.prefix_bits()) != 0
    {
        return Err(TrieError::BadPrefix {
            prefix: rule.show(),
        });
    }
    Ok(())
}

impl<R: PrefixRule> TrieLayout<R> {
    /// Builds a copy holding `rules` (any order, each prefix once).
    /// `exact_allows` are the family's exact allowlist entries (aligned to the
    /// left, any order); rules covering one of them get `FLAG_EXACT_ALLOW_INSIDE`.
    pub fn build(
        rules: &[R],
        exact_allows: &[u128],
        region: CopyRegion,
    ) -> Result<Self, TrieError> {
        if rules.len() > region.rule_capacity as usize {
            return Err(TrieError::TooManyRules {
                family: R::FAMILY,
                count: rules.len(),
                capacity: region.rule_capacity,
            });
        }
        rules.iter().try_for_each(check)?;
        let mut allows = exact_allows.to_vec();
        allows.sort_unstable();
        let mut sorted = rules.to_vec();
        sorted.sort_by_key(|r| (r.prefix_bits(), r.bits()));
        for rule in &mut sorted {
            let last = last_of(rule);
            let first_inside = allows.partition_point(|a| *a < rule.bits());
            let inside = allows.get(first_inside).is_some_and(|a| *a <= last);
            let entry = rule.entry_mut();
            entry.flags &= !FLAG_EXACT_ALLOW_INSIDE;
            if inside {
                entry.flags |= FLAG_EXACT_ALLOW_INSIDE;
            }
        }
        for pair in sorted.windows(2) {
            if (pair[0].prefix_bits(), pair[0].bits()) == (pair[1].prefix_bits(), pair[1].bits()) {
                return Err(TrieError::Duplicate {
                    prefix: pair[0].show(),
                });
            }
        }
        let mut layout = TrieLayout {
            root: vec![0; 1 << ROOT_BITS],
            nodes: Vec::new(),
            rules: sorted,
            leaves: Vec::new(),
            region,
            growth: Vec::new(),
        };
        for i in 0..layout.rules.len() {
            layout.insert(i)?;
        }
        if R::COMPRESSED {
            layout.compress()?;
        }
        layout.growth = Vec::new();
        Ok(layout)
    }

    fn insert(&mut self, i: usize) -> Result<(), TrieError> {
        let rule = self.rules[i];
        let (bits, len) = (rule.bits(), rule.prefix_bits());
        let slot_value = self.region.rule_base + i as u32 + 1;
        if len <= ROOT_BITS {
            let first = (bits >> (128 - ROOT_BITS)) as usize;
            let count = 1usize << (ROOT_BITS - len);
            for s in first..first + count {
                self.root[s] = self.pick(self.root[s], slot_value);
            }
            return Ok(());
        }
        let mut node = self.split_root((bits >> (128 - ROOT_BITS)) as usize)?;
        let mut depth = ROOT_BITS;
        loop {
            let growth = &mut self.growth[node];
            growth.rules += 1;
            growth.last_rule = i as u32;
            let shift = 128 - depth - NODE_BITS;
            let nibble = ((bits >> shift) as usize) & (NODE_SLOTS - 1);
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
        let rule = |slot: u32| self.rules[(slot - self.region.rule_base - 1) as usize].entry();
        if wins_over(rule(candidate), rule(current)) {
            candidate
        } else {
            current
        }
    }

    fn alloc_node(&mut self, inherited: u32) -> Result<u32, TrieError> {
        // A compressed trie is checked once compressed: most of these go.
        if !R::COMPRESSED && self.nodes.len() >= self.region.node_capacity as usize {
            return Err(self.too_many_nodes());
        }
        self.nodes.push([inherited; NODE_SLOTS]);
        self.growth.push(Growth {
            rules: 0,
            last_rule: 0,
            inherited,
        });
        Ok(SLOT_NODE | (self.region.node_base + self.nodes.len() as u32 - 1))
    }

    fn too_many_nodes(&self) -> TrieError {
        TrieError::TooManyNodes {
            family: R::FAMILY,
            capacity: self.region.node_capacity,
        }
    }

    /// Replaces every node below which only one rule lies by a leaf, keeping
    /// the nodes where rules' paths part.
    fn compress(&mut self) -> Result<(), TrieError> {
        let old = std::mem::take(&mut self.nodes);
        for s in 0..self.root.len() {
            self.root[s] = self.relink(self.root[s], &old)?;
        }
        Ok(())
    }

    /// The slot value for `slot` of the uncompressed trie in `old`.
    fn relink(&mut self, slot: u32, old: &[Node]) -> Result<u32, TrieError> {
        if slot & SLOT_NODE == 0 {
            return Ok(slot);
        }
        let n = ((slot & !SLOT_NODE) - self.region.node_base) as usize;
        let growth = self.growth[n];
        if growth.rules == 1 {
            let rule = &self.rules[growth.last_rule as usize];
            let (bits, mask) = (rule.bits(), !host_bits(rule.prefix_bits()));
            let words = |v: u128| {
                [
                    (v >> 96) as u32,
                    (v >> 64) as u32,
                    (v >> 32) as u32,
                    v as u32,
                ]
            };
            let rule_slot = self.region.rule_base + growth.last_rule + 1;
            self.leaves.push(TrieLeaf {
                bits: words(bits),
                mask: words(mask),
                on_match: self.pick(growth.inherited, rule_slot),
                otherwise: growth.inherited,
            });
            return Ok(SLOT_LEAF | (self.region.rule_base + self.leaves.len() as u32 - 1));
        }
        if self.nodes.len() >= self.region.node_capacity as usize {
            return Err(self.too_many_nodes());
        }
        let at = self.nodes.len();
        self.nodes.push(old[n]);
        for k in 0..NODE_SLOTS {
            self.nodes[at][k] = self.relink(old[n][k], old)?;
        }
        Ok(SLOT_NODE | (self.region.node_base + at as u32))
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

    /// The rule that decides `bits` (an address aligned to the left), walking
    /// the trie exactly as the XDP program does.
    pub fn lookup_bits(&self, bits: u128) -> Option<&R> {
        let mut slot = self.root[(bits >> (128 - ROOT_BITS)) as usize];
        let mut shift = 128 - ROOT_BITS;
        loop {
            if slot == 0 {
                return None;
            }
            if slot & SLOT_LEAF != 0 {
                let leaf =
                    &self.leaves[(slot & !SLOT_LEAF) as usize - self.region.rule_base as usize];
                let words = [
                    (bits >> 96) as u32,
                    (bits >> 64) as u32,
                    (bits >> 32) as u32,
                    bits as u32,
                ];
                slot = leaf.slot_for(&words);
                continue;
            }
            if slot & SLOT_NODE == 0 {
                return self.rules.get((slot - self.region.rule_base - 1) as usize);
            }
            shift -= NODE_BITS;
            let node = &self.nodes[self.local(slot)];
            slot = node[((bits >> shift) as usize) & (NODE_SLOTS - 1)];
        }
    }
}

impl TrieLayout<TrieRule> {
    /// The rule that decides the IPv4 address `addr` (host byte order).
    pub fn lookup(&self, addr: u32) -> Option<&TrieRule> {
        self.lookup_bits((addr as u128) << 96)
    }
}

impl TrieLayout<TrieRule6> {
    /// The rule that decides the IPv6 address `addr`.
    pub fn lookup6(&self, addr: Ipv6Addr) -> Option<&TrieRule6> {
        self.lookup_bits(u128::from(addr))
    }
}

#[cfg(test)]
mod tests;
