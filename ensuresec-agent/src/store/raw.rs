//! A pinned map opened by path and driven with raw `bpf(2)` commands, so that
//! batched operations and single-element ones share one handle.

use std::os::fd::{AsFd, BorrowedFd};

use aya::{Pod, maps::MapData};

use crate::{
    error::{Error, Result},
    pins::PinDir,
    sys::{self, PartialBatch},
};

/// `BPF_F_MMAPABLE`.
pub const MMAPABLE: u32 = 1 << 10;

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

    /// Every element of an array created with `BPF_F_MMAPABLE`, copied out of a
    /// shared mapping: tens of milliseconds for what a batched lookup reads in
    /// a third of a second (two million elements).
    pub fn read_mapped<V: Pod>(&self) -> Result<Vec<V>> {
        let info = self.data.info().map_err(|e| Error::map(self.name, e))?;
        let count = info.max_entries() as usize;
        let stride = (info.value_size() as usize).div_ceil(8) * 8;
        if stride != std::mem::size_of::<V>() || info.map_flags() & MMAPABLE == 0 {
            return Err(Error::map(self.name, "not a mappable array of this type"));
        }
        let len = count * stride;
        // SAFETY: read-only shared mapping of a BPF array of `len` bytes.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&self.fd()),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::map(self.name, std::io::Error::last_os_error()));
        }
        let base = ptr as *const V;
        // The kernel may write while we read: copy each element with a
        // volatile read instead of taking a reference to shared memory.
        // SAFETY: `count` elements of `V` lie in the mapping.
        let out = (0..count)
            .map(|i| unsafe { std::ptr::read_volatile(base.add(i)) })
            .collect();
        // SAFETY: unmapping what was mapped above.
        unsafe { libc::munmap(ptr, len) };
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
