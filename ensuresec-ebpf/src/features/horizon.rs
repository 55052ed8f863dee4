//! A source's horizon: counters over minutes for floods and scans too slow
//! for any window (SYNs that never complete, ports probed one by one, the
//! protocols a service scan tries on one port). It lives in `ES_HORIZONS`,
//! beside the source's slot, and begins with the source's second packet on
//! the CPU, counting the first from `FirstPacket`: a spoofed flood's
//! one-packet sources never touch it.

use ensuresec_common::features::{
    DetectConfig, EVENT_SOURCE_HORIZON, FirstPacket, HEAVY_PACKETS, HEAVY_SAMPLE, Horizon,
    PENDING_MS, PENDING_SYNS, SourceStats, TRIP_HORIZON_OPENINGS, TRIP_HORIZON_PORTS,
    TRIP_HORIZON_SYNS, sample_weight, sketch_bit, trip_level,
};

use super::{HEAVY, PROBE, WINDOW_FIRED, emit_source, mark};
use crate::{
    maps::{ES_HORIZONS, ES_SOURCES},
    parse::{Parsed, TCP_ACK, TCP_RST, TCP_SYN, Transport},
};

/// Notes what the horizon will count of a source's first packet.
#[inline(always)]
pub(super) fn note_first(st: &mut SourceStats, p: &Parsed, classes: u32) {
    let t = &p.transport;
    let syn = t.kind == Transport::TCP && t.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let probed = classes & PROBE != 0 && (t.kind == Transport::TCP || t.kind == Transport::UDP);
    st.first = FirstPacket {
        seq: t.seq,
        port_bit: sketch_bit(t.dport as u32, 256) as u16,
        flags: (syn as u16 * FirstPacket::SYN) | (probed as u16 * FirstPacket::PROBED_PORT),
    };
}

/// Starts the source's horizon anew when it is over, or begins it with the
/// source's second packet, counting the first (a SYN pending completion, a
/// probed port) as of now.
#[inline(always)]
fn renew(first: &mut FirstPacket, h: &mut Horizon, now: u64, horizon_ns: u64) {
    let begun = first.horizon_begun();
    if begun && now.wrapping_sub(h.start_ns) < horizon_ns {
        return;
    }
    reset_horizon(h, now);
    if begun {
        return;
    }
    first.flags |= FirstPacket::HORIZON_BEGUN;
    if first.flags & FirstPacket::SYN != 0 {
        h.syn = 1;
        h.next_seq = first.seq.wrapping_add(1);
        h.pending[0] = h.next_seq;
        // Counted once (the lowest bit clear: see `PENDING_HEAVY`).
        h.pending_ms[0] = (now / 1_000_000) as u32 & !PENDING_HEAVY;
        h.pending_next = 1;
    }
    if first.flags & FirstPacket::PROBED_PORT != 0 {
        // The sketch was just cleared: the first port is its one bit.
        let bit = first.port_bit as usize;
        h.port_sketch[(bit / 64) % 4] = 1 << (bit % 64);
        h.distinct_ports = 1;
    }
}

/// Starts a new horizon in place (see `reset`).
#[inline(always)]
fn reset_horizon(h: &mut Horizon, now: u64) {
    h.start_ns = now;
    h.syn = 0;
    h.completed = 0;
    h.pending = [0; PENDING_SYNS];
    h.pending_ms = [0; PENDING_SYNS];
    h.pending_next = 0;
    h.distinct_ports = 0;
    h.openings = 0;
    h.next_seq = 0;
    h.tripped = 0;
    h.port_sketch = [0; 4];
    h.opening_sketch = 0;
}

/// Counts a connection attempt whose completion `seq` is as completed (once).
#[inline(always)]
fn complete(h: &mut Horizon, seq: u32) {
    if seq == 0 {
        return;
    }
    let mut i = 0;
    while i < PENDING_SYNS {
        if h.pending[i] == seq {
            h.pending[i] = 0;
            h.completed += pending_weight(h.pending_ms[i]);
            return;
        }
        i += 1;
    }
}

/// A pending SYN's time keeps, in its lowest bit, whether the SYN was
/// counted with `HEAVY_SAMPLE` (a heavy source's sampled SYN) or once: its
/// completion, or its credit when pushed out, counts the same.
const PENDING_HEAVY: u32 = 1;

#[inline(always)]
fn pending_weight(ms: u32) -> u32 {
    1 + (ms & PENDING_HEAVY) * (HEAVY_SAMPLE - 1)
}

