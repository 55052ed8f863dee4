//! What the running agent detects, for `ensuresec status`: written once the
//! agent has configured the kernel, next to its pid file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::pins::PinDir;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DetectState {
    /// The agent that wrote it (a file left by an earlier agent is ignored).
    pub pid: u32,
    /// Protected prefixes, as the config gives them; empty: detection off.
    pub protect: Vec<String>,
    pub dry_run: bool,
}

pub fn path(pins: &PinDir) -> PathBuf {
    pins.pid_file().with_extension(crate::pins::STATE_FILES[0])
}

/// The state of the agent `pid`, if it wrote one.
pub fn read(pins: &PinDir, pid: u32) -> Option<DetectState> {
    crate::state_file::read::<DetectState>(&path(pins)).filter(|s| s.pid == pid)
}
