//! What each of the agent's anomaly models is doing, in a small JSON file
//! next to its pid file, so that `ensuresec status` (another process) can
//! show it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::Subject;
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
    /// Source steps or destination windows scored.
    #[serde(alias = "sources_scored")]
    pub scored: u64,
    pub flagged: u64,
}

pub fn path(pins: &PinDir, subject: Subject) -> PathBuf {
    let file = match subject {
        Subject::Source => crate::pins::STATE_FILES[1],
        Subject::Destination => crate::pins::STATE_FILES[2],
    };
    pins.pid_file().with_extension(file)
}

pub fn write(path: &Path, state: &MlState) -> std::io::Result<()> {
    crate::state_file::write(path, state)
}

pub fn read(path: &Path) -> Option<MlState> {
    crate::state_file::read(path)
}
