//! The clock every program reads: `CLOCK_MONOTONIC`, coarsely.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;

/// `CLOCK_MONOTONIC_COARSE`: a few ns to read where the precise clocks cost
/// over 20 ns here; expiry can be one tick (at most 4 ms) late.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments, available to XDP programs.
    unsafe { bpf_ktime_get_coarse_ns() }
}
