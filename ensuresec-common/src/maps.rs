//! Map sizes and the `#[repr(C)]` values stored in them (the maps' names,
//! kinds and slots are in `contract`).

pub use crate::contract::*;

/// Default capacities (the config can raise or lower them before the maps exist).
pub const DEFAULT_EXACT_V4: u32 = 1 << 20;
pub const DEFAULT_EXACT_V6: u32 = 1 << 18;
pub const DEFAULT_CIDR_V4: u32 = 1 << 16;
pub const DEFAULT_CIDR_V6: u32 = 1 << 16;
pub const DEFAULT_REASONS: u32 = 1 << 14;
/// Slots (per CPU) of the source and destination feature tables.
pub const DEFAULT_SOURCES: u32 = 1 << 16;
pub const DEFAULT_DESTS: u32 = 1 << 12;
/// Doorkeeper buckets per CPU (`features::door`): 256 KiB, to stay in L2.
pub const DEFAULT_DOOR_BUCKETS: u32 = 1 << 12;
pub const DEFAULT_THROTTLES: u32 = 1 << 14;
pub const DEFAULT_BUDGETS: u32 = 1 << 10;
pub const DEFAULT_DECISIONS: u32 = 1 << 16;
pub const DEFAULT_EVENTS_BYTES: u32 = 4 << 20;
pub const MAX_IFACES: u32 = 256;
/// Datagrams whose first fragment passed, remembered at once.
pub const DEFAULT_FRAGS: u32 = 1 << 14;
/// How long the rest of a fragmented datagram may follow its first fragment
/// (Linux's own reassembly timeout, `ipfrag_time`).
pub const FRAG_TTL_NS: u64 = 30_000_000_000;

/// A fragmented datagram: its addresses, IP identification and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    pub src: crate::features::AddrKey,
    pub dst: crate::features::AddrKey,
    pub id: u32,
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// The entry grants an allowlist pass.
pub const FLAG_ALLOW: u32 = 1;
/// The operator blocks the entry until `expires_at_ns` (0: forever).
pub const FLAG_BLOCK: u32 = 1 << 1;
/// The allowlist flag comes from the config file, which owns it.
pub const FLAG_ALLOW_FROM_CONFIG: u32 = 1 << 2;
/// On an IPv4 prefix rule: some exact allowlist entry lies inside the prefix, so
/// a block by this rule must still consult the exact table. Without it the XDP
/// program drops on the prefix alone. Set by the trie builder, never stored by
/// operators.
pub const FLAG_EXACT_ALLOW_INSIDE: u32 = 1 << 3;

/// The agent bans the entry until `ban_expires_at_ns`: its own part, which it
/// may lift, apart from the operator's block, which it never touches.
pub const FLAG_BAN: u32 = 1 << 4;
/// Either owner's block.
pub const FLAGS_BLOCKING: u32 = FLAG_BLOCK | FLAG_BAN;

/// Longest reason text stored in `ES_REASONS`.
pub const REASON_TEXT_MAX: usize = 63;

/// Value of the exact-address maps. Who blocks is explicit: the operator's
/// block (`FLAG_BLOCK`, `expires_at_ns`) and the agent's ban (`FLAG_BAN`,
/// `ban_expires_at_ns`) are two parts with their own expiry; the address is
/// dropped while either holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListEntry {
    /// `CLOCK_MONOTONIC` nanoseconds after which the operator's block stops
    /// applying; 0 never expires.
    pub expires_at_ns: u64,
    /// The same for the agent's ban.
    pub ban_expires_at_ns: u64,
    /// Wall-clock seconds since the Unix epoch when the entry was added (display only).
    pub added_at_secs: u64,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Index into `ES_REASONS` of the operator's reason, 0 for none.
    pub reason_id: u32,
}

const fn live(expires_at_ns: u64, now_ns: u64) -> bool {
    expires_at_ns == 0 || expires_at_ns > now_ns
}

