//! Feature extraction: per-source and per-destination counters with a window,
//! trip-wire events to the agent, and sampled headers.

use aya_ebpf::{
    helpers::generated::bpf_get_smp_processor_id, maps::PerCpuArray, programs::XdpContext,
};
use ensuresec_common::{
    features::{
        AddrKey, DestKey, DestSlot, DetectConfig, EVENT_DEST_TRIP, Event, HEAVY_SAMPLE, Scale,
        TRIP_PACKETS, TRIP_UNSOLICITED, UNSOLICITED_MIN, Window, class, is_reflector_port, is_zero,
        mark_if, sample_weight, set_of, sketch_bit, trip, vote_if,
    },
    maps::{DST_PORTS_TCP, DST_PORTS_UDP, EVENT_STAT_DROPPED, EVENT_STAT_SENT, PORT_WORDS},
};

mod classes;
mod destination;
mod door;
mod horizon;
mod recent;
mod source;

use classes::PROBE;
pub use classes::classes;
pub use destination::{DestPacket, tracked_port};
use destination::{dest_packet, destination};
use horizon::{horizon, horizon_weight};
pub use recent::Recent;
use source::{admitted, source};

use crate::{
    maps::{ES_DEST_PACKET, ES_DESTS, ES_DST_PORTS, ES_EVENT_STATS, ES_EVENTS},
    parse::{
        IPPROTO_ICMP, IPPROTO_ICMPV6, Ip, Parsed, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Transport,
    },
    replies,
};

/// What one packet adds to the counters, from its classes.
#[derive(Clone, Copy)]
pub struct Sample {
    syn: bool,
    synack: bool,
    ack_rst: bool,
    udp: bool,
    icmp: bool,
    frag: bool,
    reflect: bool,
    /// A probe: counts toward distinct ports and hosts (replies never do).
    probe: bool,
    /// 1 for what a reflection delivers (unsolicited answers, fragments),
    /// else 0; computed without a branch, which would double the paths the
    /// verifier walks from here on.
    answer: u32,
}

impl Sample {
    #[inline(always)]
    fn of(c: u32) -> Self {
        Sample {
            syn: c & class::SYN != 0,
            synack: c & class::SYNACK != 0,
            ack_rst: c & class::ACK_RST != 0,
            udp: c & class::UDP != 0,
            icmp: c & class::ICMP != 0,
            frag: c & class::FRAGMENT != 0,
            reflect: c & class::UDP_SERVICE != 0,
            probe: c & PROBE != 0,
            answer: is_zero(c & (class::UDP_SERVICE | class::SYNACK | class::FRAGMENT)) ^ 1,
        }
    }
}

/// An address folded into 32 bits for a sketch, without building its key.
#[inline(always)]
fn fold(v4: u32, v6: &AddrKey, family: u8) -> u32 {
    if family == Ip::V4 {
        return v4;
    }
    let [hi, lo] = v6.words();
    let w = hi ^ lo;
    (w ^ (w >> 32)) as u32
}

/// Sets a sketch bit; returns whether it was new.
#[inline(always)]
fn mark(words: &mut [u64], bit: u32) -> bool {
    let i = (bit / 64) as usize;
    if i >= words.len() {
        return false;
    }
    let mask = 1u64 << (bit % 64);
    let new = words[i] & mask == 0;
    words[i] |= mask;
    new
}

/// Starts a new window in place (a `Window` literal would be built on the
/// stack, and the BPF stack is 512 bytes).
#[inline(always)]
fn reset(w: &mut Window, now: u64) {
    w.start_ns = now;
    w.packets = 0;
    w.bytes = 0;
    w.syn = 0;
    w.synack = 0;
    w.ack_rst = 0;
    w.udp = 0;
    w.icmp = 0;
    w.frags = 0;
    w.udp_reflect = 0;
    w.distinct_ports = 0;
    w.distinct_dsts = 0;
    w.tripped = 0;
    w.fresh = 0;
    w.vote = 0;
    w.reflect_bytes = 0;
    w.port_sketch = [0; 4];
    w.dst_sketch = [0; 2];
}

