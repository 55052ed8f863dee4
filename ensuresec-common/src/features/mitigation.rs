//! What the agent writes back for the XDP program to enforce: per-source
//! throttles and the token buckets of throttles and budgets.

/// A mitigation on one source, written by the agent (`ES_THROTTLE`): packets
/// of `drop_classes` are dropped, packets of `limit_classes` are held to the
/// rate, the rest of the source's traffic passes. Scoping by class is what
/// keeps a mitigation of spoofable evidence from cutting off the address's
/// owner: a shopper whose address was spoofed in a reflection flood still
/// browses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttle {
    /// Packets per second allowed, over all CPUs.
    pub rate_pps: u32,
    pub burst: u32,
    /// Monotonic ns after which the throttle no longer applies.
    pub expires_at_ns: u64,
    pub limit_classes: u32,
    pub drop_classes: u32,
}

/// Token bucket state, per CPU (`ES_THROTTLE_STATE`, `ES_BUDGET_STATE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens in thousandths of a packet.
    pub milli_tokens: u64,
    pub last_ns: u64,
}

/// Refills and takes one token; returns whether the packet may pass.
/// `rate_pps` and `burst` are this CPU's share.
#[inline(always)]
pub fn take_token(b: &mut Bucket, rate_pps: u64, burst: u64, now_ns: u64) -> bool {
    let cap = burst.max(1) * 1000;
    if b.last_ns == 0 {
        b.milli_tokens = cap;
    } else {
        // In microseconds, capped at 100 s, so that rate * elapsed never
        // overflows (and needs no 128-bit multiply, which BPF lacks).
        let elapsed_us = (now_ns.saturating_sub(b.last_ns) / 1000).min(100_000_000);
        // rate (pps) * elapsed (us) / 1e6 packets = rate * elapsed / 1e3 milli-packets
        let refill = (rate_pps & 0xffff_ffff) * elapsed_us / 1000;
        b.milli_tokens = (b.milli_tokens + refill).min(cap);
    }
    b.last_ns = now_ns;
    if b.milli_tokens >= 1000 {
        b.milli_tokens -= 1000;
        true
    } else {
        false
    }
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let mut b = Bucket::default();
        let mut passed = 0;
        for _ in 0..100 {
            if take_token(&mut b, 10, 5, 1_000_000_000) {
                passed += 1;
            }
        }
        assert_eq!(passed, 5, "the burst, all at one instant");
        // One second later: ten more (rate 10 pps), capped by the burst of 5.
        let mut later = 0;
        for i in 0..100 {
            if take_token(&mut b, 10, 5, 2_000_000_000 + i) {
                later += 1;
            }
        }
        assert_eq!(later, 5);
        // A tenth of a second later: one token.
        assert!(take_token(&mut b, 10, 5, 2_100_000_100));
        assert!(!take_token(&mut b, 10, 5, 2_100_000_200));
    }
}
