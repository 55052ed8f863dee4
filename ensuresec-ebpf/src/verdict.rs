//! The verdict: allowlist → pass, live block → drop, port policy → drop, else pass.

use aya_ebpf::maps::lpm_trie::Key;
use ensuresec_common::{
    exact::{WAYS_V4, WAYS_V6, buckets_v4, buckets_v6},
    features::AddrKey,
    maps::{
        Control, FLAG_ALLOW, FLAG_BLOCK, FLAG_EXACT_ALLOW_INSIDE, FLAGS_BLOCKING, ListEntry,
        PORT_WORDS, TrieRule, port_slot,
    },
    reason::Reason,
    trie4::{
        NODE_BITS, NODE_LEVELS, NODE_SLOTS, ROOT_BITS, ROOT_BLOCK_SLOTS, ROOT_BLOCKS, SLOT_NODE,
    },
};

use crate::{
    clock, frags,
    maps::{
        ES_CIDR_V6, ES_CONTROL, ES_PORTS, ES_T4_NODES, ES_T4_ROOT, ES_T4_RULES, ES_X4_KEYS,
        ES_X4_VALS, ES_X6_KEYS, ES_X6_VALS,
    },
    mitigate,
    parse::{Ip, Parsed, Transport},
};

/// The verdict of a prefix match: `FLAG_*` bits and the block's expiry.
/// Plain integers rather than an `Option<ListEntry>` copy, whose padding and
/// `None` payload LLVM may leave uninitialised, which the verifier rejects.
#[derive(Clone, Copy)]
struct PrefixVerdict {
    flags: u32,
    expires_at_ns: u64,
}

const NO_PREFIX: PrefixVerdict = PrefixVerdict {
    flags: 0,
    expires_at_ns: 0,
};

/// Combines an exact entry and a prefix verdict into a list reason.
#[inline(always)]
fn list_reason(exact: Option<&ListEntry>, prefix: PrefixVerdict) -> Option<Reason> {
    let exact_flags = exact.map_or(0, |e| e.flags);
    if (exact_flags | prefix.flags) & FLAG_ALLOW != 0 {
        return Some(Reason::Allowlisted);
    }
    if (exact_flags | prefix.flags) & FLAGS_BLOCKING == 0 {
        return None;
    }
    // Only now is the clock needed: the common "not listed" path never reads it.
    let now = clock::now();
    if exact.is_some_and(|e| e.blocks_at(now)) {
        return Some(Reason::BlockedExact);
    }
    if prefix.flags & FLAG_BLOCK != 0 && (prefix.expires_at_ns == 0 || prefix.expires_at_ns > now) {
        return Some(Reason::BlockedCidr);
    }
    None
}

/// Walks the live copy of the IPv4 trie for `addr` (host byte order).
#[inline(always)]
fn trie4_lookup(control: &Control, addr: u32) -> Option<&'static TrieRule> {
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

/// The exact IPv4 entry for `addr` (network order in memory): two buckets.
#[inline(always)]
fn exact_v4(control: &Control, addr: u32) -> Option<&'static ListEntry> {
    let (first, second) = buckets_v4(addr, control.x4_seed, control.x4_mask);
    for bucket in [first, second] {
        let keys = ES_X4_KEYS.get(bucket)?;
        for (way, key) in keys.iter().enumerate() {
            if *key == addr {
                return ES_X4_VALS.get(bucket * WAYS_V4 as u32 + way as u32);
            }
        }
    }
    None
}

/// The exact IPv6 entry for `addr`.
#[inline(always)]
fn exact_v6(control: &Control, addr: &AddrKey) -> Option<&'static ListEntry> {
    let (first, second) = buckets_v6(addr, control.x6_seed, control.x6_mask);
    for bucket in [first, second] {
        let keys = ES_X6_KEYS.get(bucket)?;
        for (way, key) in keys.iter().enumerate() {
            if key == addr {
                return ES_X6_VALS.get(bucket * WAYS_V6 as u32 + way as u32);
            }
        }
    }
    None
}

#[inline(always)]
fn ipv4_lists(control: &Control, src: u32) -> Option<Reason> {
    // Prefixes first: an allow there wins outright, and a live block with no
    // exact allow inside it drops without touching the exact table, which is
    // the path of every packet from a blocked range during an attack.
    let rule = trie4_lookup(control, u32::from_be(src));
    if let Some(r) = rule {
        let flags = r.entry.flags;
        if flags & FLAG_ALLOW != 0 {
            return Some(Reason::Allowlisted);
        }
        if flags & FLAG_EXACT_ALLOW_INSIDE == 0
            && flags & FLAGS_BLOCKING != 0
            && r.entry.blocks_at(clock::now())
        {
            return Some(Reason::BlockedCidr);
        }
    }
    // The operator's block and the agent's ban as one block until the later
    // of their ends.
    let prefix = rule.map_or(NO_PREFIX, |r| match r.entry.block_ends_ns() {
        Some(end) => PrefixVerdict {
            flags: r.entry.flags | FLAG_BLOCK,
            expires_at_ns: end,
        },
        None => PrefixVerdict {
            flags: r.entry.flags,
            expires_at_ns: 0,
        },
    });
    list_reason(exact_v4(control, src), prefix)
}

