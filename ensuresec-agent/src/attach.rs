//! Attaching the filter to interfaces through pinned links, so it keeps
//! filtering when no ensuresec process runs, and replacing the program in place
//! (one `bpf_link_update`, no unfiltered window) when it is already attached.

use std::{ffi::CString, os::fd::AsFd as _};

use aya::{
    Ebpf,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use ensuresec_common::maps::{IfaceRecord, MODE_GENERIC, MODE_NATIVE};
use serde::Serialize;

use crate::{
    clock,
    config::Mode,
    ebpf::FILTER_PROGRAM,
    error::{Error, Result},
    pins::{AgentLock, PinDir},
    store::{Store, Writer},
    sys,
};

/// Name of a kernel mode as recorded in `ES_IFACES`.
pub fn mode_name(mode: u32) -> &'static str {
    match mode {
        MODE_NATIVE => "native",
        MODE_GENERIC => "generic",
        _ => "unknown",
    }
}

/// Result of one attach.
#[derive(Clone, Debug, Serialize)]
pub struct Attached {
    pub iface: String,
    pub ifindex: u32,
    pub mode: &'static str,
    /// The interface already had ensuresec; its program was replaced in place.
    pub replaced: bool,
}

pub fn ifindex(iface: &str) -> Result<u32> {
    validate_iface_name(iface)?;
    let c = CString::new(iface).map_err(|_| Error::NoSuchInterface(iface.to_string()))?;
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(Error::NoSuchInterface(iface.to_string())),
        i => Ok(i),
    }
}

/// The loaded filter program of `ebpf`, loading it into the kernel on first use.
fn filter(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    crate::ebpf::load_filter(ebpf)?;
    let prog: &mut Xdp = ebpf
        .program_mut(FILTER_PROGRAM)
        .ok_or_else(|| Error::Load(format!("no program `{FILTER_PROGRAM}` in the object")))?
        .try_into()
        .map_err(|e| Error::Load(format!("{e}")))?;
    Ok(prog)
}

/// The kernel's view of an interface's pinned link, or `None` once the
/// interface is gone.
pub fn link_target(pins: &PinDir, iface: &str) -> Result<Option<sys::XdpLinkInfo>> {
    let path = pins.link(iface);
    let fd =
        sys::obj_get(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let info = sys::xdp_link_info(fd.as_fd())
        .map_err(|e| Error::io(format!("reading link {}", path.display()), e))?;
    Ok((info.ifindex != 0).then_some(info))
}

/// Attaches (or re-attaches in place) the filter to `iface`.
pub fn attach(ebpf: &mut Ebpf, store: &Writer, iface: &str, mode: Mode) -> Result<Attached> {
    let pins = store.pins().clone();
    let index = ifindex(iface)?;
    let link_path = pins.link(iface);
    let attach_err = |why: String| Error::Attach {
        iface: iface.to_string(),
        why,
    };
    if link_path.exists() {
        match link_target(&pins, iface)? {
            Some(linked) if linked.ifindex == index => {
                let record = store.ifaces.get::<u32, IfaceRecord>(&index)?;
                let current = record.map_or(0, |r| r.mode);
                let wanted = match mode {
                    Mode::Native => MODE_NATIVE,
                    Mode::Generic => MODE_GENERIC,
                    Mode::Auto => current,
                };
                if current != 0 && wanted != current {
                    return Err(Error::ModeConflict {
                        iface: iface.to_string(),
                        current: mode_name(current).into(),
                        wanted: mode_name(wanted).into(),
                    });
                }
                let prog = filter(ebpf)?;
                let pinned =
                    PinnedLink::from_pin(&link_path).map_err(|e| attach_err(e.to_string()))?;
                let link = XdpLink::try_from(FdLink::from(pinned))
                    .map_err(|e| attach_err(e.to_string()))?;
                let id = prog
                    .attach_to_link(link)
                    .map_err(|e| attach_err(format!("replacing the program: {e}")))?;
                // Dropping the returned link closes our fd; the pin keeps it attached.
                let _ = prog.take_link(id);
                return Ok(Attached {
                    iface: iface.to_string(),
                    ifindex: index,
                    mode: mode_name(current),
                    replaced: true,
                });
            }
            _ => {
                tracing::warn!(iface, "removing a stale link pin (its interface is gone)");
                std::fs::remove_file(&link_path)
                    .map_err(|e| Error::io(format!("removing {}", link_path.display()), e))?;
            }
        }
    }
    let tries: &[(XdpMode, u32)] = match mode {
        Mode::Auto => &[(XdpMode::Driver, MODE_NATIVE), (XdpMode::Skb, MODE_GENERIC)],
        Mode::Native => &[(XdpMode::Driver, MODE_NATIVE)],
        Mode::Generic => &[(XdpMode::Skb, MODE_GENERIC)],
    };
    let prog = filter(ebpf)?;
    let mut failures = Vec::new();
    for &(xdp_mode, recorded) in tries {
        let id = match prog.attach_to_if_index(index, xdp_mode) {
            Ok(id) => id,
            Err(e) => {
                failures.push(format!("{} mode: {e}", mode_name(recorded)));
                continue;
            }
        };
        let link = prog.take_link(id).map_err(|e| attach_err(e.to_string()))?;
        let fd_link = FdLink::try_from(link).map_err(|_| {
            attach_err("the kernel attached without a bpf_link, which cannot be pinned".into())
        })?;
        fd_link
            .pin(&link_path)
            .map_err(|e| attach_err(format!("pinning the link: {e}")))?;
        store.set_iface_record(
            index,
            &IfaceRecord {
                name: iface_name_bytes(iface),
                mode: recorded,
                _pad: 0,
                attached_at_secs: clock::unix_secs(),
            },
        )?;
        return Ok(Attached {
            iface: iface.to_string(),
            ifindex: index,
            mode: mode_name(recorded),
            replaced: false,
        });
    }
    Err(attach_err(failures.join("; ")))
}

fn iface_name_bytes(iface: &str) -> [u8; 16] {
    let mut name = [0u8; 16];
    let n = iface.len().min(15);
    name[..n].copy_from_slice(&iface.as_bytes()[..n]);
    name
}

/// What `detach` removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Detached {
    pub iface: String,
    /// No interface is left, so the maps (and the lists in them) were removed too.
    pub maps_removed: bool,
}

