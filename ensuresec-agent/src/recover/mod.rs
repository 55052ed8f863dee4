//! Recovery: putting the desired state back into new maps (after a reboot
//! or an upgrade that changed their layout) and keeping the journal's copy
//! of it in line with the maps. Writes to the maps go through `store`.

pub mod reconcile;
pub mod restore;
pub mod startup;
