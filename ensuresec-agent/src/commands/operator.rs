//! Operators' changes go to the journal with the user who made them, and
//! the desired state follows the maps. The maps are changed first and are
//! the truth: a journal that cannot be written is reported, and the agent
//! reconciles the change at its next start.

use std::path::{Path, PathBuf};

use ensuresec_common::entry::Target;

use crate::{
    error::Result,
    journal::{self, Entry, Journal, Kind, StateChange, state::ListRow},
    pins::PinDir,
    store::{Reasons, Store},
};

/// The state directory: given on the command line, else the one the agent
/// last ran with for these pins, else the default.
pub fn state_dir(pins: &PinDir, given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .or_else(|| crate::state_file::read::<PathBuf>(&pins.state_dir_file()))
        .unwrap_or_else(|| PathBuf::from(journal::DEFAULT_STATE_DIR))
}

pub struct OperatorLog {
    journal: Option<Journal>,
    pub actor: String,
}

impl OperatorLog {
    pub fn open(state_dir: &Path) -> Self {
        let journal = Journal::open(state_dir)
            .map_err(|e| warn_unrecorded(&e.to_string()))
            .ok();
        Self {
            journal,
            actor: journal::current_user(),
        }
    }

    /// The journal, when it could be opened.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// An entry by this operator, now.
    pub fn entry(&self, kind: Kind, target: impl std::fmt::Display) -> Entry {
        Entry::now(kind, self.actor.clone()).target(target)
    }

    pub fn record(&mut self, entries: &[Entry], changes: &[StateChange]) {
        if let Some(j) = &mut self.journal
            && let Err(e) = j.write(entries, changes)
        {
            warn_unrecorded(&e.to_string());
        }
    }

    /// Starts an operation (an import) whose changes can be undone together.
    pub fn operation(&mut self, command: &str, summary: &serde_json::Value) -> Option<i64> {
        let actor = self.actor.clone();
        let j = self.journal.as_mut()?;
        j.begin_operation(&actor, command, summary)
            .map_err(|e| warn_unrecorded(&e.to_string()))
            .ok()
    }

    pub fn record_before(&mut self, operation: i64, before: &[(String, serde_json::Value)]) {
        if let Some(j) = &mut self.journal
            && let Err(e) = j.record_before(operation, before)
        {
            warn_unrecorded(&e.to_string());
        }
    }
}

fn warn_unrecorded(why: &str) {
    eprintln!(
        "warning: the journal did not record this change ({why}); the maps have it, and the agent journals it at its next start"
    );
}

/// The desired-state change that makes the journal hold what the maps now
/// hold for `target` (the operator's part).
pub fn list_change(store: &Store, reasons: &Reasons, target: &Target) -> Result<StateChange> {
    let row = store
        .entries_for(target)?
        .and_then(|e| {
            let reason = reasons.text(e.reason_id).map(str::to_string);
            ListRow::of_entry(target.to_string(), &e, reason)
        })
        .unwrap_or_else(|| ListRow::none(target.to_string()));
    Ok(StateChange::List(row))
}
