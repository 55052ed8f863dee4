//! Dropped packets per destination: what an incident's storefront was
//! spared. Called for one drop in `DROP_SAMPLE` per CPU, so a flood pays
//! for the per-destination count rarely.

use ensuresec_common::maps::{DROP_SAMPLE, DropCount};

use crate::{
    maps::ES_DROPS,
    parse::{Parsed, TCP_ACK, TCP_SYN, Transport},
};

/// A subprogram of its own: its key and value stay off the frame of the
/// program that drops (BPF gives a call chain 512 bytes). Returns 1.
#[inline(never)]
pub fn record(p: &Parsed) -> u32 {
    let key = p.ip.dst_key();
    let syn =
        p.transport.kind == Transport::TCP && p.transport.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let weight = DropCount {
        packets: DROP_SAMPLE,
        syns: if syn { DROP_SAMPLE } else { 0 },
    };
    match ES_DROPS.get_ptr_mut(key) {
        // SAFETY: this CPU's value of a per-CPU map.
        Some(count) => unsafe {
            (*count).packets += weight.packets;
            (*count).syns += weight.syns;
        },
        None => {
            let _ = ES_DROPS.insert(key, weight, 0);
        }
    }
    1
}