/// Detaches from `iface` by removing its link pin. When no interface is left
/// the maps are unpinned too, unless `keep_maps`. Refused while an agent runs
/// for these pins (it would keep using the maps it opened and re-attach its
/// configured interfaces); waits for writers, so that no change is written
/// into maps that are then removed.
pub fn detach(pins: &PinDir, iface: &str, keep_maps: bool) -> Result<Detached> {
    validate_iface_name(iface)?;
    if !pins.link(iface).exists() {
        return Err(Error::IfaceNotAttached(iface.to_string()));
    }
    let _claim = AgentLock::claim(pins).map_err(|e| match e {
        Error::AgentRunning { pid, .. } => Error::DetachUnderAgent {
            iface: iface.to_string(),
            pid,
        },
        other => other,
    })?;
    let store = Store::open(pins)?;
    detach_locked(&store.write()?, iface, keep_maps)
}

/// `detach` with the write lock held by the caller.
pub fn detach_locked(w: &Writer, iface: &str, keep_maps: bool) -> Result<Detached> {
    validate_iface_name(iface)?;
    let pins = w.pins().clone();
    let link_path = pins.link(iface);
    if !link_path.exists() {
        return Err(Error::IfaceNotAttached(iface.to_string()));
    }
    let target = link_target(&pins, iface).ok().flatten();
    let pinned = PinnedLink::from_pin(&link_path).map_err(|e| Error::Attach {
        iface: iface.to_string(),
        why: e.to_string(),
    })?;
    // Unpinning and dropping the last fd detaches the program.
    drop(
        pinned
            .unpin()
            .map_err(|e| Error::io(format!("removing {}", link_path.display()), e))?,
    );
    if let Some(linked) = target {
        w.remove_iface_record(linked.ifindex)?;
    }
    let mut out = Detached {
        iface: iface.to_string(),
        maps_removed: false,
    };
    if pins.linked_ifaces().is_empty() && !keep_maps {
        std::fs::remove_dir_all(pins.root())
            .map_err(|e| Error::io(format!("removing {}", pins.root().display()), e))?;
        out.maps_removed = true;
    }
    Ok(out)
}

/// Interface names as the kernel accepts them (`dev_valid_name`): 1 to 15
/// bytes, not `.` or `..`, no `/`, `:` or whitespace. Names are also the
/// file names of link pins, so this keeps every path inside the links
/// directory.
pub fn validate_iface_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if bad {
        return Err(Error::BadIfaceName(name.to_string()));
    }
    Ok(())
}
