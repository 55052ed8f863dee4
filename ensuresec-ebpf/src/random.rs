//! Random numbers without a helper call: a per-CPU SplitMix64 generator,
//! seeded from `bpf_get_prandom_u32` on its first use on the CPU. (A helper
//! call costs 20–25 ns here; see `clock`.) Nothing outside the kernel sees
//! its output: it picks which packets of a heavy window are counted.

use aya_ebpf::helpers::generated::bpf_get_prandom_u32;

use crate::maps::ES_RANDOM;

/// A fresh draw of 32 random bits.
#[inline(always)]
pub fn random() -> u32 {
    let Some(state) = ES_RANDOM.get_ptr_mut(0) else {
        return prandom();
    };
    // SAFETY: this CPU's value of a per-CPU map.
    let state = unsafe { &mut *state };
    if *state == 0 {
        *state = ((prandom() as u64) << 32) | prandom() as u64;
    }
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

#[inline(always)]
fn prandom() -> u32 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_prandom_u32() }
}
