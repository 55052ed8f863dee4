//! Where each followed log was read up to, kept in the state directory so
//! that a restarted agent (or a rebooted host) resumes there: no line read
//! twice, none skipped. A file is known by (device, inode), so a log rotated
//! while the agent was down is recognised under its new name.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// A file's identity.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    pub id: FileId,
    /// Bytes up to the end of the last whole line read.
    pub offset: u64,
    /// Rotated-away files still being finished, and where in each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<Draining>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Draining {
    pub id: FileId,
    pub offset: u64,
}

#[derive(Debug)]
pub struct Positions {
    path: PathBuf,
    by_log: BTreeMap<PathBuf, Saved>,
    dirty: bool,
}

impl Positions {
    pub const FILE: &'static str = "log-positions.json";

    /// The saved positions in `state_dir` (none if the file is missing or
    /// unreadable: then logs start per `start_at`).
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join(Self::FILE);
        let by_log = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "log positions unreadable; starting over");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        Self {
            path,
            by_log,
            dirty: false,
        }
    }

    pub fn get(&self, log: &Path) -> Option<&Saved> {
        self.by_log.get(log)
    }

    pub fn set(&mut self, log: &Path, saved: Saved) {
        if self.by_log.get(log) != Some(&saved) {
            self.by_log.insert(log.to_path_buf(), saved);
            self.dirty = true;
        }
    }

    /// Writes the file if anything changed (atomically, then synced).
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        crate::state_file::write(&self.path, &self.by_log)?;
        self.dirty = false;
        Ok(())
    }
}

/// The file in `dir` whose identity is `id`: a log rotated (renamed) while
/// nobody was reading it.
pub fn find_renamed(dir: &Path, id: FileId) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && FileId::of(&m) == id)
        })
        .map(|e| e.path())
}
