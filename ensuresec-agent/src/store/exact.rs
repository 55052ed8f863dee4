//! Exact-address maps: batched writes that are undone if any part fails.

use std::{collections::HashMap, hash::Hash};

use aya::Pod;
use ensuresec_common::maps::ListEntry;

use super::RawMap;
use crate::error::{Error, Result};

/// Edits above this size read the whole map once instead of one key at a time.
pub const DUMP_THRESHOLD: usize = 2048;

/// Current values of `keys`, and the map's entry count when it was read whole.
pub fn current<K: Pod + Hash + Eq>(
    map: &RawMap,
    keys: &[K],
) -> Result<(HashMap<K, ListEntry>, Option<usize>)> {
    if keys.len() > DUMP_THRESHOLD {
        let all: HashMap<K, ListEntry> = map.dump()?.into_iter().collect();
        let count = all.len();
        return Ok((all, Some(count)));
    }
    let mut out = HashMap::with_capacity(keys.len());
    for k in keys {
        if let Some(v) = map.get(k)? {
            out.insert(*k, v);
        }
    }
    Ok((out, None))
}

/// The writes one exact map needs, with what to restore on failure.
pub struct ExactPlan<K> {
    pub upserts: Vec<(K, ListEntry)>,
    pub deletes: Vec<K>,
    pub prior: HashMap<K, ListEntry>,
}

impl<K: Pod + Hash + Eq> ExactPlan<K> {
    /// Entries the map gains (new keys) minus those it loses.
    pub fn growth(&self) -> isize {
        let added = self
            .upserts
            .iter()
            .filter(|(k, _)| !self.prior.contains_key(k))
            .count() as isize;
        added - self.deletes.len() as isize
    }

    /// Applies the plan; on failure restores every key it touched.
    pub fn apply(&self, map: &RawMap, what: &'static str, setting: &'static str) -> Result<()> {
        let (keys, values): (Vec<K>, Vec<ListEntry>) = self.upserts.iter().copied().unzip();
        if let Err(partial) = map.update_batch(&keys, &values) {
            self.restore(map, &keys[..partial.done.min(keys.len())]);
            if partial.error.raw_os_error() == Some(libc::E2BIG) {
                return Err(Error::Capacity {
                    what,
                    need: map.capacity()? as usize + 1,
                    capacity: map.capacity()?,
                    setting,
                });
            }
            return Err(Error::map(map.name, partial.error));
        }
        if let Err(partial) = map.delete_batch(&self.deletes) {
            self.restore(map, &self.deletes[..partial.done.min(self.deletes.len())]);
            self.restore(map, &keys);
            return Err(Error::map(map.name, partial.error));
        }
        Ok(())
    }

    /// Puts back the prior value of every key the plan touched.
    pub fn undo(&self, map: &RawMap) {
        let keys: Vec<K> = self.upserts.iter().map(|(k, _)| *k).collect();
        self.restore(map, &keys);
        self.restore(map, &self.deletes);
    }

    fn restore(&self, map: &RawMap, keys: &[K]) {
        for k in keys {
            let result = match self.prior.get(k) {
                Some(v) => map.set(k, v),
                None => map.remove(k).map(|_| ()),
            };
            if let Err(e) = result {
                tracing::error!(map = map.name, error = %e, "could not undo a partial change");
            }
        }
    }
}
