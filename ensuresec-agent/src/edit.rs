//! What each list operation does to one entry, as a pure function so that a
//! whole batch can be checked before any map is touched.

use ensuresec_common::{
    entry::Target,
    maps::{FLAG_ALLOW, FLAG_ALLOW_FROM_CONFIG, FLAG_BAN, FLAG_BLOCK, ListEntry},
};

use crate::error::{Error, Result};

/// One change to one target. Operators own blocks and allows; the agent owns
/// its bans; the config owns its allows. No operation of one owner changes
/// another owner's part of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The operator's block until `expires_at_ns` (0: forever). A new block
    /// replaces the operator's previous expiry; `reason_id` 0 keeps the
    /// previous reason.
    Block {
        expires_at_ns: u64,
        reason_id: u32,
        now_secs: u64,
    },
    /// Remove the operator's block; an error if the entry blocks for no one.
    /// An agent's ban stays (it is lifted with its decision).
    Unblock,
    /// The agent's ban until `expires_at_ns` (never 0 in practice), replacing
    /// its previous ban of the target.
    Ban { expires_at_ns: u64, now_secs: u64 },
    /// Remove the agent's ban, if any.
    Unban,
    /// Allowlist; `from_config` marks the config file as the owner.
    Allow { from_config: bool, now_secs: u64 },
    /// Remove an operator's allow; an error if absent or owned by the config.
    Unallow,
    /// Remove an allow the config no longer lists.
    UnallowConfig,
    /// Drop the parts whose expiry has passed (the agent's sweep); a no-op otherwise.
    Expire { now_ns: u64 },
}

fn empty(e: &ListEntry) -> bool {
    e.flags & (FLAG_ALLOW | FLAG_BLOCK | FLAG_BAN) == 0
}

fn clear_block(e: &mut ListEntry) {
    e.flags &= !FLAG_BLOCK;
    e.expires_at_ns = 0;
    e.reason_id = 0;
}

fn clear_ban(e: &mut ListEntry) {
    e.flags &= !FLAG_BAN;
    e.ban_expires_at_ns = 0;
}