impl ListEntry {
    /// Whether a block in this entry still applies at `now_ns` (`CLOCK_MONOTONIC`).
    #[inline(always)]
    pub fn blocks_at(&self, now_ns: u64) -> bool {
        (self.flags & FLAG_BLOCK != 0 && live(self.expires_at_ns, now_ns))
            || (self.flags & FLAG_BAN != 0 && live(self.ban_expires_at_ns, now_ns))
    }

    /// Whether a part (the operator's block or the agent's ban) has expired
    /// and awaits the sweep.
    pub fn has_expired_part(&self, now_ns: u64) -> bool {
        (self.flags & FLAG_BLOCK != 0 && !live(self.expires_at_ns, now_ns))
            || (self.flags & FLAG_BAN != 0 && !live(self.ban_expires_at_ns, now_ns))
    }

    /// When the entry stops blocking: the later of its parts' expiries,
    /// `Some(0)` for never, `None` when it does not block. (Plain branches:
    /// the XDP program calls it.)
    #[inline(always)]
    pub fn block_ends_ns(&self) -> Option<u64> {
        let block = self.flags & FLAG_BLOCK != 0;
        let ban = self.flags & FLAG_BAN != 0;
        match (block, ban) {
            (false, false) => None,
            (true, false) => Some(self.expires_at_ns),
            (false, true) => Some(self.ban_expires_at_ns),
            (true, true) if self.expires_at_ns == 0 || self.ban_expires_at_ns == 0 => Some(0),
            (true, true) => Some(self.expires_at_ns.max(self.ban_expires_at_ns)),
        }
    }
}

/// An IPv4 prefix rule referenced from the trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrieRule {
    pub entry: ListEntry,
    /// Network address, host byte order.
    pub addr: u32,
    pub prefix_len: u32,
}

/// A path-compressed stretch of the IPv6 trie: where only one rule lies below
/// a slot, the slot names this leaf, and the address is checked against the
/// rule whole instead of walked down nodes that hold nothing else.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrieLeaf {
    /// The rule's network and mask as four words, most significant first
    /// (host byte order).
    pub bits: [u32; 4],
    pub mask: [u32; 4],
    /// The slot value for addresses inside the rule, and for the others.
    pub on_match: u32,
    pub otherwise: u32,
}

impl TrieLeaf {
    #[inline(always)]
    pub fn slot_for(&self, words: &[u32; 4]) -> u32 {
        let inside = (words[0] & self.mask[0] == self.bits[0])
            & (words[1] & self.mask[1] == self.bits[1])
            & (words[2] & self.mask[2] == self.bits[2])
            & (words[3] & self.mask[3] == self.bits[3]);
        if inside {
            self.on_match
        } else {
            self.otherwise
        }
    }
}

/// An IPv6 prefix rule referenced from the IPv6 trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrieRule6 {
    pub entry: ListEntry,
    /// Network address, network byte order.
    pub addr: [u8; 16],
    pub prefix_len: u32,
    pub _pad: u32,
}

/// The single record of `ES_CONTROL`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Live copy (0 or 1) of the IPv4 trie maps.
    pub trie_copy: u32,
    /// Non-zero: TCP/UDP destination ports outside the live bitmaps are dropped.
    pub port_policy_enabled: u32,
    /// Live copy (0 or 1) of the port bitmaps.
    pub ports_copy: u32,
    /// Layout version of the pinned maps, checked before reuse.
    pub layout_version: u32,
    /// Rules held by each trie copy (user space only; the kernel follows slots).
    pub trie_rules: [u32; 2],
    /// Nodes used by each trie copy (user space only).
    pub trie_nodes: [u32; 2],
    /// Hash seeds of the exact tables, random per installation.
    pub x4_seed: u64,
    pub x6_seed: u64,
    /// Bucket count minus one of the exact tables (a power of two minus one).
    pub x4_mask: u32,
    pub x6_mask: u32,
    /// Entries the exact tables may hold (user space only; at most half the slots).
    pub x4_capacity: u32,
    pub x6_capacity: u32,
    /// Entries in `ES_THROTTLE` and `ES_BUDGET`; zero skips their lookups.
    pub throttles: u32,
    pub budgets: u32,
    /// Bumped by every change to the lists (user space only), so that a
    /// reader can tell whether what it cached is still current.
    pub generation: u32,
    /// Keys in the exact tables (user space only; the sweep corrects them).
    pub x4_used: u32,
    pub x6_used: u32,
    /// Live copy (0 or 1) of the IPv6 trie maps.
    pub trie6_copy: u32,
    /// Rules and nodes held by each IPv6 trie copy (user space only).
    pub trie6_rules: [u32; 2],
    pub trie6_nodes: [u32; 2],
}

