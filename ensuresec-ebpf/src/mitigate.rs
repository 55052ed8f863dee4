//! The agent's mitigations short of a ban: per-source throttles and
//! per-destination budgets for new TCP connections, as per-CPU token buckets.

use ensuresec_common::features::{Bucket, DestKey, Throttle, class, take_token};

use crate::{
    features, frags,
    maps::{ES_BUDGET, ES_BUDGET_ST, ES_THROTTLE, ES_THROTTLE_ST},
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, Parsed, TCP_ACK, TCP_SYN, Transport},
};

/// This CPU's share of a rate.
#[inline(always)]
fn share(value: u32, cpus: u32) -> u64 {
    (value as u64 / cpus.max(1) as u64).max(1)
}

#[inline(always)]
fn allowed<K>(
    state: &aya_ebpf::maps::LruPerCpuHashMap<K, Bucket>,
    key: &K,
    t: &Throttle,
    cpus: u32,
    now: u64,
) -> bool {
    if t.expires_at_ns != 0 && t.expires_at_ns <= now {
        return true;
    }
    if t.rate_pps == 0 {
        return false;
    }
    let bucket = match state.get_ptr_mut(key) {
        Some(b) => b,
        None => {
            if state.insert(key, Bucket::default(), 0).is_err() {
                return true;
            }
            match state.get_ptr_mut(key) {
                Some(b) => b,
                None => return true,
            }
        }
    };
    // SAFETY: per-CPU value of this CPU.
    take_token(
        unsafe { &mut *bucket },
        share(t.rate_pps, cpus),
        share(t.burst, cpus),
        now,
    )
}

/// Whether a mitigation on the packet's source lets it through: packets of
/// its drop classes never pass, packets of its limit classes within its
/// rate, any other packet of the source always.
#[inline(always)]
pub fn throttle_allows(p: &Parsed, classes: u32, cpus: u32, now: u64) -> bool {
    let key = p.ip.src_key();
    // SAFETY: read-only use of the value.
    let Some(t) = (unsafe { ES_THROTTLE.get(key) }) else {
        return true;
    };
    if t.expires_at_ns != 0 && t.expires_at_ns <= now {
        return true;
    }
    // A later fragment has no class of its own beyond `FRAGMENT`: it goes
    // the way of its datagram's first fragment (reflected answers are large
    // and fragmented).
    if p.is_later_fragment() && p.has_ports() && t.drop_classes | t.limit_classes != 0 {
        return frags::datagram_passed(p);
    }
    if classes & t.drop_classes != 0 {
        return false;
    }
    classes & t.limit_classes == 0 || allowed(&ES_THROTTLE_ST, &key, t, cpus, now)
}

/// Whether a packet fits its destination's budget: new TCP connections (SYN
/// without ACK), any UDP, or any ICMP, keyed like the destination features
/// (untracked ports count as port 0). TCP and UDP whose ports cannot be read
/// count under port 0, except the later fragments of a datagram whose first
/// fragment passed (a datagram counts once). A budget with drop classes is a
/// filter instead: packets of those classes (answers nobody asked for) are
/// dropped, every other packet passes.
#[inline(always)]
pub fn budget_allows(p: &Parsed, classes: u32, cpus: u32, now: u64) -> bool {
    let t = &p.transport;
    let limited = match t.kind {
        Transport::TCP => t.flags & (TCP_SYN | TCP_ACK) == TCP_SYN,
        Transport::UDP => true,
        _ if p.has_ports() => {
            p.outcome.hides_port() || (p.is_later_fragment() && !frags::datagram_passed(p))
        }
        _ => p.ip.proto == IPPROTO_ICMP || p.ip.proto == IPPROTO_ICMPV6,
    };
    // Unsolicited SYN-ACKs are no new connection, but a filter may drop them.
    if !limited && classes & class::SYNACK == 0 {
        return true;
    }
    let key = DestKey::new(p.ip.dst_key(), features::tracked_port(p), p.ip.proto);
    // SAFETY: read-only use of the value.
    match unsafe { ES_BUDGET.get(key) } {
        Some(b) if b.drop_classes != 0 => {
            (b.expires_at_ns != 0 && b.expires_at_ns <= now)
                || if p.is_later_fragment() {
                    // Goes the way of its datagram's first fragment.
                    frags::datagram_passed(p)
                } else {
                    classes & b.drop_classes == 0
                }
        }
        Some(b) if limited => allowed(&ES_BUDGET_ST, &key, b, cpus, now),
        _ => true,
    }
}
