//! Layout of the exact-address tables shared by the XDP program and the agent.
//!
//! A BPF hash map lookup costs about 18 ns here even when hot, three times the
//! cost of a whole XDP program that only drops. These tables are bucketised
//! two-choice cuckoo hashes in plain arrays instead: an address lives in one of
//! two buckets picked by a seeded hash, so a lookup is two inlined array
//! lookups and a few compares, hit or miss. Keys of all zeroes mark empty slots
//! (0.0.0.0 and :: cannot be listed). User space keeps the table at most half
//! full, so an insert almost always finds a free slot in one of its buckets.

/// Addresses per IPv4 bucket (16 bytes).
pub const WAYS_V4: usize = 4;
/// Addresses per IPv6 bucket (64 bytes).
pub const WAYS_V6: usize = 4;

pub type BucketV4 = [u32; WAYS_V4];
pub type BucketV6 = [crate::features::AddrKey; WAYS_V6];

/// SplitMix64's finaliser: every input bit affects every output bit.
#[inline(always)]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The two candidate buckets for hash `h` in a table of `mask + 1` buckets
/// (a power of two, at least 2). They always differ.
#[inline(always)]
pub const fn bucket_pair(h: u64, mask: u32) -> (u32, u32) {
    let first = (h as u32) & mask;
    let mut second = ((h >> 32) as u32) & mask;
    if second == first {
        second = first ^ 1;
    }
    (first, second)
}

/// Buckets of an IPv4 address (as read from the packet: network order in memory).
#[inline(always)]
pub const fn buckets_v4(addr: u32, seed: u64, mask: u32) -> (u32, u32) {
    bucket_pair(mix64(addr as u64 ^ seed), mask)
}

/// Buckets of an IPv6 address.
#[inline(always)]
pub fn buckets_v6(addr: &crate::features::AddrKey, seed: u64, mask: u32) -> (u32, u32) {
    let [hi, lo] = addr.words();
    let h = mix64(lo ^ mix64(hi ^ seed));
    bucket_pair(h, mask)
}

/// Buckets needed so that `capacity` entries fill at most half of the slots.
pub const fn buckets_for(capacity: u32, ways: usize) -> u32 {
    let slots = (capacity as u64) * 2;
    let buckets = slots.div_ceil(ways as u64);
    let mut n = 2u64;
    while n < buckets {
        n *= 2;
    }
    n as u32
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn buckets_differ_and_stay_in_range() {
        for mask in [1u32, 7, 1023] {
            for a in 0..5000u32 {
                let (x, y) = buckets_v4(a, 42, mask);
                assert!(x <= mask && y <= mask && x != y);
            }
        }
    }

    #[test]
    fn sizing_keeps_load_at_most_half() {
        assert_eq!(buckets_for(1 << 20, WAYS_V4), 1 << 19);
        assert_eq!(buckets_for(4, WAYS_V4), 2);
        assert_eq!(buckets_for(1 << 18, WAYS_V6), 1 << 17);
        for cap in [1u32, 5, 1000, 123_457] {
            let n = buckets_for(cap, WAYS_V4) as u64;
            assert!(n * WAYS_V4 as u64 >= 2 * cap as u64);
        }
    }

    #[test]
    fn hashes_spread_sequential_addresses() {
        let mask = 1023;
        let mut hits = vec![0u32; 1024];
        for a in 0..8192u32 {
            hits[buckets_v4(a.to_be(), 7, mask).0 as usize] += 1;
        }
        // 8 expected per bucket; a crude check that nothing clusters badly.
        assert!(hits.iter().all(|&h| h < 30), "{:?}", hits.iter().max());
    }
}
