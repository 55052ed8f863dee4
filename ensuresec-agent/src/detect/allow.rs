//! Whether an allowlist entry covers a source, for every decision: its exact
//! entry is one lookup; the allowlist's prefixes are read again only when
//! the lists changed (the control record's generation), not per decision.

use std::net::IpAddr;

use ensuresec_common::{entry::Target, maps::FLAG_ALLOW};

use crate::{error::Result, store::Store};

#[derive(Default)]
pub struct AllowCache {
    generation: Option<u32>,
    prefixes: Vec<Target>,
}

impl AllowCache {
    /// The allowlist entry that covers `addr`, if any.
    pub fn covering(&mut self, store: &Store, addr: IpAddr) -> Result<Option<Target>> {
        let exact = Target::of_addr(addr);
        if store
            .entries_for(&exact)?
            .is_some_and(|e| e.flags & FLAG_ALLOW != 0)
        {
            return Ok(Some(exact));
        }
        let generation = store.control()?.generation;
        if self.generation != Some(generation) {
            self.prefixes = store
                .prefix_entries()?
                .into_iter()
                .filter(|l| l.entry.flags & FLAG_ALLOW != 0)
                .map(|l| l.target)
                .collect();
            self.generation = Some(generation);
        }
        Ok(self.prefixes.iter().find(|t| t.contains(addr)).copied())
    }
}
