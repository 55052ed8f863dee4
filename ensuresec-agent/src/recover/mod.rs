//! Recovery: putting the desired state back into new maps (after a reboot
//! or an upgrade that changed their layout), keeping the journal's copy of
//! it in line with the maps, explaining why an address is treated as it is,
//! and undoing a detector's decisions or an import. Writes to the maps go
//! through `store`.

pub mod explain;
pub mod reconcile;
pub mod restore;
pub mod rollback;
pub mod startup;