/// The packets `w` holds, 0 once it is over (it is reset by the next
/// packet counted in it): what makes it heavy (see `sample_weight`).
#[inline(always)]
fn live_packets(w: &Window, now: u64, window_ns: u64) -> u32 {
    if now.wrapping_sub(w.start_ns) >= window_ns {
        0
    } else {
        w.packets
    }
}

/// Counts a packet in `w` with `weight` (see `sample_weight`).
#[inline(always)]
fn count_window(w: &mut Window, s: &Sample, len: u32, now: u64, window_ns: u64, weight: u32) {
    if now.wrapping_sub(w.start_ns) >= window_ns {
        reset(w, now);
    }
    w.packets += weight;
    w.bytes = w.bytes.wrapping_add(len * weight);
    w.syn += s.syn as u32 * weight;
    w.synack += s.synack as u32 * weight;
    w.ack_rst += s.ack_rst as u32 * weight;
    w.udp += s.udp as u32 * weight;
    w.icmp += s.icmp as u32 * weight;
    w.frags += s.frag as u32 * weight;
    w.udp_reflect += s.reflect as u32 * weight;
    w.reflect_bytes = w.reflect_bytes.wrapping_add(len * s.answer * weight);
}

/// Sends a source's event (`kind`) about the packet's destination port.
#[inline(always)]
pub(crate) fn emit_source(kind: u32, src: &AddrKey, p: &Parsed, w: &Window, now: u64) -> u32 {
    let peer = p.ip.dst_key();
    emit(
        kind,
        src,
        &peer,
        About(p.transport.dport, p.ip.proto, 0),
        w,
        now,
    )
}

/// The port, protocol and (destinations) `Scale` an event is about.
struct About(u16, u8, u8);

#[inline(always)]
fn emit(kind: u32, addr: &AddrKey, peer: &AddrKey, about: About, w: &Window, now: u64) -> u32 {
    let About(port, proto, scale) = about;
    match ES_EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            let e = entry.as_mut_ptr();
            // SAFETY: the reservation is an `Event`-sized slot we own until submit.
            unsafe {
                (*e).kind = kind;
                (*e).cpu = bpf_get_smp_processor_id();
                (*e).time_ns = now;
                (*e).addr = *addr;
                (*e).peer = *peer;
                (*e).port = port;
                (*e).proto = proto;
                (*e).scale = scale;
                (*e)._pad2 = 0;
                (*e).window = *w;
            }
            // The kernel wakes the agent's reader when it has caught up
            // (the first trip after a quiet spell); while events flow the
            // reader looks again by itself, so a burst costs no wake-ups.
            entry.submit(0);
            bump_by(EVENT_STAT_SENT, 1);
            1
        }
        None => {
            bump_by(EVENT_STAT_DROPPED, 1);
            0
        }
    }
}

#[inline(always)]
fn bump_by(index: u32, n: u64) {
    if let Some(v) = ES_EVENT_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU value.
        unsafe { *v += n };
    }
}

/// The two ways of the set starting at `first`, on this CPU, and which of
/// them holds the key (`hit`): that one, else the empty or least recently
/// seen one, which the caller resets. `None` only outside the table.
#[inline(always)]
fn way_of<T>(
    table: &PerCpuArray<T>,
    first: u32,
    hit: impl Fn(&T) -> bool,
    last_seen: impl Fn(&T) -> u64,
) -> Option<Way<T>> {
    let a = table.get_ptr_mut(first)?;
    let b = table.get_ptr_mut(first + 1)?;
    // SAFETY: per-CPU values of this CPU.
    let (a, b) = unsafe { (&mut *a, &mut *b) };
    let way = |value, index, hit| Some(Way { value, index, hit });
    if hit(a) {
        return way(a, first, true);
    }
    if hit(b) {
        return way(b, first + 1, true);
    }
    if last_seen(a) <= last_seen(b) {
        way(a, first, false)
    } else {
        way(b, first + 1, false)
    }
}

