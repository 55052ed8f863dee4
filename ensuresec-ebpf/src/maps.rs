//! Map definitions. Static names are the map names the agent pins and opens
//! (`ensuresec_common::maps::MAP_*`); sizes here are defaults the loader overrides.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use ensuresec_common::{
    exact::{BucketV4, BucketV6, WAYS_V4, WAYS_V6, buckets_for},
    maps::{
        BenchParams, BenchSource, Cidr6Value, Control, Counter, DEFAULT_CIDR_V4, DEFAULT_CIDR_V6,
        DEFAULT_EXACT_V4, DEFAULT_EXACT_V6, DEFAULT_REASONS, IfaceRecord, ListEntry, MAX_IFACES,
        PortBitmap, ReasonText, TrieRule,
    },
    reason::REASON_COUNT,
    trie4::{MAX_NODES_PER_RULE, Node, ROOT_BLOCKS, RootBlock},
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

#[map]
pub static ES_CIDR_V6: LpmTrie<[u8; 16], Cidr6Value> = LpmTrie::pinned(DEFAULT_CIDR_V6, 0);

/// Two copies of the trie root.
#[map]
pub static ES_T4_ROOT: Array<RootBlock> = Array::pinned(2 * ROOT_BLOCKS, 0);

/// Two copies of the trie nodes, sized for the worst case of every rule.
#[map]
pub static ES_T4_NODES: Array<Node> = Array::pinned(2 * MAX_NODES_PER_RULE * DEFAULT_CIDR_V4, 0);

/// Two copies of the IPv4 prefix rules.
#[map]
pub static ES_T4_RULES: Array<TrieRule> = Array::pinned(2 * DEFAULT_CIDR_V4, 0);

#[map]
pub static ES_CONTROL: Array<Control> = Array::pinned(1, 0);

/// [tcp copy 0, udp copy 0, tcp copy 1, udp copy 1].
#[map]
pub static ES_PORTS: Array<PortBitmap> = Array::pinned(4, 0);

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
