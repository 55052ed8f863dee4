//! Raw `bpf(2)` commands that aya 0.14 does not wrap: batched map lookups,
//! updates and deletes (one syscall per thousands of entries instead of one per
//! entry, which is what makes a 1M-line import take a second), and the interface
//! index of an XDP link.

use std::{
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;
use aya_obj::generated::{
    bpf_attr, bpf_attr__bindgen_ty_2, bpf_attr__bindgen_ty_2__bindgen_ty_1, bpf_attr__bindgen_ty_3,
    bpf_attr__bindgen_ty_9, bpf_cmd, bpf_link_info,
};

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<()> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr for `cmd`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

const BATCH_ZERO: bpf_attr__bindgen_ty_3 = bpf_attr__bindgen_ty_3 {
    in_batch: 0,
    out_batch: 0,
    keys: 0,
    values: 0,
    count: 0,
    map_fd: 0,
    elem_flags: 0,
    flags: 0,
};

/// Entries per batch syscall.
const BATCH: usize = 8192;

/// A batch that stopped part-way: `done` elements were applied before `error`.
#[derive(Debug)]
pub struct PartialBatch {
    pub done: usize,
    pub error: io::Error,
}

/// Reads every entry of a hash or array map.
pub fn dump<K: Pod, V: Pod>(fd: BorrowedFd<'_>) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut chunk = BATCH;
    // The batch token is opaque; for hash maps it is a bucket index, for arrays a key.
    let mut token = [0u8; 64];
    let mut first = true;
    loop {
        let mut keys: Vec<K> = Vec::with_capacity(chunk);
        let mut values: Vec<V> = Vec::with_capacity(chunk);
        let mut next_token = [0u8; 64];
        // SAFETY: zero is a valid bpf_attr.
        let mut attr: bpf_attr = unsafe { zeroed() };
        attr.batch = bpf_attr__bindgen_ty_3 {
            map_fd: fd.as_raw_fd() as u32,
            in_batch: if first { 0 } else { token.as_ptr() as u64 },
            out_batch: next_token.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            elem_flags: 0,
            flags: 0,
        };
        let result = bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr);
        // SAFETY: the kernel wrote `count` keys and values.
        let got = unsafe { attr.batch.count } as usize;
        let finished = match result {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            // A hash bucket holds more entries than the chunk: retry larger.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && got == 0 => {
                chunk *= 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        // SAFETY: the first `got` elements were written by the kernel.
        unsafe {
            keys.set_len(got);
            values.set_len(got);
        }
        out.extend(keys.into_iter().zip(values));
        if finished {
            return Ok(out);
        }
        token = next_token;
        first = false;
    }
}

/// Reads a per-CPU array in batches of `chunk` elements, calling `f` with each
/// element's values on every possible CPU (`cpus` of them), without holding
/// the whole table in memory. The kernel pads per-CPU values to 8 bytes, so
/// `V` must be a multiple of 8 bytes long.
pub fn scan_per_cpu_array<V: Pod>(
    fd: BorrowedFd<'_>,
    cpus: usize,
    chunk: usize,
    mut f: impl FnMut(u32, &[V]),
) -> io::Result<()> {
    if !size_of::<V>().is_multiple_of(8) || cpus == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "per-CPU value size is not a multiple of 8",
        ));
    }
    let mut keys: Vec<u32> = vec![0; chunk];
    // SAFETY: `V` is Pod: any bytes, zeroes included, are a valid value.
    let mut values: Vec<V> = vec![unsafe { zeroed() }; chunk * cpus];
    let mut token = 0u32;
    let mut first = true;
    loop {
        let mut next_token = 0u32;
        // SAFETY: zero is a valid bpf_attr.
        let mut attr: bpf_attr = unsafe { zeroed() };
        attr.batch = bpf_attr__bindgen_ty_3 {
            map_fd: fd.as_raw_fd() as u32,
            in_batch: if first {
                0
            } else {
                &token as *const u32 as u64
            },
            out_batch: &mut next_token as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            ..BATCH_ZERO
        };
        let result = bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr);
        // SAFETY: the kernel wrote `count` keys and their values.
        let got = unsafe { attr.batch.count } as usize;
        let finished = match result {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e),
        };
        for (i, key) in keys.iter().take(got).enumerate() {
            f(*key, &values[i * cpus..(i + 1) * cpus]);
        }
        if finished || got == 0 {
            return Ok(());
        }
        token = next_token;
        first = false;
    }
}

/// Writes `keys[i] -> values[i]` for all i.
pub fn update<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), PartialBatch> {
    assert_eq!(keys.len(), values.len());
    let mut done = 0;
    for (k, v) in keys.chunks(BATCH).zip(values.chunks(BATCH)) {
        // SAFETY: zero is a valid bpf_attr.
        let mut attr: bpf_attr = unsafe { zeroed() };
        attr.batch = bpf_attr__bindgen_ty_3 {
            map_fd: fd.as_raw_fd() as u32,
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            ..BATCH_ZERO
        };
        if let Err(error) = bpf(bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr) {
            // SAFETY: the kernel reports how many it processed.
            let partial = unsafe { attr.batch.count } as usize;
            return Err(PartialBatch {
                done: done + partial,
                error,
            });
        }
        done += k.len();
    }
    Ok(())
}

