//! The prefix tries (see `ensuresec_common::trie`): the one rule that decides
//! a source address, found with one array lookup per level.

use ensuresec_common::{
    features::AddrKey,
    maps::{Control, TrieRule, TrieRule6},
    trie::{
        NODE_BITS, NODE_LEVELS, NODE_LEVELS_V6, NODE_SLOTS, ROOT_BITS, ROOT_BLOCK_SLOTS,
        ROOT_BLOCKS, SLOT_LEAF, SLOT_NODE,
    },
};

use crate::maps::{
    ES_T4_NODES, ES_T4_ROOT, ES_T4_RULES, ES_T6_LEAVES, ES_T6_NODES, ES_T6_ROOT, ES_T6_RULES,
};

/// Walks the live copy of the IPv4 trie for `addr` (host byte order).
#[inline(always)]
pub fn rule_v4(control: &Control, addr: u32) -> Option<&'static TrieRule> {
    let copy = control.trie_copy & 1;
    let block = ES_T4_ROOT.get(copy * ROOT_BLOCKS + (addr >> 24))?;
    let mut slot = block[((addr >> ROOT_BITS) as usize) & (ROOT_BLOCK_SLOTS - 1)];
    let mut shift = 32 - ROOT_BITS;
    for _ in 0..NODE_LEVELS {
        if slot & SLOT_NODE == 0 {
            break;
        }
        shift -= NODE_BITS;
        let node = ES_T4_NODES.get(slot & !SLOT_NODE)?;
        slot = node[((addr >> shift) as usize) & (NODE_SLOTS - 1)];
    }
    if slot == 0 || slot & SLOT_NODE != 0 {
        return None;
    }
    ES_T4_RULES.get(slot - 1)
}

/// Walks the live copy of the IPv6 trie for `addr`. The walk ends at the
/// first slot that is not a node, so an address off every rule's path costs
/// about what an IPv4 one does; a leaf there checks the one rule below it.
#[inline(always)]
pub fn rule_v6(control: &Control, addr: &AddrKey) -> Option<&'static TrieRule6> {
    let copy = control.trie6_copy & 1;
    let a = &addr.0;
    let words = [
        u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_be_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_be_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_be_bytes([a[12], a[13], a[14], a[15]]),
    ];
    let block = ES_T6_ROOT.get(copy * ROOT_BLOCKS + (words[0] >> 24))?;
    let mut slot = block[((words[0] >> ROOT_BITS) as usize) & (ROOT_BLOCK_SLOTS - 1)];
    let mut depth = ROOT_BITS;
    for _ in 0..NODE_LEVELS_V6 {
        if slot & SLOT_NODE == 0 {
            break;
        }
        // Nibbles never straddle two words: 4 divides 32.
        let word = words[(depth as usize >> 5) & 3];
        let shift = 32 - NODE_BITS - (depth & 31);
        let node = ES_T6_NODES.get(slot & !SLOT_NODE)?;
        slot = node[((word >> shift) as usize) & (NODE_SLOTS - 1)];
        depth += NODE_BITS;
    }
    if slot & SLOT_LEAF != 0 {
        slot = ES_T6_LEAVES.get(slot & !SLOT_LEAF)?.slot_for(&words);
    }
    if slot == 0 || slot & SLOT_NODE != 0 {
        return None;
    }
    ES_T6_RULES.get(slot - 1)
}