/// Bumped whenever a pinned map's key or value layout changes.
pub const LAYOUT_VERSION: u32 = 14;

/// Destinations whose dropped packets are counted (`ES_DROPS`, LRU).
pub const DEFAULT_DROP_DESTS: u32 = 1 << 12;
/// One dropped packet in this many, per CPU, is counted per destination
/// (with this weight): a flood's drops cost the per-destination count
/// rarely, and its total stays within this many per CPU.
pub const DROP_SAMPLE: u64 = 64;

/// Packets dropped on their way to one destination, and new TCP
/// connections (SYNs) among them; sampled, see `DROP_SAMPLE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCount {
    pub packets: u64,
    pub syns: u64,
}

/// Per-reason packet and byte counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// An interned reason text.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasonText {
    pub len: u8,
    pub text: [u8; REASON_TEXT_MAX],
}

impl Default for ReasonText {
    fn default() -> Self {
        Self {
            len: 0,
            text: [0; REASON_TEXT_MAX],
        }
    }
}

/// Attachment record of one interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceRecord {
    pub name: [u8; 16],
    /// 1 native (driver), 2 generic (skb).
    pub mode: u32,
    pub _pad: u32,
    pub attached_at_secs: u64,
}

pub const MODE_NATIVE: u32 = 1;
pub const MODE_GENERIC: u32 = 2;

/// Port bitmap: one bit per port, 65536 bits.
pub const PORT_WORDS: usize = 1024;
pub type PortBitmap = [u64; PORT_WORDS];

/// Parameters of the random-source benchmark programs: each run overwrites the
/// IPv4 source at `src_offset` with `addr | (random & host_mask)` taken from a
/// random one of the first `count` rows of `ES_BENCH_SRC`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchParams {
    pub count: u32,
    pub src_offset: u32,
}

/// A row of `ES_BENCH_SRC`: address and host mask, both in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchSource {
    pub addr_be: u32,
    pub host_mask_be: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for ListEntry {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for TrieRule {}
    unsafe impl aya::Pod for TrieRule6 {}
    unsafe impl aya::Pod for TrieLeaf {}
    unsafe impl aya::Pod for Control {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for DropCount {}
    unsafe impl aya::Pod for ReasonText {}
    unsafe impl aya::Pod for IfaceRecord {}
    unsafe impl aya::Pod for BenchParams {}
    unsafe impl aya::Pod for BenchSource {}
    unsafe impl aya::Pod for crate::features::SourceStats {}
    unsafe impl aya::Pod for crate::features::SourceSlot {}
    unsafe impl aya::Pod for crate::features::Horizon {}
    unsafe impl aya::Pod for crate::features::DestSlot {}
    unsafe impl aya::Pod for crate::features::DestStats {}
    unsafe impl aya::Pod for crate::features::DestKey {}
    unsafe impl aya::Pod for crate::features::AddrKey {}
    unsafe impl aya::Pod for crate::features::DetectConfig {}
    unsafe impl aya::Pod for crate::features::Event {}
    unsafe impl aya::Pod for crate::features::Throttle {}
    unsafe impl aya::Pod for crate::features::Bucket {}
}
