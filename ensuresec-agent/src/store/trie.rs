//! The prefix tries in the maps, IPv4 and IPv6: the inactive copy is rebuilt
//! from the family's full rule set and then made live with one write to
//! `ES_CONTROL`.

use ensuresec_common::{
    maps::{Control, TrieRule, TrieRule6},
    trie::{Node, ROOT_BLOCK_SLOTS, ROOT_BLOCKS, RootBlock},
    trie_build::{CopyRegion, PrefixRule, TrieError, TrieLayout},
};

use super::{RawMap, Store, Writer};
use crate::error::{Error, Result};

/// The maps of one family's trie.
pub struct TrieMaps {
    pub root: RawMap,
    pub nodes: RawMap,
    pub rules: RawMap,
    /// Path-compressed leaves, for a family that has them (IPv6).
    pub leaves: Option<RawMap>,
    /// Rules and nodes per copy.
    pub rule_capacity: u32,
    pub node_capacity: u32,
}

impl TrieMaps {
    pub fn open(
        root: RawMap,
        nodes: RawMap,
        rules: RawMap,
        leaves: Option<RawMap>,
    ) -> Result<Self> {
        let (rule_capacity, node_capacity) = (rules.capacity()? / 2, nodes.capacity()? / 2);
        Ok(TrieMaps {
            root,
            nodes,
            rules,
            leaves,
            rule_capacity,
            node_capacity,
        })
    }

    fn region(&self, copy: u32) -> CopyRegion {
        CopyRegion {
            node_base: copy * self.node_capacity,
            node_capacity: self.node_capacity,
            rule_base: copy * self.rule_capacity,
            rule_capacity: self.rule_capacity,
        }
    }
}

/// A family's rules and where its trie's state lives.
pub trait Family: PrefixRule + aya::Pod {
    /// The setting that sizes the family's prefix list.
    const SETTING: &'static str;
    /// What the list is called in messages.
    const LIST: &'static str;
    fn maps(store: &Store) -> &TrieMaps;
    /// The live copy and the rule count of each copy.
    fn state(control: &Control) -> (u32, [u32; 2]);
    /// Makes `copy` live with `rules` rules and `nodes` nodes.
    fn flip(control: &mut Control, copy: u32, rules: u32, nodes: u32);
}

impl Family for TrieRule {
    const SETTING: &'static str = "maps.cidr_v4";
    const LIST: &'static str = "the IPv4 prefix list";
    fn maps(store: &Store) -> &TrieMaps {
        &store.trie4
    }
    fn state(control: &Control) -> (u32, [u32; 2]) {
        (control.trie_copy & 1, control.trie_rules)
    }
    fn flip(control: &mut Control, copy: u32, rules: u32, nodes: u32) {
        control.trie_copy = copy;
        control.trie_rules[copy as usize] = rules;
        control.trie_nodes[copy as usize] = nodes;
    }
}

impl Family for TrieRule6 {
    const SETTING: &'static str = "maps.cidr_v6";
    const LIST: &'static str = "the IPv6 prefix list";
    fn maps(store: &Store) -> &TrieMaps {
        &store.trie6
    }
    fn state(control: &Control) -> (u32, [u32; 2]) {
        (control.trie6_copy & 1, control.trie6_rules)
    }
    fn flip(control: &mut Control, copy: u32, rules: u32, nodes: u32) {
        control.trie6_copy = copy;
        control.trie6_rules[copy as usize] = rules;
        control.trie6_nodes[copy as usize] = nodes;
    }
}

/// What to write back to undo a flip.
pub struct Flip {
    pub previous: Control,
}

impl Store {
    /// The rules of the family's live copy.
    pub fn trie_rules<R: Family>(&self) -> Result<Vec<R>> {
        let (copy, counts) = R::state(&self.control()?);
        let maps = R::maps(self);
        let base = copy * maps.rule_capacity;
        let count = counts[copy as usize];
        if count as usize > 2048 {
            let all: Vec<(u32, R)> = maps.rules.dump()?;
            return Ok(all
                .into_iter()
                .filter(|(k, _)| (base..base + count).contains(k))
                .map(|(_, v)| v)
                .collect());
        }
        (base..base + count)
            .map(|i| {
                maps.rules
                    .get::<u32, R>(&i)?
                    .ok_or_else(|| Error::map(maps.rules.name, format!("rule {i} missing")))
            })
            .collect()
    }

    /// Lays `rules` out for the family's inactive copy; fails if they do not
    /// fit. `exact_allows` are the family's exact allows, aligned to the left.
    pub fn plan_trie<R: Family>(
        &self,
        rules: &[R],
        exact_allows: &[u128],
    ) -> Result<TrieLayout<R>> {
        let next = 1 - R::state(&self.control()?).0;
        let region = R::maps(self).region(next);
        TrieLayout::build(rules, exact_allows, region).map_err(|e| match e {
            TrieError::TooManyRules {
                count, capacity, ..
            } => Error::Capacity {
                what: R::LIST,
                need: count,
                capacity,
                setting: R::SETTING,
            },
            TrieError::TooManyNodes { capacity, .. } => Error::TrieNodes {
                what: R::LIST,
                capacity,
                setting: R::SETTING,
            },
            other => other.into(),
        })
    }
}

impl Writer<'_> {
    /// Writes a planned layout into the family's inactive copy and makes it live.
    pub fn install_trie<R: Family>(&self, layout: &TrieLayout<R>) -> Result<Flip> {
        let previous = self.control()?;
        let next = 1 - R::state(&previous).0;
        let maps = R::maps(self);
        if layout.region != maps.region(next) {
            return Err(Error::map(
                maps.rules.name,
                "trie planned for the live copy",
            ));
        }
        write_copy(maps, next, layout)?;
        let mut control = previous;
        R::flip(
            &mut control,
            next,
            layout.rules.len() as u32,
            layout.nodes.len() as u32,
        );
        self.set_control(&control)?;
        Ok(Flip { previous })
    }

    /// Makes the previous copy live again; it was left untouched by the flip.
    pub fn undo_trie(&self, flip: &Flip) {
        if let Err(e) = self.set_control(&flip.previous) {
            tracing::error!(error = %e, "could not restore the previous prefix trie");
        }
    }
}

fn write_copy<R: Family>(maps: &TrieMaps, copy: u32, layout: &TrieLayout<R>) -> Result<()> {
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
    // Rules, leaves and nodes first: nothing live points at this copy yet,
    // and the root is what makes them reachable once the copy flips.
    write(&maps.rules, &rule_keys, &layout.rules)?;
    match &maps.leaves {
        Some(leaves) => write(leaves, &rule_keys[..layout.leaves.len()], &layout.leaves)?,
        None if !layout.leaves.is_empty() => {
            return Err(Error::map(
                maps.rules.name,
                "leaves for a trie without a map for them",
            ));
        }
        None => {}
    }
    write::<Node>(&maps.nodes, &node_keys, &layout.nodes)?;
    write(&maps.root, &root_keys, &root_values)
}

fn write<V: aya::Pod>(map: &RawMap, keys: &[u32], values: &[V]) -> Result<()> {
    map.update_batch(keys, values)
        .map_err(|p| Error::map(map.name, p.error))
}
