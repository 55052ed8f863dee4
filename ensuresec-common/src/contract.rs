//! The contract between the XDP programs and user space, in one table: each
//! pinned map's name, kind, key and value type. The agent checks pinned maps
//! against it before using them; the eBPF crate declares its maps with the
//! same names (`ensuresec-ebpf/src/maps.rs`), and a test there holds the two
//! together. Names are at most 15 bytes: the kernel keeps that many.
//!
//! A change of a key or value type changes a size here: bump
//! `maps::LAYOUT_VERSION` with it (the size asserts below fail until the
//! change is acknowledged).

use core::mem::size_of;

use crate::{
    decisions::{DecisionKey, DecisionRecord, Offender},
    exact::{BucketV4, BucketV6},
    features::{
        AddrKey, Bucket, DestKey, DestSlot, DetectConfig, FirstPacket, Horizon, SourceSlot,
        Throttle, door::DoorBucket,
    },
    maps::{
        Control, Counter, DropCount, FragKey, IfaceRecord, ListEntry, PortBitmap, ReasonText,
        TrieLeaf, TrieRule, TrieRule6,
    },
    trie::{Node, RootBlock},
};

/// The kinds of BPF maps ensuresec uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    Array,
    PerCpuArray,
    Hash,
    LruHash,
    LruPerCpuHash,
    ProgArray,
    RingBuf,
}

/// One pinned map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapContract {
    pub name: &'static str,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
}

