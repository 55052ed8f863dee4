//! What the agent's anomaly model is doing, in a small JSON file next to its
//! pid file, so that `ensuresec status` (another process) can show it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pins::PinDir;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MlState {
    pub model: PathBuf,
    /// `loaded`, `missing` (no usable model yet) or `error` (the file on disk
    /// was refused; a previously loaded model may still be scoring).
    pub state: String,
    pub version: Option<String>,
    pub input_width: Option<usize>,
    pub threshold: Option<f32>,
    pub error: Option<String>,
    /// Wall-clock seconds of the last load or refusal.
    pub changed_secs: u64,
    pub sources_scored: u64,
    pub flagged: u64,
}

pub fn path(pins: &PinDir) -> PathBuf {
    pins.pid_file().with_extension(crate::pins::STATE_FILES[1])
}

pub fn write(path: &Path, state: &MlState) -> std::io::Result<()> {
    crate::state_file::write(path, state)
}

pub fn read(path: &Path) -> Option<MlState> {
    crate::state_file::read(path)
}
