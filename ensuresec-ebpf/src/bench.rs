//! Source randomisation for the benchmark programs: BPF_PROG_TEST_RUN repeats one
//! packet, so these programs rewrite its IPv4 source on every run to defeat caches
//! the way a spoofed flood does; and the ring buffer benchmark's events.

use aya_ebpf::{helpers::generated::bpf_get_prandom_u32, programs::XdpContext};

use ensuresec_common::features::{EVENT_SOURCE_TRIP, Window};

use crate::maps::{ES_BENCH, ES_BENCH_SRC};

const MAX_SRC_OFFSET: usize = 64;

#[inline(always)]
pub fn randomize_source(ctx: &XdpContext) {
    let Some(params) = ES_BENCH.get(0) else {
        return;
    };
    if params.count == 0 {
        return;
    }
    // SAFETY: helper without arguments.
    let (r1, r2) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
    let Some(row) = ES_BENCH_SRC.get(r1 % params.count) else {
        return;
    };
    let offset = (params.src_offset as usize) & (MAX_SRC_OFFSET - 1);
    let start = ctx.data();
    if start + offset + 4 > ctx.data_end() {
        return;
    }
    let addr = row.addr_be | (r2 & row.host_mask_be);
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned((start + offset) as *mut u32, addr) };
}

/// Sends one source trip event about the frame's (randomised) source and
/// its destination, as the feature path does when a window trips, with the
/// frame's length as its packet count: the ring buffer benchmark's load.
#[inline(always)]
pub fn emit_event(ctx: &XdpContext) {
    let parsed = crate::parse::parse(ctx);
    if parsed.ip.family == crate::parse::Ip::NONE {
        return;
    }
    let w = Window {
        packets: (ctx.data_end() - ctx.data()) as u32,
        ..Default::default()
    };
    let src = parsed.ip.src_key();
    crate::features::emit_source(EVENT_SOURCE_TRIP, &src, &parsed, &w, crate::clock::now());
}