/// The entry after `op`; `None` deletes it.
pub fn apply(target: &Target, current: Option<ListEntry>, op: Op) -> Result<Option<ListEntry>> {
    let mut e = current.unwrap_or_default();
    if current.is_none() {
        e.added_at_secs = match op {
            Op::Block { now_secs, .. } | Op::Ban { now_secs, .. } | Op::Allow { now_secs, .. } => {
                now_secs
            }
            _ => 0,
        };
    }
    match op {
        Op::Block {
            expires_at_ns,
            reason_id,
            now_secs,
        } => {
            e.flags |= FLAG_BLOCK;
            e.expires_at_ns = expires_at_ns;
            if reason_id != 0 {
                e.reason_id = reason_id;
            }
            e.added_at_secs = now_secs;
        }
        Op::Unblock => {
            if e.flags & (FLAG_BLOCK | FLAG_BAN) == 0 {
                return Err(Error::NotListed(target.to_string(), "blocklist"));
            }
            clear_block(&mut e);
        }
        Op::Ban { expires_at_ns, .. } => {
            e.flags |= FLAG_BAN;
            e.ban_expires_at_ns = expires_at_ns;
        }
        Op::Unban => clear_ban(&mut e),
        Op::Allow {
            from_config,
            now_secs,
        } => {
            if e.flags & FLAG_ALLOW == 0 {
                e.added_at_secs = now_secs;
            }
            e.flags |= FLAG_ALLOW;
            if from_config {
                e.flags |= FLAG_ALLOW_FROM_CONFIG;
            }
        }
        Op::Unallow => {
            if e.flags & FLAG_ALLOW == 0 {
                return Err(Error::NotListed(target.to_string(), "allowlist"));
            }
            if e.flags & FLAG_ALLOW_FROM_CONFIG != 0 {
                return Err(Error::OwnedByConfig(target.to_string()));
            }
            e.flags &= !FLAG_ALLOW;
        }
        Op::UnallowConfig => {
            if current.is_none() {
                return Ok(None);
            }
            e.flags &= !(FLAG_ALLOW | FLAG_ALLOW_FROM_CONFIG);
        }
        Op::Expire { now_ns } => {
            let Some(cur) = current else {
                return Ok(None);
            };
            let passed = |flag: u32, at: u64| cur.flags & flag != 0 && at != 0 && at <= now_ns;
            if passed(FLAG_BLOCK, cur.expires_at_ns) {
                clear_block(&mut e);
            }
            if passed(FLAG_BAN, cur.ban_expires_at_ns) {
                clear_ban(&mut e);
            }
        }
    }
    Ok((!empty(&e)).then_some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Target {
        "192.0.2.1".parse().unwrap()
    }

    const BLOCK: Op = Op::Block {
        expires_at_ns: 100,
        reason_id: 7,
        now_secs: 1,
    };
    const ALLOW: Op = Op::Allow {
        from_config: false,
        now_secs: 1,
    };

    const BAN: Op = Op::Ban {
        expires_at_ns: 50,
        now_secs: 1,
    };

    #[test]
    fn a_ban_and_a_block_are_separate_parts() {
        // The agent's ban over the operator's permanent block: both hold,
        // and each owner's removal takes only its own part.
        let forever = Op::Block {
            expires_at_ns: 0,
            reason_id: 3,
            now_secs: 1,
        };
        let e = apply(&t(), None, forever).unwrap();
        let both = apply(&t(), e, BAN).unwrap().unwrap();
        assert_eq!(both.flags, FLAG_BLOCK | FLAG_BAN);
        assert_eq!((both.expires_at_ns, both.reason_id), (0, 3));
        let unbanned = apply(&t(), Some(both), Op::Unban).unwrap().unwrap();
        assert_eq!(unbanned, e.unwrap());
        // The operator's block over a ban: removing the ban leaves the block.
        let banned = apply(&t(), None, BAN).unwrap();
        let blocked = apply(&t(), banned, BLOCK).unwrap();
        let left = apply(&t(), blocked, Op::Unban).unwrap().unwrap();
        assert_eq!((left.flags, left.expires_at_ns), (FLAG_BLOCK, 100));
        // And removing the block leaves the ban.
        let left = apply(&t(), blocked, Op::Unblock).unwrap().unwrap();
        assert_eq!((left.flags, left.ban_expires_at_ns), (FLAG_BAN, 50));
        assert_eq!(apply(&t(), Some(left), Op::Unban).unwrap(), None);
    }

    #[test]
    fn expire_drops_each_part_at_its_own_time() {
        let e = apply(&t(), None, BLOCK).unwrap();
        let both = apply(&t(), e, BAN).unwrap();
        let after_ban = apply(&t(), both, Op::Expire { now_ns: 60 })
            .unwrap()
            .unwrap();
        assert_eq!(after_ban.flags, FLAG_BLOCK);
        assert!(after_ban.blocks_at(60));
        assert_eq!(apply(&t(), both, Op::Expire { now_ns: 100 }).unwrap(), None);
    }

    #[test]
    fn block_then_unblock_deletes() {
        let e = apply(&t(), None, BLOCK).unwrap().unwrap();
        assert_eq!(
            (e.flags, e.expires_at_ns, e.reason_id, e.added_at_secs),
            (FLAG_BLOCK, 100, 7, 1)
        );
        assert_eq!(apply(&t(), Some(e), Op::Unblock).unwrap(), None);
    }

    #[test]
    fn reblocking_replaces_expiry_and_keeps_reason_when_none_given() {
        let e = apply(&t(), None, BLOCK).unwrap();
        let again = Op::Block {
            expires_at_ns: 0,
            reason_id: 0,
            now_secs: 2,
        };
        let e = apply(&t(), e, again).unwrap().unwrap();
        assert_eq!((e.expires_at_ns, e.reason_id, e.added_at_secs), (0, 7, 2));
    }

    #[test]
    fn removing_what_is_not_there_names_it() {
        let err = apply(&t(), None, Op::Unblock).unwrap_err();
        assert_eq!(err.to_string(), "192.0.2.1 is not on the blocklist");
        let err = apply(&t(), None, Op::Unallow).unwrap_err();
        assert_eq!(err.to_string(), "192.0.2.1 is not on the allowlist");
    }

    #[test]
    fn allow_and_block_coexist() {
        let e = apply(&t(), None, BLOCK).unwrap();
        let e = apply(&t(), e, ALLOW).unwrap().unwrap();
        assert_eq!(e.flags, FLAG_ALLOW | FLAG_BLOCK);
        let e = apply(&t(), Some(e), Op::Unallow).unwrap().unwrap();
        assert_eq!(e.flags, FLAG_BLOCK);
    }

    #[test]
    fn config_owned_allows_resist_manual_removal() {
        let cfg = Op::Allow {
            from_config: true,
            now_secs: 1,
        };
        let e = apply(&t(), None, cfg).unwrap();
        assert!(matches!(
            apply(&t(), e, Op::Unallow),
            Err(Error::OwnedByConfig(_))
        ));
        assert_eq!(apply(&t(), e, Op::UnallowConfig).unwrap(), None);
    }

    #[test]
    fn expire_only_drops_passed_blocks() {
        let e = apply(&t(), None, BLOCK).unwrap();
        assert_eq!(apply(&t(), e, Op::Expire { now_ns: 99 }).unwrap(), e);
        assert_eq!(apply(&t(), e, Op::Expire { now_ns: 100 }).unwrap(), None);
        let both = apply(&t(), e, ALLOW).unwrap();
        let kept = apply(&t(), both, Op::Expire { now_ns: 100 })
            .unwrap()
            .unwrap();
        assert_eq!(kept.flags, FLAG_ALLOW);
        let forever = apply(
            &t(),
            None,
            Op::Block {
                expires_at_ns: 0,
                reason_id: 0,
                now_secs: 0,
            },
        )
        .unwrap();
        assert_eq!(
            apply(&t(), forever, Op::Expire { now_ns: u64::MAX }).unwrap(),
            forever
        );
    }
}
