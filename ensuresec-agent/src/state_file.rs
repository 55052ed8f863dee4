//! Small JSON files next to the agent's pid file, through which the running
//! agent tells `ensuresec status` (another process) what it is doing.

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};

/// Written atomically (temporary file, then rename).
pub fn write<T: Serialize>(path: &Path, state: &T) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&tmp, path)
}

pub fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
