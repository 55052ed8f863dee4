//! A pinned map opened by path and driven with raw `bpf(2)` commands, so that
//! batched operations and single-element ones share one handle.

use std::os::fd::{AsFd, BorrowedFd};

use aya::{Pod, maps::MapData};

use crate::{
    error::{Error, Result},
    pins::PinDir,
    sys::{self, PartialBatch},
};

pub struct RawMap {
    pub name: &'static str,
    data: MapData,
}

impl RawMap {
    pub fn open(pins: &PinDir, name: &'static str) -> Result<Self> {
        let data = MapData::from_pin(pins.map(name)).map_err(|e| Error::map(name, e))?;
        Ok(Self { name, data })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.data.fd().as_fd()
    }

    pub fn into_data(self) -> MapData {
        self.data
    }

    pub fn capacity(&self) -> Result<u32> {
        Ok(self
            .data
            .info()
            .map_err(|e| Error::map(self.name, e))?
            .max_entries())
    }

    pub fn get<K: Pod, V: Pod>(&self, key: &K) -> Result<Option<V>> {
        sys::lookup(self.fd(), key).map_err(|e| Error::map(self.name, e))
    }

    pub fn set<K: Pod, V: Pod>(&self, key: &K, value: &V) -> Result<()> {
        sys::update_one(self.fd(), key, value).map_err(|e| Error::map(self.name, e))
    }

    pub fn remove<K: Pod>(&self, key: &K) -> Result<bool> {
        sys::delete_one(self.fd(), key).map_err(|e| Error::map(self.name, e))
    }

    /// Every entry (batched for hash maps and arrays).
    pub fn dump<K: Pod, V: Pod>(&self) -> Result<Vec<(K, V)>> {
        sys::dump(self.fd()).map_err(|e| Error::map(self.name, e))
    }

    /// Every entry of a map without batch support, one key at a time.
    pub fn dump_by_key<K: Pod, V: Pod>(&self) -> Result<Vec<(K, V)>> {
        let keys: Vec<K> = sys::keys(self.fd()).map_err(|e| Error::map(self.name, e))?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            // An entry deleted between the two calls is simply skipped.
            if let Some(v) = self.get(&k)? {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    pub fn update_batch<K: Pod, V: Pod>(
        &self,
        keys: &[K],
        values: &[V],
    ) -> Result<(), PartialBatch> {
        sys::update(self.fd(), keys, values)
    }

    pub fn delete_batch<K: Pod>(&self, keys: &[K]) -> Result<(), PartialBatch> {
        sys::delete(self.fd(), keys)
    }
}
