//! Fragmented datagrams: only the first fragment carries ports, so a policy
//! that checks ports remembers the datagrams whose first fragment passed and
//! lets the rest of those through, and nothing else.

use ensuresec_common::maps::{FRAG_TTL_NS, FragKey};

use crate::{
    clock::now,
    maps::{ES_FRAG_KEY, ES_FRAGS},
    parse::Parsed,
};

/// The datagram's key, built in this CPU's scratch slot: the BPF stack (512
/// bytes for the whole call chain) has no room to spare for it.
#[inline(always)]
fn key(p: &Parsed) -> Option<&'static FragKey> {
    let k = ES_FRAG_KEY.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; used before this program returns.
    let k = unsafe { &mut *k };
    k.src = p.ip.src_key();
    k.dst = p.ip.dst_key();
    k.id = p.ip.frag_id;
    k.proto = p.ip.proto;
    k._pad = [0; 3];
    Some(k)
}

/// Remembers that the first fragment `p` passed.
#[inline(always)]
pub fn first_passed(p: &Parsed) {
    if let Some(k) = key(p) {
        let _ = ES_FRAGS.insert(k, now(), 0);
    }
}

/// Whether the later fragment `p` belongs to a datagram whose first fragment
/// passed recently.
#[inline(always)]
pub fn datagram_passed(p: &Parsed) -> bool {
    let Some(k) = key(p) else {
        return false;
    };
    // SAFETY: read-only use of the value.
    match unsafe { ES_FRAGS.get(k) } {
        // Saturating: each CPU reads the coarse clock once a tick (see
        // `clock`), so another CPU's stamp may be a tick ahead of ours.
        Some(at) => now().saturating_sub(*at) < FRAG_TTL_NS,
        None => false,
    }
}
