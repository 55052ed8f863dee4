//! A source's slot in the per-source table and what one packet adds to it.

use ensuresec_common::features::{
    EVENT_SOURCE_TRIP, SourceSlot, SourceStats, TRIP_DSTS, TRIP_PORTS, key_hash, packet_trip,
    set_of_hash,
};

use super::{door::door_passes, horizon::note_first, *};
use crate::maps::ES_SOURCES;

/// Empties a slot for a new source, in place (see `reset`).
#[inline(always)]
fn zero_source(st: &mut SourceStats, now: u64) {
    st.first_seen_ns = now;
    st.last_seen_ns = now;
    st.packets = 0;
    st.bytes = 0;
    st.syn = 0;
    st.synack = 0;
    st.ack_only = 0;
    st.rst = 0;
    st.fin = 0;
    st.udp = 0;
    st.icmp = 0;
    st.frags = 0;
    st.ack_rst = 0;
    st.udp_reflect = 0;
    reset(&mut st.window, 0);
    // The horizon is left alone: it begins with the source's second packet.
}

/// The slot of `key` (of hash `h`) in its set and its index: a hit, else
/// the empty or least recently seen way, reset for `key` (then not `hit`).
#[inline(always)]
fn source_slot(key: &AddrKey, h: u64, now: u64, cfg: &DetectConfig) -> Option<Way<SourceSlot>> {
    let first = set_of_hash(h, cfg.source_mask);
    let way = way_of(
        &ES_SOURCES,
        first,
        |w| w.key == *key,
        |w| w.stats.last_seen_ns,
    )?;
    if !way.hit {
        way.value.key = *key;
        zero_source(&mut way.value.stats, now);
    }
    Some(way)
}

/// Whether the doorkeeper (when there is one) lets the packet's source into
/// the table: a source's first packet stays out of it. Inline, so that a
/// spoofed flood's one-packet sources cost no call.
#[inline(always)]
pub(super) fn admitted(p: &Parsed, now: u64, cfg: &DetectConfig) -> bool {
    cfg.door_mask == 0 || door_passes(key_hash(&p.ip.src_key(), 0, cfg.seed), now, cfg.door_mask)
}

/// Each of `source`, `horizon`, `dest_packet` and `destination` is a BPF
/// subprogram of its own, called one after another: their locals would not
/// fit in one 512-byte frame with the caller's, nor nested. Called for
/// sources the doorkeeper `admitted`; returns the slot's index in the high
/// 32 bits and, in the low ones, `KNOWN` (or, without a doorkeeper, `FRESH`
/// for a source new to the table), `WINDOW_FIRED` and `HEAVY`; 0 outside
/// the table.
#[inline(never)]
pub(super) fn source(p: &Parsed, classes: u32, len: u32, now: u64, cfg: &DetectConfig) -> u64 {
    let src = &p.ip.src_key();
    let h = key_hash(src, 0, cfg.seed);
    let door = cfg.door_mask != 0;
    let s = &Sample::of(classes);
    let Some(Way {
        value: slot,
        index,
        hit,
    }) = source_slot(src, h, now, cfg)
    else {
        return 0;
    };
    let st = &mut slot.stats;
    if !hit {
        note_first(st, p, classes);
    }
    st.last_seen_ns = now;
    st.packets += 1;
    st.bytes += len as u64;
    recent::note_source(index);
    // A flooding source: one packet in eight counts, eightfold (its
    // horizon samples its SYNs on its own, see `horizon_weight`).
    let weight = sample_weight(
        live_packets(&st.window, now, cfg.window_ns),
        draw_of(classes),
    );
    if weight == 0 {
        return ((index as u64) << 32) | (KNOWN | HEAVY) as u64;
    }
    let heavy = HEAVY * (weight != 1) as u32;
    let w64 = weight as u64;
    st.syn += s.syn as u64 * w64;
    st.synack += s.synack as u64 * w64;
    // TCP flags (for ICMP, the same byte holds the type).
    let f = if p.transport.kind == Transport::TCP {
        p.transport.flags
    } else {
        0
    };
    st.ack_only += (f == TCP_ACK) as u64 * w64;
    st.rst += (f & TCP_RST != 0) as u64 * w64;
    st.fin += (f & TCP_FIN != 0) as u64 * w64;
    st.udp += s.udp as u64 * w64;
    st.icmp += s.icmp as u64 * w64;
    st.frags += s.frag as u64 * w64;
    st.ack_rst += s.ack_rst as u64 * w64;
    st.udp_reflect += s.reflect as u64 * w64;
    let w = &mut st.window;
    count_window(w, s, len, now, cfg.window_ns, weight);
    // A reflector answers from one port; a flooder rotates its own.
    w.vote = vote_if(w.vote, p.transport.sport, has_transport(p) as u32, weight);
    // Distinct ports and hosts count probes only: replies to the host's own
    // connections land on many ephemeral ports and are no scan.
    if s.probe {
        if p.transport.kind == Transport::TCP || p.transport.kind == Transport::UDP {
            let port_bit = sketch_bit(p.transport.dport as u32, 256);
            w.distinct_ports += mark(&mut w.port_sketch, port_bit) as u32;
        }
        let dst = fold(p.ip.dst_v4, &p.ip.dst_v6, p.ip.family);
        w.distinct_dsts += mark(&mut w.dst_sketch, sketch_bit(dst, 128)) as u32;
    }
    let (ports, dsts) = (w.distinct_ports, w.distinct_dsts);
    let levels = w.tripped;
    let window_fired = packet_trip(w, cfg.trip_packets)
        | trip(w, TRIP_PORTS, ports, cfg.trip_ports)
        | trip(w, TRIP_DSTS, dsts, cfg.trip_dsts);
    // The agent never heard of an event not sent: trip again on the next
    // packet rather than when the count has doubled.
    if window_fired && emit_source(EVENT_SOURCE_TRIP, src, p, &st.window, now) == 0 {
        st.window.tripped = levels;
    }
    // With the doorkeeper, a source new to the table has sent before.
    let new = if door { 0 } else { FRESH };
    let flags = (if hit { KNOWN } else { new }) | (WINDOW_FIRED * window_fired as u32) | heavy;
    ((index as u64) << 32) | flags as u64
}