#[inline(always)]
fn ipv6_lists(control: &Control, src: &AddrKey) -> Option<Reason> {
    let exact = exact_v6(control, src);
    if exact.is_some_and(|e| e.flags & FLAG_ALLOW != 0) {
        return Some(Reason::Allowlisted);
    }
    let prefix = ES_CIDR_V6
        .get(Key::new(128, src.0))
        .map_or(NO_PREFIX, |v| PrefixVerdict {
            flags: v.effective_flags,
            expires_at_ns: v.effective_expires_at_ns,
        });
    list_reason(exact, prefix)
}

#[inline(always)]
fn port_allowed(control: &Control, udp: bool, port: u16) -> bool {
    let index = port_slot(control.ports_copy, udp);
    match ES_PORTS.get(index) {
        Some(bits) => bits[(port as usize / 64) & (PORT_WORDS - 1)] & (1u64 << (port % 64)) != 0,
        // A missing bitmap cannot happen with a loaded map; never drop because of it.
        None => true,
    }
}

/// The allow and block lists: `Some` decides the packet.
#[inline(always)]
pub fn lists(parsed: &Parsed) -> Option<Reason> {
    let control = ES_CONTROL.get(0)?;
    match parsed.ip.family {
        Ip::V4 => ipv4_lists(control, parsed.ip.src_v4),
        Ip::V6 => ipv6_lists(control, &parsed.ip.src_v6),
        _ => None,
    }
}

/// The agent's throttles and new-connection budgets: the id of the reason
/// that drops the packet, or 0. Without any in force, no call is made (a
/// call costs about 12 ns here).
#[inline(always)]
pub fn mitigations(parsed: &Parsed, classes: u32, cpus: u32, now: u64) -> u32 {
    match ES_CONTROL.get(0) {
        Some(control) if control.throttles != 0 || control.budgets != 0 => {
            enforce_mitigations(control, parsed, classes, cpus, now)
        }
        _ => 0,
    }
}

/// `mitigations` with some in force. A subprogram of its own, so that the
/// keys and buckets it builds stay off its caller's frame (BPF gives a call
/// chain 512 bytes, and the caller's frame is stacked with every other
/// subprogram's).
#[inline(never)]
fn enforce_mitigations(
    control: &Control,
    parsed: &Parsed,
    classes: u32,
    cpus: u32,
    now: u64,
) -> u32 {
    if control.throttles != 0 && !mitigate::throttle_allows(parsed, classes, cpus, now) {
        return Reason::Throttled as u32;
    }
    if control.budgets != 0 && !mitigate::budget_allows(parsed, classes, cpus, now) {
        return Reason::DestBudget as u32;
    }
    0
}

/// What is left after the lists: parse outcome and port policy. With the
/// policy on, a packet whose destination port cannot be read is dropped: a
/// truncated transport header, a later fragment whose first fragment did not
/// pass. First fragments that pass are remembered (also while budgets or
/// throttles are in force: a budget counts a datagram once, and a throttled
/// source's later fragments go the way of their first).
#[inline(always)]
pub fn policy(parsed: &Parsed) -> Reason {
    let Some(control) = ES_CONTROL.get(0) else {
        return parsed.outcome;
    };
    let enabled = control.port_policy_enabled != 0;
    let verdict = if !enabled {
        parsed.outcome
    } else if parsed.is_later_fragment() {
        // The policy is about TCP and UDP ports: other protocols' fragments
        // (GRE, ESP) pass as their datagram's first fragment did.
        if !parsed.has_ports() || frags::datagram_passed(parsed) {
            Reason::Fragment
        } else {
            Reason::OrphanFragment
        }
    } else if parsed.outcome.hides_port() {
        Reason::PortUnreadable
    } else if parsed.outcome != Reason::Passed {
        parsed.outcome
    } else {
        ports(control, parsed)
    };
    let remembered = enabled || control.budgets != 0 || control.throttles != 0;
    if verdict == Reason::Passed && parsed.is_first_fragment() && remembered {
        frags::first_passed(parsed);
    }
    verdict
}

/// The port policy on a packet with readable ports.
#[inline(always)]
fn ports(control: &Control, parsed: &Parsed) -> Reason {
    let t = parsed.transport;
    let udp = match t.kind {
        Transport::TCP => false,
        Transport::UDP => true,
        _ => return Reason::Passed,
    };
    if port_allowed(control, udp, t.dport) {
        Reason::Passed
    } else {
        Reason::PortPolicy
    }
}