/// The weight a SYN, or a packet other than TCP, counts with in a source's
/// horizon: 1 for a light source; for a heavy one `HEAVY_SAMPLE` for one in
/// `HEAVY_SAMPLE`, as `draw` says, else 0 (not looked at). Other TCP packets
/// are all looked at: an ACK completes its SYN with the weight that SYN had.
#[inline(always)]
pub(super) fn horizon_weight(t: &Transport, heavy: bool, draw: u32) -> u32 {
    let syn = t.kind == Transport::TCP && t.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    if !heavy || (t.kind == Transport::TCP && !syn) {
        return 1;
    }
    sample_weight(HEAVY_PACKETS, draw)
}

/// Counts a known source's packet, of `classes`, in its horizon (at `index`
/// in `ES_HORIZONS`, beside its slot in `ES_SOURCES`), renewing the horizon
/// when it is over or has not begun; sends an event when a trip wire fires,
/// unless the source's window fired on this packet (`WINDOW_FIRED` in
/// `classes`, one event per packet): then the trip waits for the source's
/// next packet. The caller calls it only for packets `horizon_weight`
/// looks at, with `HEAVY` in `classes` for those counted `HEAVY_SAMPLE`-fold.
/// Returns 1 when it sent one, else 0.
#[inline(never)]
pub(super) fn horizon(p: &Parsed, index: u32, classes: u32, now: u64, cfg: &DetectConfig) -> u32 {
    if cfg.horizon_ns == 0 {
        return 0;
    }
    let (Some(slot), Some(h)) = (
        ES_SOURCES.get_ptr_mut(index),
        ES_HORIZONS.get_ptr_mut(index),
    ) else {
        return 0;
    };
    // SAFETY: this CPU's values.
    let (slot, h) = unsafe { (&mut *slot, &mut *h) };
    let t = &p.transport;
    let weight = if classes & HEAVY != 0 {
        HEAVY_SAMPLE
    } else {
        1
    };
    renew(&mut slot.stats.first, h, now, cfg.horizon_ns);
    if t.kind == Transport::TCP {
        let f = t.flags;
        if f & (TCP_SYN | TCP_ACK) == TCP_SYN {
            let ring = h.pending_next as usize % PENDING_SYNS;
            let ms = (now / 1_000_000) as u32;
            // A young attempt pushed out of the ring by a source that
            // completes most of its attempts (a busy NAT) was likely
            // completed too; one that completes few gets no such credit.
            let pushed_out = h.pending_ms[ring];
            let young = ms.wrapping_sub(pushed_out & !PENDING_HEAVY) < PENDING_MS;
            if h.pending[ring] != 0 && young && h.completed * 2 >= h.syn {
                h.completed += pending_weight(pushed_out);
            }
            h.syn += weight;
            h.next_seq = t.seq.wrapping_add(1);
            h.pending[ring] = h.next_seq;
            h.pending_ms[ring] = (ms & !PENDING_HEAVY) | (weight != 1) as u32;
            h.pending_next = h.pending_next.wrapping_add(1);
        } else if f & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_ACK {
            complete(h, t.seq);
            // The first data of the latest connection: its protocol's
            // opening. Each connection attempt opens once.
            if t.head != 0 && t.seq == h.next_seq && h.next_seq != 0 {
                // Three bytes: a TLS record's fourth is its length.
                h.openings += mark(
                    core::slice::from_mut(&mut h.opening_sketch),
                    sketch_bit(t.head >> 8, 64),
                ) as u32;
                h.next_seq = 0;
            }
        }
    }
    // Distinct ports count probes only, as the window's do.
    if classes & PROBE != 0 && (t.kind == Transport::TCP || t.kind == Transport::UDP) {
        let bit = sketch_bit(t.dport as u32, 256);
        h.distinct_ports += mark(&mut h.port_sketch, bit) as u32;
    }
    let (uncompleted, ports, openings) = (h.uncompleted(), h.distinct_ports, h.openings);
    let levels = h.tripped;
    let fired = trip_level(
        &mut h.tripped,
        TRIP_HORIZON_SYNS,
        uncompleted,
        cfg.trip_horizon_syns,
    ) | trip_level(
        &mut h.tripped,
        TRIP_HORIZON_PORTS,
        ports,
        cfg.trip_horizon_ports,
    ) | trip_level(
        &mut h.tripped,
        TRIP_HORIZON_OPENINGS,
        openings,
        cfg.trip_openings,
    );
    if !fired {
        return 0;
    }
    let sent = classes & WINDOW_FIRED == 0
        && emit_source(EVENT_SOURCE_HORIZON, &slot.key, p, &slot.stats.window, now) != 0;
    if !sent {
        // Trip again on the next packet rather than when the count has
        // doubled.
        h.tripped = levels;
    }
    sent as u32
}
