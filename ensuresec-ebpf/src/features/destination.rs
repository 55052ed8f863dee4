//! Per-destination counting: each destination's windows at three scales,
//! and their trip wires.

use super::*;

/// Port to key a destination by: tracked ports one by one, the rest as 0.
#[inline(always)]
pub fn tracked_port(p: &Parsed) -> u16 {
    let index = match p.transport.kind {
        Transport::TCP => DST_PORTS_TCP,
        Transport::UDP => DST_PORTS_UDP,
        _ => return 0,
    };
    let port = p.transport.dport;
    match ES_DST_PORTS.get(index) {
        Some(bits)
            if bits[(port as usize / 64) & (PORT_WORDS - 1)] & (1u64 << (port % 64)) != 0 =>
        {
            port
        }
        _ => 0,
    }
}

/// As `source_slot`, for destinations.
#[inline(always)]
fn dest_slot(key: &DestKey, now: u64, cfg: &DetectConfig) -> Option<Way<DestSlot>> {
    let first = set_of(&key.addr, key.extra(), cfg.seed, cfg.dest_mask);
    let way = way_of(
        &ES_DESTS,
        first,
        |w| w.key == *key,
        |w| w.stats.last_seen_ns,
    )?;
    if !way.hit {
        way.value.key = *key;
        let st = &mut way.value.stats;
        st.first_seen_ns = now;
        st.packets = 0;
        st.bytes = 0;
        st.new_conns = 0;
        // Every scale: the slot's last destination must leave nothing.
        reset(&mut st.window, 0);
        reset(&mut st.burst, 0);
        reset(&mut st.slow, 0);
    }
    Some(way)
}

/// Counts the packet in its destination's totals and, when its windows
/// count it (one in eight of a flood's, eightfold: see `sample_weight`),
/// writes what `destination` counts it with to the per-CPU scratch and
/// returns 1; else 0, and `destination` is not called. `classes` carries
/// `FRESH` when the packet was its source's first. A subprogram of its
/// own, so that its frame and `destination`'s are not stacked (BPF gives a
/// call chain 512 bytes).
#[inline(never)]
pub(super) fn dest_packet(p: &Parsed, classes: u32, len: u32, now: u64, cfg: &DetectConfig) -> u32 {
    let key = DestKey::new(p.ip.dst_key(), tracked_port(p), p.ip.proto);
    let Some(Way {
        value: slot, index, ..
    }) = dest_slot(&key, now, cfg)
    else {
        return 0;
    };
    let st = &mut slot.stats;
    st.last_seen_ns = now;
    st.packets += 1;
    st.bytes += len as u64;
    st.new_conns += (classes & class::SYN != 0) as u64;
    recent::note_dest(index);
    let weight = sample_weight(
        live_packets(&st.window, now, cfg.window_ns),
        draw_of(classes),
    );
    let Some(scratch) = ES_DEST_PACKET.get_ptr_mut(0) else {
        return 0;
    };
    if weight == 0 {
        return 0;
    }
    // SAFETY: per-CPU scratch of this CPU.
    let one = unsafe { &mut *scratch };
    one.sample = Sample::of(classes);
    one.key = key;
    one.index = index;
    one.weight = weight;
    // Distinct sources: a spoofed flood comes from very many; distinct
    // source ports: a reflection from one (or a few) services.
    one.src_bit = sketch_bit(fold(p.ip.src_v4, &p.ip.src_v6, p.ip.family), 128);
    one.has_port = has_transport(p) as u64;
    one.sport = p.transport.sport;
    one.fresh = (classes >> 16) & 1;
    one.len = len;
    one.now = now;
    1
}

/// Counts the packet `dest_packet` wrote in its destination's windows.
#[inline(never)]
pub(super) fn destination(cfg: &DetectConfig) -> u32 {
    let Some(scratch) = ES_DEST_PACKET.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch of this CPU, written by `dest_packet`.
    let one = unsafe { &*scratch };
    let Some(slot) = ES_DESTS.get_ptr_mut(one.index) else {
        return 0;
    };
    // SAFETY: this CPU's value.
    let st = unsafe { &mut (*slot).stats };
    count_dest(&mut st.window, one, cfg, Scale::Window as u32, one.weight);
    count_dest(&mut st.burst, one, cfg, Scale::Burst as u32, one.weight);
    count_dest(&mut st.slow, one, cfg, Scale::Slow as u32, one.weight);
    one.fresh
}

/// What one packet brings to each of its destination's windows.
pub struct DestPacket {
    sample: Sample,
    key: DestKey,
    /// The destination's slot in `ES_DESTS`.
    index: u32,
    /// What the packet counts for (see `sample_weight`).
    weight: u32,
    src_bit: u32,
    /// 1 when the ports were read, else 0.
    has_port: u64,
    sport: u16,
    /// 1 when the packet was its source's first.
    fresh: u32,
    len: u32,
    now: u64,
}

/// Counts a packet in one of a destination's windows, of `scale`: the
/// window, a tenth of it (a burst), ten of it (slow). Trips on packets (a
/// burst at a tenth of the window's count; not the slow window) and, at
/// every scale, on unsolicited answers and SYNs to ports the host does not
/// serve, which no client needs. `weight`: see `sample_weight`. A
/// subprogram of its own, called three
/// times: inlined, each call's paths would multiply the next one's for the
/// verifier.
#[inline(never)]
fn count_dest(w: &mut Window, one: &DestPacket, cfg: &DetectConfig, scale: u32, weight: u32) {
    let tenth = (cfg.trip_dst_packets / 10).max(1);
    let (length_ns, first) = if scale == Scale::Burst as u32 {
        (cfg.window_ns / 10, tenth)
    } else if scale == Scale::Slow as u32 {
        (cfg.window_ns * 10, tenth)
    } else {
        (cfg.window_ns, cfg.trip_dst_packets)
    };
    count_window(w, &one.sample, one.len, one.now, length_ns, weight);
    w.fresh += one.fresh * weight;
    w.distinct_dsts += mark_if(&mut w.dst_sketch, one.src_bit, 1);
    let port_bit = sketch_bit(one.sport as u32, 256);
    w.distinct_ports += mark_if(&mut w.port_sketch, port_bit, one.has_port);
    // Packets without ports (later fragments) do not vote.
    w.vote = vote_if(w.vote, one.sport, one.has_port as u32, weight);
    let levels = w.tripped;
    // The slow scale is for unsolicited answers only.
    let packets = w.packets * (scale != Scale::Slow as u32) as u32;
    let unsolicited = one.key.unwanted(w);
    let fire = trip(w, TRIP_PACKETS, packets, first)
        | trip(
            w,
            TRIP_UNSOLICITED,
            unsolicited,
            (UNSOLICITED_MIN / cfg.cpus.max(1)).max(1),
        );
    if fire
        && emit(
            EVENT_DEST_TRIP,
            &one.key.addr,
            &AddrKey::ZERO,
            About(one.key.port, one.key.proto, scale as u8),
            w,
            one.now,
        ) == 0
    {
        w.tripped = levels;
    }
}
