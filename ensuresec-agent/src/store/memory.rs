//! What each pinned map costs the kernel: the memory it charges for the map
//! (`memlock` in the map's fdinfo, from the kernel's own accounting of each
//! map type) against the raw bytes of its keys and values.

use std::os::fd::{AsFd, AsRawFd};

use ensuresec_common::contract::{MapKind, PINNED_MAPS};
use serde::Serialize;

use super::layout::open_pinned;
use crate::{
    error::{Error, Result},
    pins::PinDir,
};

/// One map's kernel memory.
#[derive(Clone, Debug, Serialize)]
pub struct MapMemory {
    pub map: &'static str,
    pub kind: &'static str,
    /// Entries the map holds at most (for the ring buffer, its bytes).
    pub max_entries: u32,
    /// Bytes the kernel charges for the map.
    pub kernel_bytes: u64,
    /// `kernel_bytes / max_entries`.
    pub bytes_per_entry: f64,
    /// What one entry's data needs: its value (every CPU's for a per-CPU
    /// map, 8-byte aligned there), plus its key in a hash or trie (an
    /// array's index is not stored); 1 for the ring buffer's bytes.
    pub raw_bytes_per_entry: u64,
}

fn kind_name(kind: MapKind) -> &'static str {
    match kind {
        MapKind::Array => "array",
        MapKind::PerCpuArray => "percpu_array",
        MapKind::Hash => "hash",
        MapKind::LruHash => "lru_hash",
        MapKind::LruPerCpuHash => "lru_percpu_hash",
        MapKind::ProgArray => "prog_array",
        MapKind::RingBuf => "ringbuf",
    }
}

/// The raw bytes of one entry (see `MapMemory::raw_bytes_per_entry`).
pub fn raw_bytes(kind: MapKind, key: u32, value: u32, cpus: usize) -> u64 {
    let (key, value) = (key as u64, value as u64);
    let per_cpu = value.next_multiple_of(8) * cpus as u64;
    match kind {
        MapKind::RingBuf => 1,
        MapKind::Array | MapKind::ProgArray => value,
        MapKind::PerCpuArray => per_cpu,
        MapKind::LruPerCpuHash => key + per_cpu,
        MapKind::Hash | MapKind::LruHash => key + value,
    }
}

/// The `memlock:` line of a map's fdinfo.
pub fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Every pinned map's kernel memory; maps not pinned (yet) are left out.
pub fn map_memory(pins: &PinDir, cpus: usize) -> Result<Vec<MapMemory>> {
    let mut out = Vec::new();
    for contract in PINNED_MAPS {
        let Some((data, info)) = open_pinned(pins, contract)? else {
            continue;
        };
        let fd = data.fd().as_fd().as_raw_fd();
        let fdinfo_path = format!("/proc/self/fdinfo/{fd}");
        let fdinfo = std::fs::read_to_string(&fdinfo_path)
            .map_err(|e| Error::io(format!("reading {fdinfo_path}"), e))?;
        let kernel_bytes = parse_memlock(&fdinfo).ok_or_else(|| {
            Error::map(contract.name, format!("no memlock line in {fdinfo_path}"))
        })?;
        let max_entries = info.max_entries();
        out.push(MapMemory {
            map: contract.name,
            kind: kind_name(contract.kind),
            max_entries,
            kernel_bytes,
            bytes_per_entry: kernel_bytes as f64 / max_entries.max(1) as f64,
            raw_bytes_per_entry: raw_bytes(
                contract.kind,
                contract.key_size,
                contract.value_size,
                cpus,
            ),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_read_from_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2071\nmap_type:\t1\n\
                      key_size:\t4\nvalue_size:\t8\nmax_entries:\t16\nmap_flags:\t0x0\n\
                      map_extra:\t0x0\nmemlock:\t1472\nmap_id:\t9\nfrozen:\t0\n";
        assert_eq!(parse_memlock(fdinfo), Some(1472));
        assert_eq!(parse_memlock("pos:\t0\n"), None);
    }

    #[test]
    fn raw_entries_count_each_cpu_and_only_stored_keys() {
        assert_eq!(raw_bytes(MapKind::Hash, 16, 32, 4), 48);
        assert_eq!(raw_bytes(MapKind::Array, 4, 32, 4), 32);
        assert_eq!(raw_bytes(MapKind::PerCpuArray, 4, 12, 4), 16 * 4);
        assert_eq!(raw_bytes(MapKind::LruPerCpuHash, 16, 12, 2), 16 + 16 * 2);
        assert_eq!(raw_bytes(MapKind::RingBuf, 0, 0, 4), 1);
    }
}
