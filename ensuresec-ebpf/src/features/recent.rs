//! The slots this CPU counted its last source and destination in, and the
//! cheap path they give a flood: when a packet's source (or destination)
//! is the one the CPU saw last, its window is heavy and the draw leaves the
//! packet out of it (see `sample_weight`), only its totals are counted,
//! inline, without the hash, the doorkeeper, the set search or a
//! subprogram call (about 12 ns each here). A flood from or to one address
//! is then mostly this path; everything else takes the full one, which
//! notes its slots here.
//!
//! A source counted this way does not refresh its doorkeeper entry; if the
//! entry ages out, the source's next packet through the full path is
//! refused once, as a new source's first is.

use ensuresec_common::features::{
    DestKey, DestSlot, DetectConfig, SourceSlot, Window, sample_weight,
};

use super::{HEAVY, KNOWN, live_packets};
use crate::{
    maps::{ES_DESTS, ES_RECENT, ES_SOURCES},
    parse::Parsed,
};

/// This CPU's last source and destination slots.
pub struct Recent {
    source: u32,
    dest: u32,
}

/// Notes the slot the full path counted the packet's source in.
#[inline(always)]
pub(super) fn note_source(index: u32) {
    if let Some(r) = ES_RECENT.get_ptr_mut(0) {
        // SAFETY: this CPU's value of a per-CPU map.
        unsafe { (*r).source = index };
    }
}

/// Notes the slot the full path counted the packet's destination in.
#[inline(always)]
pub(super) fn note_dest(index: u32) {
    if let Some(r) = ES_RECENT.get_ptr_mut(0) {
        // SAFETY: this CPU's value of a per-CPU map.
        unsafe { (*r).dest = index };
    }
}

/// Whether a window is heavy and `draw` leaves the packet out of it.
#[inline(always)]
fn left_out(w: &Window, now: u64, cfg: &DetectConfig, draw: u32) -> bool {
    sample_weight(live_packets(w, now, cfg.window_ns), draw) == 0
}

/// The source's slot, when it is the CPU's last source's.
#[inline(always)]
fn recent_source(p: &Parsed) -> Option<(&'static mut SourceSlot, u32)> {
    // SAFETY: this CPU's value of a per-CPU map.
    let index = unsafe { (*ES_RECENT.get_ptr_mut(0)?).source };
    // SAFETY: as above.
    let slot = unsafe { &mut *ES_SOURCES.get_ptr_mut(index)? };
    (slot.key == p.ip.src_key()).then_some((slot, index))
}

/// The destination's slot, when it is the CPU's last destination's.
#[inline(always)]
fn recent_dest(key: &DestKey) -> Option<&'static mut DestSlot> {
    // SAFETY: this CPU's value of a per-CPU map.
    let index = unsafe { (*ES_RECENT.get_ptr_mut(0)?).dest };
    // SAFETY: as above.
    let slot = unsafe { &mut *ES_DESTS.get_ptr_mut(index)? };
    (slot.key == *key).then_some(slot)
}

/// Counts a recent source's packet that its heavy window leaves out
/// (`draw`: see `sample_weight`) in its totals; returns what `source` would
/// have, else `None` (the full path is needed).
#[inline(always)]
pub(super) fn source_left_out(
    p: &Parsed,
    len: u32,
    now: u64,
    cfg: &DetectConfig,
    draw: u32,
) -> Option<u64> {
    let (slot, index) = recent_source(p)?;
    let st = &mut slot.stats;
    if !left_out(&st.window, now, cfg, draw) {
        return None;
    }
    st.last_seen_ns = now;
    st.packets += 1;
    st.bytes += len as u64;
    Some(((index as u64) << 32) | (KNOWN | HEAVY) as u64)
}

/// As `source_left_out`, for the packet's destination (`key`); `syn`: 1 for
/// a SYN, else 0. Returns whether the packet was counted.
#[inline(always)]
pub(super) fn dest_left_out(
    key: &DestKey,
    syn: u64,
    len: u32,
    now: u64,
    cfg: &DetectConfig,
    draw: u32,
) -> bool {
    let Some(slot) = recent_dest(key) else {
        return false;
    };
    let st = &mut slot.stats;
    if !left_out(&st.window, now, cfg, draw) {
        return false;
    }
    st.last_seen_ns = now;
    st.packets += 1;
    st.bytes += len as u64;
    st.new_conns += syn;
    true
}
