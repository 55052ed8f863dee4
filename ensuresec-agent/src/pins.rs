//! Where ensuresec keeps its state on the BPF filesystem, and making sure that
//! filesystem is there.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use crate::error::Error;

/// Default pin directory; `--pin-dir` / `ENSURESEC_PIN_DIR` change it (tests use
/// their own so they never touch a real installation).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ensuresec";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// The layout of one pin directory.
#[derive(Clone, Debug)]
pub struct PinDir {
    root: PathBuf,
}

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of pinned maps.
    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    /// Directory of pinned links, one per interface, named after it.
    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.links().join(iface)
    }

    /// Where the agent records its pid for this pin directory.
    pub fn pid_file(&self) -> PathBuf {
        let name = self
            .root
            .to_string_lossy()
            .trim_matches('/')
            .replace('/', "_");
        PathBuf::from("/run/ensuresec").join(format!("{name}.pid"))
    }

    /// Whether the maps exist, i.e. ensuresec was attached or the agent ran.
    pub fn has_maps(&self) -> bool {
        self.maps().is_dir()
    }

    /// Interfaces with a pinned link, sorted.
    pub fn linked_ifaces(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.links())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

fn statfs_type(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: zeroed statfs is a valid out buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    (rc == 0).then_some(st.f_type as i64)
}

/// Where ensuresec keeps its lock and pid files (a tmpfs: gone at reboot,
/// like the pins they guard).
pub const RUN_DIR: &str = "/run/ensuresec";

/// Mounts bpffs at /sys/fs/bpf when the pin directory is under it and it is not
/// mounted yet (fresh machines often lack it), the way bpftool does. Commands
/// started together each see it missing: a lock makes one of them mount it,
/// since a second mount on top would hide the pins made under the first.
pub fn ensure_bpffs(dir: &Path) -> Result<(), Error> {
    let mount_point = Path::new("/sys/fs/bpf");
    if !dir.starts_with(mount_point) {
        return Ok(());
    }
    if statfs_type(mount_point) == Some(BPF_FS_MAGIC) {
        return Ok(());
    }
    std::fs::create_dir_all(RUN_DIR).map_err(|e| Error::io(format!("creating {RUN_DIR}"), e))?;
    let lock_path = Path::new(RUN_DIR).join("bpffs.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
    lock.lock()
        .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
    if statfs_type(mount_point) == Some(BPF_FS_MAGIC) {
        return Ok(());
    }
    tracing::info!("bpffs is not mounted; mounting it at /sys/fs/bpf");
    std::fs::create_dir_all(mount_point).map_err(|e| Error::io("creating /sys/fs/bpf", e))?;
    let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "mounting bpffs at /sys/fs/bpf",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
