//! Map definitions. Static names are the map names the agent pins and opens
//! (`ensuresec_common::maps::MAP_*`); sizes here are defaults the loader overrides.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use ensuresec_common::{
    contract::{DST_PORTS_SLOTS, PORT_SLOTS},
    decisions::{DecisionKey, DecisionRecord, Offender},
    exact::{BucketV4, BucketV6, WAYS_V4, WAYS_V6, buckets_for},
    features::{
        AddrKey, Bucket, DestKey, DestSlot, DetectConfig, Horizon, SourceSlot, Throttle,
        door::DoorBucket,
    },
    maps::{
        BenchParams, BenchSource, Control, Counter, DEFAULT_BUDGETS, DEFAULT_CIDR_V4,
        DEFAULT_CIDR_V6, DEFAULT_DECISIONS, DEFAULT_DESTS, DEFAULT_DOOR_BUCKETS,
        DEFAULT_DROP_DESTS, DEFAULT_EVENTS_BYTES, DEFAULT_EXACT_V4, DEFAULT_EXACT_V6,
        DEFAULT_FRAGS, DEFAULT_REASONS, DEFAULT_SOURCES, DEFAULT_THROTTLES, DropCount, EVENT_STATS,
        FragKey, IfaceRecord, ListEntry, MAX_IFACES, PortBitmap, ReasonText, TrieLeaf, TrieRule,
        TrieRule6,
    },
    reason::REASON_COUNT,
    trie::{MAX_NODES_PER_RULE, Node, ROOT_BLOCKS, RootBlock, nodes_v6},
};

/// Exact IPv4 addresses: key buckets and their values (see `ensuresec_common::exact`).
/// Mappable so that user space reads whole tables from memory.
#[map]
pub static ES_X4_KEYS: Array<BucketV4> =
    Array::pinned(buckets_for(DEFAULT_EXACT_V4, WAYS_V4), BPF_F_MMAPABLE);

#[map]
pub static ES_X4_VALS: Array<ListEntry> = Array::pinned(
    buckets_for(DEFAULT_EXACT_V4, WAYS_V4) * WAYS_V4 as u32,
    BPF_F_MMAPABLE,
);

/// Exact IPv6 addresses.
#[map]
pub static ES_X6_KEYS: Array<BucketV6> =
    Array::pinned(buckets_for(DEFAULT_EXACT_V6, WAYS_V6), BPF_F_MMAPABLE);

#[map]
pub static ES_X6_VALS: Array<ListEntry> = Array::pinned(
    buckets_for(DEFAULT_EXACT_V6, WAYS_V6) * WAYS_V6 as u32,
    BPF_F_MMAPABLE,
);

/// Two copies of the trie root.
#[map]
pub static ES_T4_ROOT: Array<RootBlock> = Array::pinned(2 * ROOT_BLOCKS, 0);

/// Two copies of the trie nodes, sized for the worst case of every rule.
#[map]
pub static ES_T4_NODES: Array<Node> = Array::pinned(2 * MAX_NODES_PER_RULE * DEFAULT_CIDR_V4, 0);

/// Two copies of the IPv4 prefix rules.
#[map]
pub static ES_T4_RULES: Array<TrieRule> = Array::pinned(2 * DEFAULT_CIDR_V4, 0);

/// Two copies of the IPv6 trie root.
#[map]
pub static ES_T6_ROOT: Array<RootBlock> = Array::pinned(2 * ROOT_BLOCKS, 0);

/// Two copies of the IPv6 trie nodes (see `trie::nodes_v6`).
#[map]
pub static ES_T6_NODES: Array<Node> = Array::pinned(2 * nodes_v6(DEFAULT_CIDR_V6), 0);

/// Two copies of the IPv6 prefix rules.
#[map]
pub static ES_T6_RULES: Array<TrieRule6> = Array::pinned(2 * DEFAULT_CIDR_V6, 0);

/// Two copies of the IPv6 trie's leaves (at most one per rule).
#[map]
pub static ES_T6_LEAVES: Array<TrieLeaf> = Array::pinned(2 * DEFAULT_CIDR_V6, 0);

#[map]
pub static ES_CONTROL: Array<Control> = Array::pinned(1, 0);

/// At `port_slot(copy, udp)`.
#[map]
pub static ES_PORTS: Array<PortBitmap> = Array::pinned(PORT_SLOTS, 0);

#[map]
pub static ES_COUNTERS: PerCpuArray<Counter> = PerCpuArray::pinned(REASON_COUNT, 0);

/// Only user space reads and writes these two; they are declared here so that
/// every map is created and pinned in one place.
#[map]
pub static ES_REASONS: Array<ReasonText> = Array::pinned(DEFAULT_REASONS, 0);

#[map]
pub static ES_IFACES: HashMap<u32, IfaceRecord> = HashMap::pinned(MAX_IFACES, 0);

/// Benchmark programs only: parameters and the source addresses they draw from.
#[map]
pub static ES_BENCH: Array<BenchParams> = Array::with_max_entries(1, 0);

