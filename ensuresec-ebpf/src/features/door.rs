//! The doorkeeper's check in front of the per-source table (see
//! `ensuresec_common::features::door`).

use ensuresec_common::features::door;

use crate::maps::ES_DOOR;

/// Whether the doorkeeper lets the source of hash `h` into the table; a
/// missing bucket lets it in.
#[inline(always)]
pub(super) fn door_passes(h: u64, now: u64, mask: u32) -> bool {
    match ES_DOOR.get_ptr_mut(door::bucket(h, mask)) {
        // SAFETY: this CPU's value of a per-CPU map.
        Some(b) => door::pass(unsafe { &mut *b }, door::tag(h), now),
        None => true,
    }
}