/// Deletes `keys` from a hash map.
pub fn delete<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> Result<(), PartialBatch> {
    let mut done = 0;
    for k in keys.chunks(BATCH) {
        // SAFETY: zero is a valid bpf_attr.
        let mut attr: bpf_attr = unsafe { zeroed() };
        attr.batch = bpf_attr__bindgen_ty_3 {
            map_fd: fd.as_raw_fd() as u32,
            keys: k.as_ptr() as u64,
            count: k.len() as u32,
            ..BATCH_ZERO
        };
        if let Err(error) = bpf(bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr) {
            // SAFETY: the kernel reports how many it processed.
            let partial = unsafe { attr.batch.count } as usize;
            return Err(PartialBatch {
                done: done + partial,
                error,
            });
        }
        done += k.len();
    }
    Ok(())
}

fn elem_attr(fd: BorrowedFd<'_>, key: *const u8, value: *mut u8, flags: u64) -> bpf_attr {
    // SAFETY: zero is a valid bpf_attr.
    let mut attr: bpf_attr = unsafe { zeroed() };
    attr.__bindgen_anon_2 = bpf_attr__bindgen_ty_2 {
        map_fd: fd.as_raw_fd() as u32,
        key: key as u64,
        __bindgen_anon_1: bpf_attr__bindgen_ty_2__bindgen_ty_1 {
            value: value as u64,
        },
        flags,
    };
    attr
}

/// Looks one key up; `None` when absent.
pub fn lookup<K: Pod, V: Pod>(fd: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    let mut value = std::mem::MaybeUninit::<V>::zeroed();
    let mut attr = elem_attr(fd, (key as *const K).cast(), value.as_mut_ptr().cast(), 0);
    match bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) {
        // SAFETY: the kernel wrote the value.
        Ok(()) => Ok(Some(unsafe { value.assume_init() })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes one key.
pub fn update_one<K: Pod, V: Pod>(fd: BorrowedFd<'_>, key: &K, value: &V) -> io::Result<()> {
    let mut attr = elem_attr(
        fd,
        (key as *const K).cast(),
        (value as *const V).cast_mut().cast(),
        0,
    );
    bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr)
}

/// Deletes one key; `false` when it was absent.
pub fn delete_one<K: Pod>(fd: BorrowedFd<'_>, key: &K) -> io::Result<bool> {
    let mut attr = elem_attr(fd, (key as *const K).cast(), std::ptr::null_mut(), 0);
    match bpf(bpf_cmd::BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every key, by `BPF_MAP_GET_NEXT_KEY` (to count a hash map's keys without reading values).
pub fn keys<K: Pod>(fd: BorrowedFd<'_>) -> io::Result<Vec<K>> {
    let mut out: Vec<K> = Vec::new();
    loop {
        let mut next = std::mem::MaybeUninit::<K>::zeroed();
        let key_ptr = out
            .last()
            .map_or(std::ptr::null(), |k| (k as *const K).cast());
        let mut attr = elem_attr(fd, key_ptr, next.as_mut_ptr().cast(), 0);
        match bpf(bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut attr) {
            // SAFETY: the kernel wrote the next key.
            Ok(()) => out.push(unsafe { next.assume_init() }),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// Opens a pinned object (`BPF_OBJ_GET`).
pub fn obj_get(path: &std::path::Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: zero is a valid bpf_attr.
    let mut attr: bpf_attr = unsafe { zeroed() };
    attr.__bindgen_anon_4.pathname = c.as_ptr() as u64;
    // SAFETY: as in `bpf`, but the return value is a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET as libc::c_long,
            &mut attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The id of a BPF object (map, program or link) by its fd.
pub fn map_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: zero is a valid bpf_map_info and bpf_attr.
    let mut info: aya_obj::generated::bpf_map_info = unsafe { zeroed() };
    let mut attr: bpf_attr = unsafe { zeroed() };
    attr.info = bpf_attr__bindgen_ty_9 {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<aya_obj::generated::bpf_map_info>() as u32,
        info: &mut info as *mut _ as u64,
    };
    bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.id)
}

/// Looks one key of a per-CPU map up: one value per possible CPU (`cpus`).
/// The kernel pads per-CPU values to 8 bytes, so `V` must be a multiple of 8
/// bytes long.
pub fn lookup_per_cpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    key: &K,
    cpus: usize,
) -> io::Result<Option<Vec<V>>> {
    if !size_of::<V>().is_multiple_of(8) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "per-CPU value size is not a multiple of 8",
        ));
    }
    // SAFETY: `V` is Pod: zeroes are a valid value.
    let mut values: Vec<V> = vec![unsafe { zeroed() }; cpus];
    let mut attr = elem_attr(fd, (key as *const K).cast(), values.as_mut_ptr().cast(), 0);
    match bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(()) => Ok(Some(values)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the kernel says of an XDP link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpLinkInfo {
    pub link_id: u32,
    pub program_id: u32,
    /// 0 once the interface is gone.
    pub ifindex: u32,
}

pub fn xdp_link_info(link: BorrowedFd<'_>) -> io::Result<XdpLinkInfo> {
    // SAFETY: zero is a valid bpf_link_info and bpf_attr.
    let mut info: bpf_link_info = unsafe { zeroed() };
    let mut attr: bpf_attr = unsafe { zeroed() };
    attr.info = bpf_attr__bindgen_ty_9 {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of::<bpf_link_info>() as u32,
        info: &mut info as *mut bpf_link_info as u64,
    };
    bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    // SAFETY: the kernel filled the xdp variant for an XDP link.
    Ok(XdpLinkInfo {
        link_id: info.id,
        program_id: info.prog_id,
        ifindex: unsafe { info.__bindgen_anon_1.xdp.ifindex },
    })
}
