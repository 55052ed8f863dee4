//! Layout of the prefix tries shared by the XDP program and the agent, one for
//! IPv4 and one for IPv6.
//!
//! A multibit trie with a 16-bit first level and 4-bit levels below it: four for
//! IPv4 (16-4-4-4-4), twenty-eight for IPv6. A lookup is one array lookup per
//! level, which the verifier inlines, and stops at the first slot that is not a
//! node, so its cost follows the depth of the rules on the address's path, not
//! their number the way an LPM trie's does. Rules are "leaf-pushed": each slot
//! names the one rule whose verdict wins for the addresses under it, so the
//! kernel never backtracks.
//!
//! The agent keeps two copies of every trie map and flips the family's copy in
//! `Control` once the inactive copy is fully written, so packets never see a
//! half-built trie.

/// First-level blocks per copy: the root is indexed by the top 16 bits, stored as
/// 256 blocks of 256 slots (index: the top byte, then the next one).
pub const ROOT_BLOCKS: u32 = 256;
/// Slots in a root block.
pub const ROOT_BLOCK_SLOTS: usize = 256;
/// Bits consumed by the root.
pub const ROOT_BITS: u32 = 16;
/// Bits consumed by each node level.
pub const NODE_BITS: u32 = 4;
/// Slots in a node.
pub const NODE_SLOTS: usize = 1 << NODE_BITS;
/// Node levels under the root of the IPv4 trie (16 + 4 * 4 = 32 bits).
pub const NODE_LEVELS: u32 = 4;
/// Node levels under the root of the IPv6 trie (16 + 28 * 4 = 128 bits).
pub const NODE_LEVELS_V6: u32 = 28;

/// A slot with this bit set points at a node (absolute index in the nodes map).
/// Otherwise a non-zero slot is an absolute index in the rules map plus one,
/// and zero means "no prefix covers these addresses".
pub const SLOT_NODE: u32 = 1 << 31;
/// A slot with this bit set names a leaf (absolute index in the leaves map):
/// one rule checked whole, see `maps::TrieLeaf`. IPv6 only.
pub const SLOT_LEAF: u32 = 1 << 30;

pub type RootBlock = [u32; ROOT_BLOCK_SLOTS];
pub type Node = [u32; NODE_SLOTS];

/// Worst-case nodes one IPv4 rule can need (a /29../31 under an empty /16).
pub const MAX_NODES_PER_RULE: u32 = NODE_LEVELS;

/// IPv6 nodes per copy for `rules` rules. Where only one rule lies below a
/// slot, the slot names a leaf instead of a chain of nodes, so nodes are only
/// where rules' paths part: 10,000 random prefixes of /32 to /64 under one /16
/// need 0.39 each. Two per rule plus room for 64 rules' worth of splits
/// keeps the maps small; a set that needs more is refused with the
/// setting to raise.
pub const fn nodes_v6(rules: u32) -> u32 {
    2 * rules + 64 * NODE_LEVELS_V6
}
