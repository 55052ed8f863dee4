//! The allow and block lists: an allowlisted source passes, a live block
//! drops; exact addresses in the cuckoo tables, prefixes in the tries.

use ensuresec_common::{
    exact::{WAYS_V4, WAYS_V6, buckets_v4, buckets_v6},
    features::AddrKey,
    maps::{Control, FLAG_ALLOW, FLAG_BLOCK, FLAG_EXACT_ALLOW_INSIDE, FLAGS_BLOCKING, ListEntry},
    reason::Reason,
};

use crate::{
    clock,
    maps::{ES_CONTROL, ES_X4_KEYS, ES_X4_VALS, ES_X6_KEYS, ES_X6_VALS},
    parse::{Ip, Parsed},
    tries,
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

/// The prefix rule first: an allow there wins outright, and a live block
/// with no exact allow inside it drops without touching the exact table,
/// which is the path of every packet from a blocked range during an attack.
/// Otherwise the exact entry and the rule decide together.
#[inline(always)]
fn decide(
    rule: Option<&ListEntry>,
    exact: impl FnOnce() -> Option<&'static ListEntry>,
) -> Option<Reason> {
    if let Some(r) = rule {
        let flags = r.flags;
        if flags & FLAG_ALLOW != 0 {
            return Some(Reason::Allowlisted);
        }
        if flags & FLAG_EXACT_ALLOW_INSIDE == 0
            && flags & FLAGS_BLOCKING != 0
            && r.blocks_at(clock::now())
        {
            return Some(Reason::BlockedCidr);
        }
    }
    // The operator's block and the agent's ban as one block until the later
    // of their ends.
    let prefix = rule.map_or(NO_PREFIX, |r| match r.block_ends_ns() {
        Some(end) => PrefixVerdict {
            flags: r.flags | FLAG_BLOCK,
            expires_at_ns: end,
        },
        None => PrefixVerdict {
            flags: r.flags,
            expires_at_ns: 0,
        },
    });
    list_reason(exact(), prefix)
}

/// The allow and block lists: `Some` decides the packet.
#[inline(always)]
pub fn lists(parsed: &Parsed) -> Option<Reason> {
    let control = ES_CONTROL.get(0)?;
    match parsed.ip.family {
        Ip::V4 => {
            let src = parsed.ip.src_v4;
            let rule = tries::rule_v4(control, u32::from_be(src)).map(|r| &r.entry);
            decide(rule, || exact_v4(control, src))
        }
        Ip::V6 => {
            let src = &parsed.ip.src_v6;
            let rule = tries::rule_v6(control, src).map(|r| &r.entry);
            decide(rule, || exact_v6(control, src))
        }
        _ => None,
    }
}