/// A way of a set: its value, its index in the table, whether it held the key.
struct Way<T: 'static> {
    value: &'static mut T,
    index: u32,
    hit: bool,
}

/// Whether the TCP or UDP header was read (ports are known).
#[inline(always)]
fn has_transport(p: &Parsed) -> bool {
    p.transport.kind == Transport::TCP || p.transport.kind == Transport::UDP
}

/// Bit of `record`'s source result telling that the packet was its
/// source's first on this CPU: refused by the doorkeeper (set by `record`),
/// or (without one) new to the table (set by `source`). No class uses it.
pub(super) const FRESH: u32 = 1 << 16;

/// Bit of `source`'s result, and of the classes `horizon` gets, telling
/// that the source's window tripped on this packet (no class uses it).
pub(super) const WINDOW_FIRED: u32 = 1 << 17;

/// Bit of `source`'s result telling that the source was in the table
/// already: its horizon counts the packet. (Not derived from `FRESH`: a
/// known source at index 0 whose window did not fire would return 0, the
/// same as a source outside the table.)
pub(super) const KNOWN: u32 = 1 << 18;

/// Bit of `source`'s result telling that the source's window is heavy
/// (see `sample_weight`); of the classes `horizon` gets, that the packet
/// counts `HEAVY_SAMPLE`-fold (see `horizon_weight`).
pub(super) const HEAVY: u32 = 1 << 19;

/// Bit of the classes `source` and `dest_packet` get telling that the
/// packet's draw picked it, should its window be heavy (see `sample_weight`).
pub(super) const PICKED: u32 = 1 << 20;

/// `PICKED` when `draw` picks the packet.
#[inline(always)]
fn picked(draw: u32) -> u32 {
    PICKED * is_zero(draw % HEAVY_SAMPLE)
}

/// The draw a subprogram got from its caller in `classes` (see `PICKED`),
/// as `sample_weight` takes it.
#[inline(always)]
fn draw_of(classes: u32) -> u32 {
    is_zero(classes & PICKED)
}

/// Counts the packet, of `classes`, for its source and destination; may
/// send events.
#[inline(always)]
pub fn record(p: &Parsed, classes: u32, len: u32, now: u64, cfg: &DetectConfig) {
    if p.ip.family == Ip::NONE {
        return;
    }
    // Using the results keeps LLVM from dropping the subprograms' return values,
    // which would leave whatever r0 held (the verifier rejects a stack pointer).
    // Events sent are counted where they are sent: a count carried from one
    // subprogram to the next multiplies the states the verifier keeps.
    // One random draw per packet: its bytes decide, independently, whether
    // the source's, the horizon's and the destination's heavy windows count
    // it (random, so that a sender cannot place what it wants hidden where
    // nothing is counted).
    let draw = crate::random::random();
    let (source_draw, horizon_draw, dest_draw) = (draw, draw >> 8, draw >> 16);
    let found = match recent::source_left_out(p, len, now, cfg, source_draw) {
        Some(found) => found,
        None if !admitted(p, now, cfg) => FRESH as u64,
        None => source(p, classes | picked(source_draw), len, now, cfg),
    };
    let flags = found as u32;
    // A new source's horizon is not read: its lines stay cold. A heavy
    // source's packets the horizon does not look at cost no call.
    let weight = horizon_weight(&p.transport, flags & HEAVY != 0, horizon_draw);
    if flags & KNOWN != 0 && weight != 0 {
        let index = (found >> 32) as u32;
        let sampled = HEAVY * (weight != 1) as u32;
        core::hint::black_box(horizon(
            p,
            index,
            classes | (flags & WINDOW_FIRED) | sampled,
            now,
            cfg,
        ));
    }
    let key = DestKey::new(p.ip.dst_key(), tracked_port(p), p.ip.proto);
    let syn = (classes & class::SYN != 0) as u64;
    if recent::dest_left_out(&key, syn, len, now, cfg, dest_draw) {
        return;
    }
    let classes = classes | (flags & FRESH) | picked(dest_draw);
    if dest_packet(p, classes, len, now, cfg) != 0 {
        core::hint::black_box(destination(cfg));
    }
}
