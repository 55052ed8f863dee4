//! How overlapping list entries combine: an allow beats any block, and among
//! blocks the one that lasts longest decides (expiry 0 means forever). An
//! entry blocks by its operator's block, its agent's ban, or both, until the
//! later of the two ends.

use crate::maps::{FLAG_ALLOW, FLAG_BLOCK, ListEntry};

/// When `e` stops blocking as an ordering key: 0 (forever) sorts last.
fn expiry_key(end: u64) -> u64 {
    if end == 0 { u64::MAX } else { end }
}

/// Whether `a` decides the verdict over `b` for addresses both cover.
pub fn wins_over(a: &ListEntry, b: &ListEntry) -> bool {
    let (a_allow, b_allow) = (a.flags & FLAG_ALLOW != 0, b.flags & FLAG_ALLOW != 0);
    if a_allow != b_allow {
        return a_allow;
    }
    if a_allow {
        return false;
    }
    match (a.block_ends_ns(), b.block_ends_ns()) {
        (Some(a_end), Some(b_end)) => expiry_key(a_end) > expiry_key(b_end),
        (a_end, _) => a_end.is_some(),
    }
}

/// The combined verdict of two entries covering the same addresses; only
/// `flags` (allow, and block for either part) and `expires_at_ns` (the later
/// end) are meaningful in the result.
pub fn merge(a: &ListEntry, b: &ListEntry) -> ListEntry {
    let allow = (a.flags | b.flags) & FLAG_ALLOW;
    let end = match (a.block_ends_ns(), b.block_ends_ns()) {
        (Some(x), Some(y)) => Some(if expiry_key(x) >= expiry_key(y) { x } else { y }),
        (x, y) => x.or(y),
    };
    ListEntry {
        expires_at_ns: end.unwrap_or(0),
        flags: allow | if end.is_some() { FLAG_BLOCK } else { 0 },
        ..ListEntry::default()
    }
}

/// The verdict an entry gives at `now_ns`: `Some(true)` allow, `Some(false)` block.
pub fn verdict_at(e: &ListEntry, now_ns: u64) -> Option<bool> {
    if e.flags & FLAG_ALLOW != 0 {
        Some(true)
    } else if e.blocks_at(now_ns) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(exp: u64) -> ListEntry {
        ListEntry {
            expires_at_ns: exp,
            flags: FLAG_BLOCK,
            ..Default::default()
        }
    }
    fn allow() -> ListEntry {
        ListEntry {
            flags: FLAG_ALLOW,
            ..Default::default()
        }
    }

    #[test]
    fn allow_beats_block() {
        assert!(wins_over(&allow(), &block(0)));
        assert!(!wins_over(&block(0), &allow()));
        assert_eq!(verdict_at(&merge(&block(0), &allow()), 5), Some(true));
    }

    #[test]
    fn longest_block_wins_and_forever_is_longest() {
        assert!(wins_over(&block(20), &block(10)));
        assert!(wins_over(&block(0), &block(u64::MAX - 1)));
        assert_eq!(merge(&block(10), &block(20)).expires_at_ns, 20);
        assert_eq!(merge(&block(0), &block(20)).expires_at_ns, 0);
    }

    fn ban(exp: u64) -> ListEntry {
        ListEntry {
            ban_expires_at_ns: exp,
            flags: crate::maps::FLAG_BAN,
            ..Default::default()
        }
    }

    /// The agent's ban blocks like the operator's block, and an entry with
    /// both blocks until the later end.
    #[test]
    fn bans_block_and_both_parts_last_until_the_later_end() {
        assert!(wins_over(&ban(20), &block(10)));
        assert!(wins_over(&block(0), &ban(20)));
        assert_eq!(
            verdict_at(&merge(&ListEntry::default(), &ban(20)), 5),
            Some(false)
        );
        let both = ListEntry {
            flags: FLAG_BLOCK | crate::maps::FLAG_BAN,
            ..block(10)
        };
        let both = ListEntry {
            ban_expires_at_ns: 30,
            ..both
        };
        assert_eq!(merge(&both, &block(20)).expires_at_ns, 30);
        assert_eq!(verdict_at(&merge(&both, &allow()), 5), Some(true));
    }

    #[test]
    fn expired_blocks_give_no_verdict() {
        assert_eq!(verdict_at(&block(10), 10), None);
        assert_eq!(verdict_at(&block(10), 9), Some(false));
        assert_eq!(verdict_at(&block(0), u64::MAX), Some(false));
        assert_eq!(verdict_at(&ListEntry::default(), 0), None);
    }
}
