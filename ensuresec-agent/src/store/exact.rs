//! The exact-address tables (see `ensuresec_common::exact`): finding, adding,
//! moving and removing keys in their two buckets, in an order that never shows
//! the XDP program a key without its value or a value of another key.

use std::{collections::HashMap, hash::Hash};

use aya::Pod;
use ensuresec_common::maps::ListEntry;

use super::{
    RawMap,
    cuckoo::{Image, Move, Slot},
    raw::Mapped,
};
use crate::error::{Error, Result};

/// A key type of an exact table: all-zero is the empty slot.
pub trait Key: Pod + Copy + Eq + Hash + Default + std::fmt::Debug {}
impl Key for u32 {}
impl Key for ensuresec_common::features::AddrKey {}

/// The two candidate buckets of a key (seeded hash, table size).
pub type BucketsOf<K> = Box<dyn Fn(&K) -> (u32, u32) + Send + Sync>;

/// One table: bucket keys, slot values, and how to hash.
pub struct Table<K: Key, const W: usize> {
    pub keys: RawMap,
    pub vals: RawMap,
    pub capacity: u32,
    pub buckets: BucketsOf<K>,
}

/// The changes to one table, with what to restore on failure.
pub struct Plan<K> {
    pub upserts: Vec<(K, ListEntry)>,
    pub deletes: Vec<K>,
    pub prior: std::collections::HashMap<K, ListEntry>,
}

impl<K: Key> Plan<K> {
    /// Entries the table gains (new keys) minus those it loses.
    pub fn growth(&self) -> isize {
        let added = self
            .upserts
            .iter()
            .filter(|(k, _)| !self.prior.contains_key(k))
            .count() as isize;
        added - self.deletes.len() as isize
    }
}

impl<K: Key, const W: usize> Table<K, W> {
    fn slot_index(s: Slot) -> u32 {
        s.bucket * W as u32 + s.way as u32
    }

    fn bucket(&self, b: u32) -> Result<[K; W]> {
        self.keys
            .get::<u32, [K; W]>(&b)?
            .ok_or_else(|| Error::map(self.keys.name, format!("bucket {b} missing")))
    }

    /// The value of `key`, if listed.
    pub fn get(&self, key: &K) -> Result<Option<ListEntry>> {
        let (a, b) = (self.buckets)(key);
        for bucket in [a, b] {
            if let Some(way) = self.bucket(bucket)?.iter().position(|k| k == key) {
                return self.vals.get(&Self::slot_index(Slot { bucket, way }));
            }
        }
        Ok(None)
    }

    /// Keys in the table, counted from the key buckets (no values read).
    pub fn count(&self) -> Result<usize> {
        let mut n = 0;
        self.keys
            .scan(|_, bucket: [K; W]| n += bucket.iter().filter(|k| **k != K::default()).count())?;
        Ok(n)
    }

    /// Current values of `keys`, reading the whole table when there are many.
    pub fn current(&self, keys: &[K]) -> Result<std::collections::HashMap<K, ListEntry>> {
        if keys.len() > 2048 {
            return Ok(self.dump()?.into_iter().collect());
        }
        let mut out = std::collections::HashMap::with_capacity(keys.len());
        for k in keys {
            if let Some(v) = self.get(k)? {
                out.insert(*k, v);
            }
        }
        Ok(out)
    }

    /// Every (key, value). Only the values of occupied slots are read.
    pub fn dump(&self) -> Result<Vec<(K, ListEntry)>> {
        let mut occupied = Vec::new();
        self.keys.scan(|b, bucket: [K; W]| {
            for (way, k) in bucket.iter().enumerate() {
                if *k != K::default() {
                    let slot = Slot {
                        bucket: b as u32,
                        way,
                    };
                    occupied.push((*k, Self::slot_index(slot)));
                }
            }
        })?;
        if occupied.is_empty() {
            return Ok(Vec::new());
        }
        let slots = self.vals.capacity()? as usize;
        if occupied.len() * 64 < slots {
            // Sparse: read just those slots.
            let values = self.vals.mapped::<ListEntry>()?;
            return Ok(occupied
                .into_iter()
                .map(|(k, i)| (k, values.get(i as usize)))
                .collect());
        }
        // Dense: one forward pass over the values, in slot order.
        occupied.sort_unstable_by_key(|(_, i)| *i);
        let mut out = Vec::with_capacity(occupied.len());
        let mut next = occupied.iter().peekable();
        self.vals.scan(|i, v: ListEntry| {
            while let Some((k, _)) = next.next_if(|(_, slot)| *slot as usize == i) {
                out.push((*k, v));
            }
        })?;
        Ok(out)
    }

