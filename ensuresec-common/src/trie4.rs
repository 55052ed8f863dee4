//! Layout of the IPv4 prefix trie shared by the XDP program and the agent.
//!
//! A multibit trie with a 16-bit first level and four 4-bit levels below it
//! (16-4-4-4-4). Every lookup is at most five array lookups, which the verifier
//! inlines, so the cost does not grow with the number of prefixes the way an
//! LPM trie's does. Rules are "leaf-pushed": each slot names the one rule whose
//! verdict wins for the addresses under it, so the kernel never backtracks.
//!
//! The agent keeps two copies of every trie map and flips `Control::trie_copy`
//! once the inactive copy is fully written, so packets never see a half-built trie.

/// First-level blocks per copy: the root is indexed by the top 16 bits, stored as
/// 256 blocks of 256 slots (index `addr >> 24`, then `(addr >> 16) & 0xff`).
pub const ROOT_BLOCKS: u32 = 256;
/// Slots in a root block.
pub const ROOT_BLOCK_SLOTS: usize = 256;
/// Bits consumed by the root.
pub const ROOT_BITS: u32 = 16;
/// Bits consumed by each node level.
pub const NODE_BITS: u32 = 4;
/// Slots in a node.
pub const NODE_SLOTS: usize = 1 << NODE_BITS;
/// Node levels under the root (16 + 4 * 4 = 32 bits).
pub const NODE_LEVELS: u32 = 4;

/// A slot with this bit set points at a node (absolute index in `ES_T4_NODES`).
/// Otherwise a non-zero slot is an absolute index in `ES_T4_RULES` plus one,
/// and zero means "no prefix covers these addresses".
pub const SLOT_NODE: u32 = 1 << 31;

pub type RootBlock = [u32; ROOT_BLOCK_SLOTS];
pub type Node = [u32; NODE_SLOTS];

/// Worst-case nodes one rule can need (a /29../31 under an empty /16).
pub const MAX_NODES_PER_RULE: u32 = NODE_LEVELS;
