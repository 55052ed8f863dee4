//! ensuresec's XDP programs: `ensuresec` filters; the others exist for benchmarks.
#![no_std]
#![no_main]

mod bench;
mod clock;
mod features;
mod frags;
mod maps;
mod mitigate;
mod parse;
mod replies;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use ensuresec_common::{maps::PROG_DETECT, reason::Reason};

use crate::maps::{ES_CLASSES, ES_COUNTERS, ES_DETECT, ES_PARSED, ES_PROGS};

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
fn finish(reason: Reason, len: u32) -> u32 {
    count(reason, len as u64);
    if reason.drops() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[inline(always)]
fn filter(ctx: &XdpContext) -> u32 {
    let parsed = parse::parse(ctx);
    let len = (ctx.data_end() - ctx.data()) as u32;
    if let Some(reason) = verdict::lists(&parsed) {
        // Listed sources are decided: the cheapest drop, no features.
        return finish(reason, len);
    }
    if ES_DETECT.get(0).is_some_and(|cfg| cfg.enabled != 0) {
        // Detection runs in its own program, so that the filter alone keeps its
        // cost. A tail call does not return unless it failed.
        // SAFETY: the context is this program's; index 0 holds `ensuresec_detect`.
        unsafe { ES_PROGS.tail_call(ctx, PROG_DETECT) };
    }
    finish(verdict::policy(&parsed), len)
}

/// Features, throttles and budgets, then the policy: the rest of `ensuresec`
/// for unlisted packets when detection is on.
#[xdp]
pub fn ensuresec_detect(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u32;
    let (Some(slot), Some(cfg)) = (ES_PARSED.get_ptr_mut(0), ES_DETECT.get(0)) else {
        return finish(Reason::Passed, len);
    };
    // Parsing again costs a few ns. The result goes through a per-CPU map slot:
    // what the verifier reads back from a map is one unknown value rather than
    // one per parse outcome, which keeps the paths it explores within its limit.
    // SAFETY: per-CPU slot of this CPU; volatile so the compiler keeps the
    // round trip through the map.
    let parsed = unsafe {
        core::ptr::write_volatile(slot, parse::parse(&ctx));
        &*slot
    };
    let now = clock::now();
    let classes = features::classes(&ctx, parsed);
    let Some(classes_slot) = ES_CLASSES.get_ptr_mut(0) else {
        return finish(Reason::Passed, len);
    };
    // SAFETY: per-CPU slot of this CPU; volatile, as for the parse.
    let classes = unsafe {
        core::ptr::write_volatile(classes_slot, classes);
        core::ptr::read_volatile(classes_slot)
    };
    features::record(parsed, classes, len, now, cfg);
    let reason = verdict::mitigations(parsed, classes, cfg.cpus, now)
        .unwrap_or_else(|| verdict::policy(parsed));
    finish(reason, len)
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
