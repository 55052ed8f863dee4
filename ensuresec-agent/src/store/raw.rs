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

    /// The map's kernel id.
    pub fn id(&self) -> Result<u32> {
        sys::map_id(self.fd()).map_err(|e| Error::map(self.name, e))
    }

    /// The values of `key` on each of `cpus` CPUs (a per-CPU map).
    pub fn get_per_cpu<K: Pod, V: Pod>(&self, key: &K, cpus: usize) -> Result<Option<Vec<V>>> {
        sys::lookup_per_cpu(self.fd(), key, cpus).map_err(|e| Error::map(self.name, e))
    }

    pub fn capacity(&self) -> Result<u32> {
        Ok(self
            .data
            .info()
            .map_err(|e| Error::map(self.name, e))?
            .max_entries())
    }

    pub fn get<K: Pod, V: Pod>(&self, key: &K) -> Result<Option<V>> {
        sys::lookup(self.fd(), key).map_err(|e| Error::map_io(self.name, e))
    }

    pub fn set<K: Pod, V: Pod>(&self, key: &K, value: &V) -> Result<()> {
        sys::update_one(self.fd(), key, value).map_err(|e| Error::map_io(self.name, e))
    }

    pub fn remove<K: Pod>(&self, key: &K) -> Result<bool> {
        sys::delete_one(self.fd(), key).map_err(|e| Error::map_io(self.name, e))
    }

    /// Every entry (batched for hash maps and arrays).
    pub fn dump<K: Pod, V: Pod>(&self) -> Result<Vec<(K, V)>> {
        sys::dump(self.fd()).map_err(|e| Error::map_io(self.name, e))
    }

    /// Checks that the map is a mappable array of `V`; returns its length.
    fn mappable<V: Pod>(&self) -> Result<usize> {
        let info = self.data.info().map_err(|e| Error::map(self.name, e))?;
        let stride = (info.value_size() as usize).div_ceil(8) * 8;
        if stride != std::mem::size_of::<V>() || info.map_flags() & MMAPABLE == 0 {
            return Err(Error::map(self.name, "not a mappable array of this type"));
        }
        Ok(info.max_entries() as usize)
    }

    /// Maps `len` bytes from byte `offset` (page-aligned) read-only.
    fn map_bytes(&self, offset: usize, len: usize) -> Result<*const u8> {
        // SAFETY: a read-only shared mapping of part of a BPF array; the kernel
        // checks the range against the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&self.fd()),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::map(self.name, std::io::Error::last_os_error()));
        }
        Ok(ptr as *const u8)
    }

    /// A shared read-only mapping of an array created with `BPF_F_MMAPABLE`,
    /// for random access: elements are read from memory, tens of
    /// milliseconds for what a batched lookup reads in a third of a second
    /// (two million elements).
    pub fn mapped<V: Pod>(&self) -> Result<Mapped<V>> {
        let count = self.mappable::<V>()?;
        let bytes = count * std::mem::size_of::<V>();
        let ptr = self.map_bytes(0, bytes)?;
        Ok(Mapped {
            ptr: ptr as *const V,
            count,
            bytes,
        })
    }

    /// Calls `f` on every element of a mappable array in order, mapping one
    /// chunk of about a megabyte at a time and unmapping it after, so that
    /// scanning a 50 MiB table does not add 50 MiB to the agent's footprint.
    /// (Dropping pages of a longer-lived mapping instead, with
    /// `MADV_DONTNEED`, would make a later read of them fault: a BPF array's
    /// mapping has no handler to bring them back.)
    pub fn scan<V: Pod>(&self, mut f: impl FnMut(usize, V)) -> Result<()> {
        let count = self.mappable::<V>()?;
        let size = std::mem::size_of::<V>();
        // A chunk is whole pages and whole elements.
        // SAFETY: sysconf has no preconditions.
        let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize;
        let unit = lcm(page, size);
        let per_chunk = (((1 << 20) / unit).max(1) * unit) / size;
        let mut start = 0;
        while start < count {
            let end = (start + per_chunk).min(count);
            let len = (end - start) * size;
            let chunk = Mapped::<V> {
                ptr: self.map_bytes(start * size, len)? as *const V,
                count: end - start,
                bytes: len,
            };
            for i in 0..chunk.count {
                f(start + i, chunk.get(i));
            }
            start = end;
        }
        Ok(())
    }

    /// Every element of a mappable array, copied out.
    pub fn read_mapped<V: Pod>(&self) -> Result<Vec<V>> {
        let mut out = Vec::new();
        self.scan(|_, v| out.push(v))?;
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

fn lcm(a: usize, b: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    a / gcd(a, b) * b
}

/// See `RawMap::mapped`. Unmapped on drop.
pub struct Mapped<V> {
    ptr: *const V,
    count: usize,
    bytes: usize,
}

impl<V: Pod> Mapped<V> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Element `i`, copied with a volatile read: the kernel may write it at any
    /// time, so no reference into the mapping is ever handed out.
    pub fn get(&self, i: usize) -> V {
        assert!(i < self.count, "index {i} past {}", self.count);
        // SAFETY: `i` is within the mapping.
        unsafe { std::ptr::read_volatile(self.ptr.add(i)) }
    }
}

impl<V> Drop for Mapped<V> {
    fn drop(&mut self) {
        // SAFETY: unmapping what `RawMap::mapped` mapped.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.bytes) };
    }
}