    /// Applies a plan. Keys placed by this change are moved in the image
    /// only; keys the kernel already sees are moved in the kernel at once, in
    /// an order that keeps them findable. Then every upserted key's value is
    /// written at its final slot, then the buckets that make new keys
    /// reachable, then the values of emptied slots are cleared. A failure
    /// restores the buckets and values it changed.
    pub fn apply(&self, plan: &Plan<K>, what: &'static str) -> Result<()> {
        if plan.upserts.is_empty() && plan.deletes.is_empty() {
            return Ok(());
        }
        let mapped = self.keys.mapped::<[K; W]>()?;
        let mut image = Image::new(|b| mapped.get(b as usize));
        for key in &plan.deletes {
            image.remove(key, (self.buckets)(key));
        }
        // Slots a move emptied in the kernel: if the change fails before a
        // key takes them, their old values are cleared.
        let mut vacated = Vec::new();
        for (key, _) in &plan.upserts {
            let pair = (self.buckets)(key);
            if image.find(key, pair).is_some() {
                continue;
            }
            let Some((_, moves)) = image.place(*key, pair, &*self.buckets) else {
                // Nothing but verdict-neutral moves was written yet.
                self.clear_empty(&vacated, &mapped);
                return Err(Error::TableCrowded { what });
            };
            for m in &moves {
                if let Err(e) = self.move_in_kernel(m, &mapped) {
                    self.clear_empty(&vacated, &mapped);
                    return Err(e);
                }
                vacated.push(m.from);
            }
        }

        let slot_of = |key: &K| {
            let slot = image
                .find(key, (self.buckets)(key))
                .expect("every upserted key was placed");
            Self::slot_index(slot)
        };
        let (vkeys, vvals): (Vec<u32>, Vec<ListEntry>) =
            plan.upserts.iter().map(|(k, v)| (slot_of(k), *v)).unzip();
        let prior_values: Vec<(u32, ListEntry)> = plan
            .upserts
            .iter()
            .filter_map(|(k, _)| plan.prior.get(k).map(|old| (slot_of(k), *old)))
            .collect();
        let mut dirty: Vec<u32> = image.dirty.iter().copied().collect();
        dirty.sort_unstable();
        let new_buckets: Vec<[K; W]> = dirty.iter().map(|b| image.bucket(*b)).collect();
        let originals: HashMap<u32, [K; W]> = dirty
            .iter()
            .map(|b| (*b, mapped.get(*b as usize)))
            .collect();
        let result = self
            .vals
            .update_batch(&vkeys, &vvals)
            .and_then(|()| self.keys.update_batch(&dirty, &new_buckets));
        if let Err(partial) = result {
            self.restore(&originals, &prior_values);
            self.clear_empty(&vacated, &mapped);
            return Err(Error::map_io(self.keys.name, partial.error));
        }
        // Freed slots stay empty until the next change, so no reader can take
        // their old value for another key's; cleared all the same.
        let freed: Vec<u32> = image.freed().map(|s| Self::slot_index(*s)).collect();
        let zeros = vec![ListEntry::default(); freed.len()];
        if let Err(partial) = self.vals.update_batch(&freed, &zeros) {
            tracing::warn!(map = self.vals.name, error = %partial.error, "could not clear the values of removed entries");
        }
        Ok(())
    }

    /// Clears the values of those of `slots` that are empty in the kernel.
    fn clear_empty(&self, slots: &[Slot], mapped: &Mapped<[K; W]>) {
        for s in slots {
            if mapped.get(s.bucket as usize)[s.way] == K::default()
                && let Err(e) = self.vals.set(&Self::slot_index(*s), &ListEntry::default())
            {
                tracing::warn!(map = self.vals.name, error = %e, "could not clear a vacated slot");
            }
        }
    }

    /// Moves a key the kernel sees to its other bucket, in an order that
    /// keeps it findable: value, then the key at its new place, then the key
    /// gone from the old one. Moves change no verdict, so they need no undo.
    /// A key this change placed is not in the kernel yet: nothing to do. The
    /// freed slot's new value is written by a later syscall, long after any
    /// reader that saw the moved key there has read its value (a lookup takes
    /// nanoseconds).
    fn move_in_kernel(&self, m: &Move<K>, mapped: &Mapped<[K; W]>) -> Result<()> {
        let mut from = mapped.get(m.from.bucket as usize);
        if from[m.from.way] != m.key {
            return Ok(());
        }
        let value: ListEntry = self
            .vals
            .get(&Self::slot_index(m.from))?
            .unwrap_or_default();
        self.vals.set(&Self::slot_index(m.to), &value)?;
        let mut to = mapped.get(m.to.bucket as usize);
        to[m.to.way] = m.key;
        self.keys.set(&m.to.bucket, &to)?;
        from = mapped.get(m.from.bucket as usize);
        from[m.from.way] = K::default();
        self.keys.set(&m.from.bucket, &from)?;
        Ok(())
    }

    /// Best effort after a failure: the buckets as they were and the values of
    /// updated keys as they were.
    fn restore(&self, originals: &HashMap<u32, [K; W]>, prior: &[(u32, ListEntry)]) {
        let (dirty, old): (Vec<u32>, Vec<[K; W]>) = originals.iter().map(|(b, k)| (*b, *k)).unzip();
        let (pk, pv): (Vec<u32>, Vec<ListEntry>) = prior.iter().copied().unzip();
        if self.keys.update_batch(&dirty, &old).is_err()
            || self.vals.update_batch(&pk, &pv).is_err()
        {
            tracing::error!(
                map = self.keys.name,
                "could not restore the table after a failure"
            );
        }
    }

    /// Reverts an applied plan (a later step of the same change failed).
    pub fn undo(&self, plan: &Plan<K>) {
        let touched = plan
            .upserts
            .iter()
            .map(|(k, _)| *k)
            .chain(plan.deletes.iter().copied());
        let mut inverse = Plan {
            upserts: Vec::new(),
            deletes: Vec::new(),
            prior: plan.upserts.iter().copied().collect(),
        };
        for key in touched {
            match plan.prior.get(&key) {
                Some(old) => inverse.upserts.push((key, *old)),
                None => inverse.deletes.push(key),
            }
        }
        if let Err(e) = self.apply(&inverse, "") {
            tracing::error!(map = self.keys.name, error = %e, "could not undo a partial change");
        }
    }
}
