//! The clock every program reads: `CLOCK_MONOTONIC`, coarsely, read once
//! per tick per CPU.
//!
//! A helper call costs 20–25 ns on a host with return-thunk mitigations
//! (AMD's SRSO "Safe RET"), as much as the rest of a cheap path. The
//! kernel inlines `bpf_jiffies64` into a plain load, and the coarse clock
//! only moves on a tick, when jiffies do: so the clock is read again only
//! when jiffies have moved since this CPU last read it.

use aya_ebpf::helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

use crate::maps::ES_CLOCK;

/// This CPU's last reading of the coarse clock and the jiffies it was read at.
pub struct Reading {
    jiffies: u64,
    ns: u64,
}

/// `CLOCK_MONOTONIC_COARSE` as of this tick: expiry can be a tick late,
/// two when jiffies move just before the clock does (at most 8 ms at 250 Hz).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments, inlined by the verifier into a load.
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(reading) = ES_CLOCK.get_ptr_mut(0) else {
        return coarse();
    };
    // SAFETY: this CPU's value of a per-CPU map.
    let reading = unsafe { &mut *reading };
    if reading.jiffies != jiffies || reading.ns == 0 {
        reading.jiffies = jiffies;
        reading.ns = coarse();
    }
    reading.ns
}

#[inline(always)]
fn coarse() -> u64 {
    // SAFETY: helper without arguments, available to XDP programs.
    unsafe { bpf_ktime_get_coarse_ns() }
}
