//! The words behind application decisions (sample paths and user agents,
//! pseudonymous accounts), which do not fit the fixed-size record in the
//! kernel's map: kept in a JSON file beside the agent's pid file, one entry
//! per decision in force, so that `decisions list` shows them with the agent
//! down. Like the decisions themselves, it does not outlive a reboot.

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{app::detect::LineAt, pins::PinDir};

/// Entries kept at most (the oldest go first): a bound on the file.
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppEvidence {
    pub storefront: String,
    pub detector: String,
    /// Counts and thresholds, sample paths, user agent, accounts.
    pub text: String,
    /// Pseudonyms of the accounts involved (affected by a takeover, or tried).
    pub accounts: Vec<String>,
    /// Wall-clock seconds of the decision.
    pub decided_secs: u64,
    /// The deciding line, when a log line decided.
    #[serde(default)]
    pub line: Option<LineAt>,
}

pub fn path(pins: &PinDir) -> PathBuf {
    pins.pid_file().with_extension("evidence.json")
}

/// Evidence by decision target (as `decisions list` writes it).
pub fn read(pins: &PinDir) -> BTreeMap<String, AppEvidence> {
    crate::state_file::read(&path(pins)).unwrap_or_default()
}

/// The engine's copy: recorded at each application decision, written by
/// the engine's once-a-second upkeep (not on the deciding path).
pub struct EvidenceFile {
    path: PathBuf,
    entries: BTreeMap<String, AppEvidence>,
    dirty: bool,
}

impl EvidenceFile {
    pub fn open(pins: &PinDir) -> Self {
        Self {
            path: path(pins),
            entries: read(pins),
            dirty: false,
        }
    }

    /// Records `evidence` for `target` (the oldest entry goes beyond
    /// `MAX_ENTRIES`).
    pub fn record(&mut self, target: String, evidence: AppEvidence) {
        self.entries.insert(target, evidence);
        if self.entries.len() > MAX_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.decided_secs)
                .map(|(t, _)| t.clone());
            if let Some(t) = oldest {
                self.entries.remove(&t);
            }
        }
        self.dirty = true;
    }

    /// After a change, keeps only the targets `live` says still have a
    /// decision and writes the file.
    pub fn flush(&mut self, live: impl Fn(&str) -> bool) {
        if !self.dirty {
            return;
        }
        self.entries.retain(|t, _| live(t));
        match crate::state_file::write(&self.path, &self.entries) {
            Ok(()) => self.dirty = false,
            // Tried again at the next upkeep.
            Err(e) => {
                tracing::warn!(error = %e, file = %self.path.display(), "could not write the decisions' evidence")
            }
        }
    }
}
