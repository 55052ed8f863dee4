//! ensuresec's XDP programs: `ensuresec` filters; the others exist for benchmarks.
#![no_std]
#![no_main]

mod bench;
mod clock;
mod drops;
mod features;
mod frags;
mod lists;
mod maps;
mod mitigate;
mod parse;
mod random;
mod replies;
mod tries;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use ensuresec_common::{
    maps::{DROP_SAMPLE, PROG_DETECT},
    reason::Reason,
};

use crate::maps::{ES_CLASSES, ES_COUNTERS, ES_DETECT, ES_PARSED, ES_PROGS};

/// Counts the packet under `reason`; returns the reason's count on this
/// CPU before it.
#[inline(always)]
fn count(reason: Reason, bytes: u64) -> u64 {
    match ES_COUNTERS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU value, so no other program writes it concurrently.
        Some(counter) => unsafe {
            let before = (*counter).packets;
            (*counter).packets = before + 1;
            (*counter).bytes += bytes;
            before
        },
        None => 1,
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

/// `finish`, and for a drop, one in `DROP_SAMPLE` on this CPU counted
/// against its destination (with that weight).
#[inline(always)]
fn finish_at(reason: Reason, len: u32, parsed: &parse::Parsed) -> u32 {
    let before = count(reason, len as u64);
    if !reason.drops() {
        return xdp_action::XDP_PASS;
    }
    if before.is_multiple_of(DROP_SAMPLE) && parsed.ip.family != parse::Ip::NONE {
        // The result is used so that LLVM keeps the subprogram's return value.
        core::hint::black_box(drops::record(parsed));
    }
    xdp_action::XDP_DROP
}

#[inline(always)]
fn filter(ctx: &XdpContext) -> u32 {
    let parsed = parse::parse(ctx);
    let len = (ctx.data_end() - ctx.data()) as u32;
    if let Some(reason) = lists::lists(&parsed) {
        // Listed sources are decided: the cheapest drop, no features.
        return finish_at(reason, len, &parsed);
    }
    if ES_DETECT.get(0).is_some_and(|cfg| cfg.enabled != 0)
        && let Some(slot) = ES_PARSED.get_ptr_mut(0)
    {
        // Detection runs in its own program, so that the filter alone keeps its
        // cost; it reads this parse from the CPU's slot rather than parse again.
        // SAFETY: per-CPU slot of this CPU, read by the program tail-called
        // next on the same CPU; volatile so that the store is kept.
        unsafe { core::ptr::write_volatile(slot, parsed) };
        // A tail call does not return unless it failed.
        // SAFETY: the context is this program's; index 0 holds `ensuresec_detect`.
        unsafe { ES_PROGS.tail_call(ctx, PROG_DETECT) };
    }
    finish_at(verdict::policy(&parsed), len, &parsed)
}

/// Features, throttles and budgets, then the policy: the rest of `ensuresec`
/// for unlisted packets when detection is on.
#[xdp]
pub fn ensuresec_detect(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u32;
    let (Some(slot), Some(cfg)) = (ES_PARSED.get_ptr_mut(0), ES_DETECT.get(0)) else {
        return finish(Reason::Passed, len);
    };
    // The filter's parse of this packet, which it left in this CPU's slot
    // before the tail call. Read from a map, it is one unknown value for the
    // verifier rather than one per parse outcome, which keeps the paths it
    // explores within its limit.
    // SAFETY: per-CPU slot of this CPU, written by `filter` just before.
    let parsed = unsafe { &*slot };
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
    let reason = match Reason::from_id(verdict::mitigations(parsed, classes, cfg.cpus, now)) {
        Some(r) if r != Reason::Passed => r,
        _ => verdict::policy(parsed),
    };
    finish_at(reason, len, parsed)
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

/// Benchmark floor of a pass path: the frame goes on to the kernel's stack.
#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The rig's generator, run with live frames: each run sends its frame out
/// of the interface it is run on, with the source randomised when the
/// benchmark's source table is set (else as given).
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    bench::randomize_source(&ctx);
    xdp_action::XDP_TX
}

/// One trip event per run, about the frame's randomised source: the load of
/// the ring buffer benchmark (`bench-ring`).
#[xdp]
pub fn bench_events(ctx: XdpContext) -> u32 {
    bench::randomize_source(&ctx);
    bench::emit_event(&ctx);
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