#[map]
pub static ES_BENCH_SRC: Array<BenchSource> = Array::with_max_entries(1, 0);

/// Per-source features: a per-CPU set-associative cache (see
/// `ensuresec_common::features::SourceSlot`).
#[map]
pub static ES_SOURCES: PerCpuArray<SourceSlot> = PerCpuArray::pinned(DEFAULT_SOURCES, 0);

/// Per-source horizons, at the index of the source's slot in `ES_SOURCES`.
#[map]
pub static ES_HORIZONS: PerCpuArray<Horizon> = PerCpuArray::pinned(DEFAULT_SOURCES, 0);

/// The doorkeeper in front of `ES_SOURCES` (see `ensuresec_common::features::door`).
#[map]
pub static ES_DOOR: PerCpuArray<DoorBucket> = PerCpuArray::pinned(DEFAULT_DOOR_BUCKETS, 0);

/// Per-destination features, a set-associative per-CPU cache as `ES_SOURCES`.
#[map]
pub static ES_DESTS: PerCpuArray<DestSlot> = PerCpuArray::pinned(DEFAULT_DESTS, 0);

/// The filter's parse of the packet, handed to `ensuresec_detect` across the
/// tail call (and read back as one value, for the verifier's sake; see there).
#[map]
pub static ES_PARSED: PerCpuArray<crate::parse::Parsed> = PerCpuArray::with_max_entries(1, 0);

/// `ensuresec_detect`'s packet classes, kept in a map for the same reason:
/// read back, they are one unknown value, not one constant per combination
/// of classes, each of which the verifier would walk the counters with.
#[map]
pub static ES_CLASSES: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's reading of the coarse clock (see `clock`).
#[map]
pub static ES_CLOCK: PerCpuArray<crate::clock::Reading> = PerCpuArray::with_max_entries(1, 0);

/// The slots this CPU counted its last source and destination in (see
/// `features::recent`).
#[map]
pub static ES_RECENT: PerCpuArray<crate::features::Recent> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's random generator's state (see `random`).
#[map]
pub static ES_RANDOM: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// What `features::destination` counts a packet with, off the stack: with
/// the caller's frame, the BPF stack (512 bytes) would not hold it.
#[map]
pub static ES_DEST_PACKET: PerCpuArray<crate::features::DestPacket> =
    PerCpuArray::with_max_entries(1, 0);

/// Destination ports tracked one by one, at `DST_PORTS_TCP`/`DST_PORTS_UDP`.
#[map]
pub static ES_DST_PORTS: Array<PortBitmap> = Array::pinned(DST_PORTS_SLOTS, 0);

#[map]
pub static ES_DETECT: Array<DetectConfig> = Array::pinned(1, 0);

/// Programs `ensuresec` tail-calls: [ensuresec_detect].
#[map]
pub static ES_PROGS: ProgramArray = ProgramArray::pinned(1, 0);

#[map]
pub static ES_EVENTS: RingBuf = RingBuf::pinned(DEFAULT_EVENTS_BYTES, 0);

/// Per CPU, at the `EVENT_STAT_*` slots.
#[map]
pub static ES_EVENT_STATS: PerCpuArray<u64> = PerCpuArray::pinned(EVENT_STATS, 0);

#[map]
pub static ES_THROTTLE: HashMap<AddrKey, Throttle> = HashMap::pinned(DEFAULT_THROTTLES, 0);

#[map]
pub static ES_THROTTLE_ST: LruPerCpuHashMap<AddrKey, Bucket> =
    LruPerCpuHashMap::pinned(DEFAULT_THROTTLES, 0);

#[map]
pub static ES_BUDGET: HashMap<DestKey, Throttle> = HashMap::pinned(DEFAULT_BUDGETS, 0);

#[map]
pub static ES_BUDGET_ST: LruPerCpuHashMap<DestKey, Bucket> =
    LruPerCpuHashMap::pinned(DEFAULT_BUDGETS, 0);

/// Dropped packets per destination, one in `DROP_SAMPLE` per CPU counted.
#[map]
pub static ES_DROPS: LruPerCpuHashMap<AddrKey, DropCount> =
    LruPerCpuHashMap::pinned(DEFAULT_DROP_DESTS, 0);

/// Only user space reads these; declared here so every map is pinned in one place.
#[map]
pub static ES_DECISIONS: HashMap<DecisionKey, DecisionRecord> =
    HashMap::pinned(DEFAULT_DECISIONS, 0);

#[map]
pub static ES_OFFENDERS: LruHashMap<AddrKey, Offender> = LruHashMap::pinned(DEFAULT_DECISIONS, 0);

/// First fragments that passed (shared by every CPU: a NIC may hash a first
/// fragment, which has ports, to another queue than the rest).
#[map]
pub static ES_FRAGS: LruHashMap<FragKey, u64> = LruHashMap::pinned(DEFAULT_FRAGS, 0);

/// Per-CPU scratch room for a `FragKey` (see `frags`).
#[map]
pub static ES_FRAG_KEY: PerCpuArray<FragKey> = PerCpuArray::with_max_entries(1, 0);
