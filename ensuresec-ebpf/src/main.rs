//! ensuresec's XDP programs: `ensuresec` filters; the others exist for benchmarks.
#![no_std]
#![no_main]

mod bench;
mod maps;
mod parse;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use ensuresec_common::reason::Reason;

use crate::maps::ES_COUNTERS;

#[inline(always)]
fn count(reason: Reason, bytes: u64) {
    if let Some(counter) = ES_COUNTERS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU value, so no other program writes it concurrently.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

#[inline(always)]
fn filter(ctx: &XdpContext) -> u32 {
    let parsed = parse::parse(ctx);
    let reason = verdict::decide(&parsed);
    count(reason, (ctx.data_end() - ctx.data()) as u64);
    if reason.drops() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// The filter attached to protected interfaces.
#[xdp]
pub fn ensuresec(ctx: XdpContext) -> u32 {
    filter(&ctx)
}

/// Benchmark floor: the cheapest possible XDP program.
#[xdp]
pub fn bench_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Benchmark floor for the random-source template: randomise, then drop.
#[xdp]
pub fn bench_floor_random(ctx: XdpContext) -> u32 {
    bench::randomize_source(&ctx);
    xdp_action::XDP_DROP
}

/// The filter on a randomised source address, one new address per run.
#[xdp]
pub fn bench_filter_random(ctx: XdpContext) -> u32 {
    bench::randomize_source(&ctx);
    filter(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
