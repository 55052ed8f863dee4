//! How overlapping list entries combine: an allow beats any block, and among
//! blocks the one that lasts longest decides (expiry 0 means forever).

use crate::maps::{FLAG_ALLOW, FLAG_BLOCK, ListEntry};

/// Expiry as an ordering key: 0 (forever) sorts last.
fn expiry_key(e: &ListEntry) -> u64 {
    if e.expires_at_ns == 0 {
        u64::MAX
    } else {
        e.expires_at_ns
    }
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
    let (a_block, b_block) = (a.flags & FLAG_BLOCK != 0, b.flags & FLAG_BLOCK != 0);
    if a_block != b_block {
        return a_block;
    }
    a_block && expiry_key(a) > expiry_key(b)
}

/// The combined verdict of two entries covering the same addresses; only
/// `flags` (allow/block) and `expires_at_ns` are meaningful in the result.
pub fn merge(a: &ListEntry, b: &ListEntry) -> ListEntry {
    let allow = (a.flags | b.flags) & FLAG_ALLOW;
    let a_block = a.flags & FLAG_BLOCK != 0;
    let b_block = b.flags & FLAG_BLOCK != 0;
    let expires_at_ns = match (a_block, b_block) {
        (true, true) => {
            if expiry_key(a) >= expiry_key(b) {
                a.expires_at_ns
            } else {
                b.expires_at_ns
            }
        }
        (true, false) => a.expires_at_ns,
        (false, true) => b.expires_at_ns,
        (false, false) => 0,
    };
    let block = if a_block || b_block { FLAG_BLOCK } else { 0 };
    ListEntry {
        expires_at_ns,
        flags: allow | block,
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

    #[test]
    fn expired_blocks_give_no_verdict() {
        assert_eq!(verdict_at(&block(10), 10), None);
        assert_eq!(verdict_at(&block(10), 9), Some(false));
        assert_eq!(verdict_at(&block(0), u64::MAX), Some(false));
        assert_eq!(verdict_at(&ListEntry::default(), 0), None);
    }
}