macro_rules! contract {
    ($( $(#[$doc:meta])* $konst:ident = $name:literal : $kind:ident<$key:ty, $value:ty>; )*) => {
        $( $(#[$doc])* pub const $konst: &str = $name; )*

        /// Every map that lives under the pin directory.
        pub const PINNED_MAPS: &[MapContract] = &[$(
            MapContract {
                name: $name,
                kind: MapKind::$kind,
                key_size: size_of::<$key>() as u32,
                value_size: size_of::<$value>() as u32,
            },
        )*];
    };
}

contract! {
    /// Exact IPv4 addresses: buckets of keys (see `exact`), the address as
    /// read from the packet (network order in memory).
    MAP_X4_KEYS = "ES_X4_KEYS": Array<u32, BucketV4>;
    /// Values of the IPv4 table, slot `bucket * WAYS_V4 + way`.
    MAP_X4_VALS = "ES_X4_VALS": Array<u32, ListEntry>;
    /// Exact IPv6 addresses: buckets of 16-byte keys.
    MAP_X6_KEYS = "ES_X6_KEYS": Array<u32, BucketV6>;
    /// Values of the IPv6 table, slot `bucket * WAYS_V6 + way`.
    MAP_X6_VALS = "ES_X6_VALS": Array<u32, ListEntry>;
    /// IPv4 prefix trie, first level: two copies of 256 blocks of 256 slots.
    MAP_TRIE4_ROOT = "ES_T4_ROOT": Array<u32, RootBlock>;
    /// IPv4 prefix trie, lower levels: nodes of 16 slots, both copies.
    MAP_TRIE4_NODES = "ES_T4_NODES": Array<u32, Node>;
    /// IPv4 prefix rules referenced by trie slots, both copies.
    MAP_TRIE4_RULES = "ES_T4_RULES": Array<u32, TrieRule>;
    /// IPv6 prefix trie, first level: two copies of 256 blocks of 256 slots.
    MAP_TRIE6_ROOT = "ES_T6_ROOT": Array<u32, RootBlock>;
    /// IPv6 prefix trie, lower levels: nodes of 16 slots, both copies.
    MAP_TRIE6_NODES = "ES_T6_NODES": Array<u32, Node>;
    /// IPv6 prefix rules referenced by trie slots, both copies.
    MAP_TRIE6_RULES = "ES_T6_RULES": Array<u32, TrieRule6>;
    /// IPv6 prefix trie, path-compressed leaves: at most one per rule, both copies.
    MAP_TRIE6_LEAVES = "ES_T6_LEAVES": Array<u32, TrieLeaf>;
    /// One `Control` record: which trie and port-policy copy is live.
    MAP_CONTROL = "ES_CONTROL": Array<u32, Control>;
    /// Port policy bitmaps, at `port_slot(copy, udp)`.
    MAP_PORTS = "ES_PORTS": Array<u32, PortBitmap>;
    /// Per-CPU packet and byte counters indexed by `Reason`.
    MAP_COUNTERS = "ES_COUNTERS": PerCpuArray<u32, Counter>;
    /// Interned reason texts; entry 0 means "no reason".
    MAP_REASONS = "ES_REASONS": Array<u32, ReasonText>;
    /// Interfaces ensuresec is attached to (key: ifindex).
    MAP_IFACES = "ES_IFACES": Hash<u32, IfaceRecord>;
    /// Per-source features, a set-associative per-CPU cache (see `features`).
    MAP_SOURCES = "ES_SOURCES": PerCpuArray<u32, SourceSlot>;
    /// Per-source horizons, at the index of the source's slot in `ES_SOURCES`.
    MAP_HORIZONS = "ES_HORIZONS": PerCpuArray<u32, Horizon>;
    /// The doorkeeper a source passes twice before it gets a slot in
    /// `ES_SOURCES` (see `features::door`).
    MAP_DOOR = "ES_DOOR": PerCpuArray<u32, DoorBucket>;
    /// Per-destination features, a set-associative per-CPU cache as `ES_SOURCES`.
    MAP_DESTS = "ES_DESTS": PerCpuArray<u32, DestSlot>;
    /// Destination ports tracked one by one, at `DST_PORTS_TCP` and
    /// `DST_PORTS_UDP`; the others count as port 0.
    MAP_DST_PORTS = "ES_DST_PORTS": Array<u32, PortBitmap>;
    /// One `DetectConfig`.
    MAP_DETECT = "ES_DETECT": Array<u32, DetectConfig>;
    /// Programs the filter tail-calls, at `PROG_DETECT`.
    MAP_PROGS = "ES_PROGS": ProgArray<u32, u32>;
    /// Ring buffer of `Event`s for the agent.
    MAP_EVENTS = "ES_EVENTS": RingBuf<(), ()>;
    /// Per-CPU event counters, at the `EVENT_STAT_*` slots.
    MAP_EVENT_STATS = "ES_EVENT_STATS": PerCpuArray<u32, u64>;
    /// Throttled sources and their per-CPU token buckets.
    MAP_THROTTLE = "ES_THROTTLE": Hash<AddrKey, Throttle>;
    MAP_THROTTLE_STATE = "ES_THROTTLE_ST": LruPerCpuHash<AddrKey, Bucket>;
    /// New-connection budgets per destination and their per-CPU token buckets.
    MAP_BUDGET = "ES_BUDGET": Hash<DestKey, Throttle>;
    MAP_BUDGET_STATE = "ES_BUDGET_ST": LruPerCpuHash<DestKey, Bucket>;
    /// The agent's automatic decisions (user space only).
    MAP_DECISIONS = "ES_DECISIONS": Hash<DecisionKey, DecisionRecord>;
    /// Repeat offenders and their strikes (user space only).
    MAP_OFFENDERS = "ES_OFFENDERS": LruHash<AddrKey, Offender>;
    /// First fragments that passed, so that the rest of their datagram passes
    /// too (`FragKey` to the monotonic time the first fragment passed).
    MAP_FRAGS = "ES_FRAGS": LruHash<FragKey, u64>;
    /// Dropped packets per destination, sampled (see `DROP_SAMPLE`): what an
    /// incident's storefront was spared.
    MAP_DROPS = "ES_DROPS": LruPerCpuHash<AddrKey, DropCount>;
}

/// Benchmark-only parameters for the random-source programs (never pinned).
pub const MAP_BENCH: &str = "ES_BENCH";
/// Benchmark-only source addresses the random-source programs draw from.
pub const MAP_BENCH_SRC: &str = "ES_BENCH_SRC";

/// `ES_PROGS` slot of the detection program the filter tail-calls.
pub const PROG_DETECT: u32 = 0;

/// `ES_EVENT_STATS` slots: events the ring buffer had no room for, and
/// events sent.
pub const EVENT_STAT_DROPPED: u32 = 0;
pub const EVENT_STAT_SENT: u32 = 1;
pub const EVENT_STATS: u32 = 2;

/// `ES_DST_PORTS` slots.
pub const DST_PORTS_TCP: u32 = 0;
pub const DST_PORTS_UDP: u32 = 1;
pub const DST_PORTS_SLOTS: u32 = 2;

/// `ES_PORTS` slot of the TCP or UDP bitmap of policy copy `copy` (0 or 1).
#[inline(always)]
pub const fn port_slot(copy: u32, udp: bool) -> u32 {
    (copy & 1) * 2 + udp as u32
}
/// `ES_PORTS` slots: two copies of the TCP and UDP bitmaps.
pub const PORT_SLOTS: u32 = 4;

// The layout of every shared value. Changing one is a new layout: bump
// `maps::LAYOUT_VERSION`, then the number here.
const _: () = {
    assert!(size_of::<ListEntry>() == 32);
    assert!(size_of::<TrieRule>() == 40);
    assert!(size_of::<TrieRule6>() == 56);
    assert!(size_of::<TrieLeaf>() == 40);
    assert!(size_of::<Control>() == 104);
    assert!(size_of::<Throttle>() == 24);
    assert!(size_of::<AddrKey>() == 16);
    assert!(size_of::<DecisionKey>() == 24);
    assert!(size_of::<DestKey>() == 24);
    assert!(size_of::<DecisionRecord>() == 96);
    assert!(size_of::<FragKey>() == 40);
    assert!(size_of::<IfaceRecord>() == 32);
    assert!(size_of::<Horizon>() == 144);
    assert!(size_of::<SourceSlot>() == 256);
    assert!(size_of::<FirstPacket>() == 8);
    assert!(size_of::<DetectConfig>() == 80);
    assert!(size_of::<DropCount>() == 16);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_the_kernel() {
        let mut names: Vec<&str> = PINNED_MAPS.iter().map(|m| m.name).collect();
        assert!(names.iter().all(|n| n.len() <= 15), "{names:?}");
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PINNED_MAPS.len());
    }
}
