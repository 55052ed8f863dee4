//! The doorkeeper in front of the per-source table: a small per-CPU table of
//! recently seen sources, which a source must pass twice before it gets a
//! slot. A spoofed flood's one-packet sources then cost one cache line of a
//! table that fits in L2, not a slot reset in a table of megabytes; their
//! packets still count in their destination's aggregates, which stay exact.
//!
//! A bucket is one cache line of entries. An entry is the source's tag (high
//! 32 bits, never 0), when it was last seen (`now >> TIME_SHIFT`, 31 bits,
//! wrapping) and whether it was admitted (bit 0). A new source takes the
//! bucket's empty entry, else the one seen longest ago, admitted sources
//! counting as `ADMITTED_GRACE` younger: a flood of new sources churns the
//! unadmitted entries and leaves the sources in the table theirs.

/// Entries per bucket: one 64-byte cache line.
pub const DOOR_WAYS: usize = 8;

pub type DoorBucket = [u64; DOOR_WAYS];

/// Time unit of an entry: 2^20 ns, about 1 ms.
pub const TIME_SHIFT: u32 = 20;
const TIME_MASK: u32 = 0x7fff_ffff;

/// How much younger an admitted source counts when a bucket is full (about
/// 4 s): longer than a window, so that an attacker's entry survives the
/// floods beside it.
pub const ADMITTED_GRACE: u32 = 4096;

/// The tag of a key hash (`key_hash`): its low 32 bits, never 0.
#[inline(always)]
pub const fn tag(h: u64) -> u64 {
    (h as u32 | 1) as u64
}

/// The bucket of a key hash in a doorkeeper of `mask + 1` buckets: bits the
/// table's set index does not use.
#[inline(always)]
pub const fn bucket(h: u64, mask: u32) -> u32 {
    (h >> 32) as u32 & mask
}

/// An entry: `tag`, seen at `now`, admitted or not.
#[inline(always)]
pub const fn entry(tag: u64, now: u64, admitted: bool) -> u64 {
    tag << 32 | ((((now >> TIME_SHIFT) as u32) & TIME_MASK) as u64) << 1 | admitted as u64
}

/// How stale an entry is, to pick a victim: how long ago (in time units) it
/// was seen, admitted ones counting `ADMITTED_GRACE` younger, times two,
/// plus one for an unadmitted entry (which goes first on a tie); empty
/// entries are the stalest of all.
#[inline(always)]
pub const fn staleness(e: u64, now: u64) -> u64 {
    if e == 0 {
        return u64::MAX;
    }
    let admitted = (e & 1) as u32;
    let seen = ((e >> 1) as u32) & TIME_MASK;
    let age = (((now >> TIME_SHIFT) as u32).wrapping_sub(seen)) & TIME_MASK;
    (age.saturating_sub(ADMITTED_GRACE * admitted) as u64) << 1 | (admitted ^ 1) as u64
}

/// What the doorkeeper says of a source's packet (`pass`): whether the
/// source may use the table, updating the bucket. The source's first packet
/// (no entry with its tag) takes an entry and is refused; its next one, or
/// any of an admitted source, is let in.
#[inline(always)]
pub fn pass(bucket: &mut DoorBucket, tag: u64, now: u64) -> bool {
    let mut victim = 0;
    let mut oldest = 0;
    let mut i = 0;
    while i < DOOR_WAYS {
        let e = bucket[i];
        if e >> 32 == tag {
            bucket[i] = entry(tag, now, true);
            return true;
        }
        let s = staleness(e, now);
        if s >= oldest {
            oldest = s;
            victim = i;
        }
        i += 1;
    }
    bucket[victim % DOOR_WAYS] = entry(tag, now, false);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1 << TIME_SHIFT;

    #[test]
    fn a_source_passes_with_its_second_packet_and_after() {
        let mut b = [0u64; DOOR_WAYS];
        assert!(!pass(&mut b, tag(7), 10 * MS));
        assert!(pass(&mut b, tag(7), 11 * MS));
        assert!(pass(&mut b, tag(7), 12 * MS));
        assert_eq!(b.iter().filter(|e| **e != 0).count(), 1);
    }

    #[test]
    fn new_sources_take_the_unadmitted_entries_first() {
        let mut b = [0u64; DOOR_WAYS];
        // Two admitted sources.
        for t in [1u64, 2] {
            pass(&mut b, tag(t << 1), 0);
            assert!(pass(&mut b, tag(t << 1), MS));
        }
        // A flood of one-packet sources, each a little later.
        for n in 0..10_000u64 {
            assert!(!pass(&mut b, tag((n + 100) << 1), (2 + n) * MS / 8));
        }
        // The admitted ones are still there (well within the grace).
        assert!(pass(&mut b, tag(1 << 1), 1_300 * MS));
        assert!(pass(&mut b, tag(2 << 1), 1_300 * MS));
    }

    #[test]
    fn an_idle_admitted_source_gives_way_after_the_grace() {
        let mut b = [0u64; DOOR_WAYS];
        pass(&mut b, tag(2), 0);
        assert!(pass(&mut b, tag(2), MS));
        // Fill every other entry with admitted sources seen recently.
        let later = (ADMITTED_GRACE as u64 + 100) * MS;
        for t in 1..DOOR_WAYS as u64 {
            pass(&mut b, tag(t << 8), later);
            pass(&mut b, tag(t << 8), later);
        }
        // A new source takes the idle one's entry.
        assert!(!pass(&mut b, tag(99 << 8), later + MS));
        assert!(!pass(&mut b, tag(2), later + 2 * MS));
    }

    #[test]
    fn time_wraps() {
        let mut b = [0u64; DOOR_WAYS];
        let near_wrap = ((TIME_MASK as u64) - 1) * MS;
        assert!(!pass(&mut b, tag(5), near_wrap));
        assert!(pass(&mut b, tag(5), near_wrap + 4 * MS));
        let e = b.iter().find(|e| **e != 0).expect("an entry");
        assert_eq!(staleness(*e, near_wrap + 4 * MS), 0);
    }
}
