//! The IPv4 prefix trie in the maps: the inactive copy is rebuilt from the full
//! rule set and then made live with one write to `ES_CONTROL`.

use ensuresec_common::{
    maps::{Control, TrieRule},
    trie4::{Node, ROOT_BLOCK_SLOTS, ROOT_BLOCKS, RootBlock},
    trie4_build::{CopyRegion, TrieError, TrieLayout},
};

use super::{Store, Writer};
use crate::error::{Error, Result};

/// What to write back to undo a flip.
pub struct Flip {
    pub previous: Control,
}

impl Store {
    fn region(&self, copy: u32) -> CopyRegion {
        CopyRegion {
            node_base: copy * self.capacities.trie4_nodes,
            node_capacity: self.capacities.trie4_nodes,
            rule_base: copy * self.capacities.cidr_v4,
            rule_capacity: self.capacities.cidr_v4,
        }
    }

    /// The rules of the live copy.
    pub fn trie4_rules(&self) -> Result<Vec<TrieRule>> {
        let control = self.control()?;
        let copy = control.trie_copy & 1;
        let base = copy * self.capacities.cidr_v4;
        let count = control.trie_rules[copy as usize];
        if count as usize > 2048 {
            let all: Vec<(u32, TrieRule)> = self.trie_rules.dump()?;
            return Ok(all
                .into_iter()
                .filter(|(k, _)| (base..base + count).contains(k))
                .map(|(_, v)| v)
                .collect());
        }
        (base..base + count)
            .map(|i| {
                self.trie_rules
                    .get::<u32, TrieRule>(&i)?
                    .ok_or_else(|| Error::map(self.trie_rules.name, format!("rule {i} missing")))
            })
            .collect()
    }

    /// Lays `rules` out for the inactive copy; fails if they do not fit.
    pub fn plan_trie4(&self, rules: &[TrieRule], exact_allows: &[u32]) -> Result<TrieLayout> {
        let next = 1 - (self.control()?.trie_copy & 1);
        TrieLayout::build(rules, exact_allows, self.region(next)).map_err(|e| match e {
            TrieError::TooManyRules { count, capacity } => Error::Capacity {
                what: "the IPv4 prefix list",
                need: count,
                capacity,
                setting: "maps.cidr_v4",
            },
            other => other.into(),
        })
    }
}

impl Writer<'_> {
    /// Writes a planned layout into the inactive copy and makes it live.
    pub fn install_trie4(&self, layout: &TrieLayout) -> Result<Flip> {
        let previous = self.control()?;
        let next = 1 - (previous.trie_copy & 1);
        if layout.region != self.region(next) {
            return Err(Error::map(
                self.trie_rules.name,
                "trie planned for the live copy",
            ));
        }
        self.write_copy(next, layout)?;
        let mut control = previous;
        control.trie_copy = next;
        control.trie_rules[next as usize] = layout.rules.len() as u32;
        control.trie_nodes[next as usize] = layout.nodes.len() as u32;
        self.set_control(&control)?;
        Ok(Flip { previous })
    }

    /// Makes the previous copy live again; it was left untouched by the flip.
    pub fn undo_trie4(&self, flip: &Flip) {
        if let Err(e) = self.set_control(&flip.previous) {
            tracing::error!(error = %e, "could not restore the previous IPv4 prefix trie");
        }
    }

    fn write_copy(&self, copy: u32, layout: &TrieLayout) -> Result<()> {
        let root_keys: Vec<u32> = (0..ROOT_BLOCKS).map(|b| copy * ROOT_BLOCKS + b).collect();
        let root_values: Vec<RootBlock> = layout
            .root
            .chunks(ROOT_BLOCK_SLOTS)
            .map(|c| c.try_into().expect("root is 256 blocks of 256 slots"))
            .collect();
        let region = layout.region;
        let node_keys: Vec<u32> = (0..layout.nodes.len() as u32)
            .map(|i| region.node_base + i)
            .collect();
        let rule_keys: Vec<u32> = (0..layout.rules.len() as u32)
            .map(|i| region.rule_base + i)
            .collect();
        // Rules and nodes first: nothing live points at this copy yet, and the root
        // is what makes them reachable once the copy flips.
        write(&self.trie_rules, &rule_keys, &layout.rules)?;
        write::<Node>(&self.trie_nodes, &node_keys, &layout.nodes)?;
        write(&self.trie_root, &root_keys, &root_values)
    }
}

fn write<V: aya::Pod>(map: &super::RawMap, keys: &[u32], values: &[V]) -> Result<()> {
    map.update_batch(keys, values)
        .map_err(|p| Error::map(map.name, p.error))
}
