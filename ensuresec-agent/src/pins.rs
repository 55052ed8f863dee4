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

    /// Where the agent records its pid for this pin directory (bpffs holds
    /// only BPF objects, so this lives in `RUN_DIR`).
    pub fn pid_file(&self) -> PathBuf {
        let name = self
            .root
            .to_string_lossy()
            .trim_matches('/')
            .replace('/', "_");
        PathBuf::from(RUN_DIR).join(format!("{name}.pid"))
    }

    /// Where the agent records its state directory, for the CLI (in
    /// `RUN_DIR`, beside the pid file).
    pub fn state_dir_file(&self) -> PathBuf {
        self.pid_file().with_extension("state-dir")
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

/// The agent's claim on a pin directory: an exclusive `flock` on its pid file,
/// held for the agent's life (and by `detach` while it removes maps an agent
/// would use). The lock, not the file's presence, says whether an agent runs:
/// a killed agent leaves its file behind but not its lock. A holder that ends
/// normally removes the file (and the agent's state files beside it) while it
/// still holds the lock; a claimant checks, once it holds the lock, that the
/// file it locked is still the one at the path.
pub struct AgentLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl AgentLock {
    /// Claims the lock for this process and records its pid; fails naming
    /// the pid of the process that holds it.
    pub fn claim(pins: &PinDir) -> Result<Self, Error> {
        use std::{
            io::{Seek, Write},
            os::unix::fs::MetadataExt,
        };
        let path = pins.pid_file();
        std::fs::create_dir_all(RUN_DIR)
            .map_err(|e| Error::io(format!("creating {RUN_DIR}"), e))?;
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::AgentRunning {
                        dir: pins.root().to_path_buf(),
                        pid: flock_holder(&path).or_else(|| read_pid(&path)).unwrap_or(0),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e));
                }
            }
            // The previous holder may have removed the file after we opened
            // it: then the lock is on a file nobody else will find.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            let written = file
                .set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()));
            written.map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            // What an agent killed before left is not this one's state.
            for extension in STATE_FILES {
                let _ = std::fs::remove_file(path.with_extension(extension));
            }
            return Ok(AgentLock { path, _file: file });
        }
    }
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        remove_pid_file(&self.path);
    }
}

/// The agent's state files beside its pid file (`status` reads them).
pub const STATE_FILES: [&str; 4] = ["detect.json", "ml.json", "ml-aggregate.json", "health.json"];

/// Removes a pid file and the state files beside it.
pub fn remove_pid_file(path: &Path) {
    for extension in STATE_FILES {
        let _ = std::fs::remove_file(path.with_extension(extension));
    }
    let _ = std::fs::remove_file(path);
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid of the process holding an exclusive `flock` on `path`, from
/// `/proc/locks` (asking by taking a lock would, for an instant, keep the
/// holder-to-be from taking it).
fn flock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    // "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"; waiters have "->".
    let file = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    std::fs::read_to_string("/proc/locks")
        .ok()?
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&file.as_str()))
        .and_then(|f| f.get(4)?.parse().ok())
}

/// The pid of the process holding the agent lock of `pins` (the running
/// agent), if any.
pub fn agent_pid(pins: &PinDir) -> Option<u32> {
    flock_holder(&pins.pid_file())
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
