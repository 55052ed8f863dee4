//! The agent's own health, from its metrics: what went wrong lately (ring
//! buffer drops, a refused model, a stalled log input, journal writes
//! failing, work left undone), as gauges and in a file beside the pid file
//! that `ensuresec status` reads. The kernel enforces whatever this says.

mod watch;

pub use watch::HealthWatch;

use serde::{Deserialize, Serialize};

use crate::pins::PinDir;

/// Written every sweep while the agent runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// The agent that wrote it (a file left by an earlier agent is ignored).
    pub pid: u32,
    /// Wall-clock ms of the writing: a stale file means a stuck agent.
    pub written_ms: u64,
    /// How often it is written (ms).
    pub every_ms: u64,
    pub issues: Vec<Issue>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Issue {
    /// A stable name: `ringbuf_drops`, `model_refused`, `log_stalled`,
    /// `journal_failing`, `work_dropped`.
    pub what: String,
    pub detail: String,
}

pub fn path(pins: &PinDir) -> std::path::PathBuf {
    pins.pid_file().with_extension(crate::pins::STATE_FILES[3])
}

/// The health the agent `pid` last wrote, if it wrote one.
pub fn read(pins: &PinDir, pid: u32) -> Option<Health> {
    crate::state_file::read::<Health>(&path(pins)).filter(|h| h.pid == pid)
}

/// Checks the health now and writes it for `status`.
pub fn report(watch: &mut HealthWatch, pins: &PinDir) {
    let health = watch.check(std::process::id());
    for i in &health.issues {
        tracing::warn!(what = %i.what, detail = %i.detail, "health");
    }
    if let Err(e) = crate::state_file::write(&path(pins), &health) {
        tracing::warn!(error = %e, "could not record the agent's health for `ensuresec status`");
    }
}
