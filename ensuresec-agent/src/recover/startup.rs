//! The agent's start: the journal opened (a corrupt one moved aside), the
//! pinned maps examined (none, ours, or another layout's), and the desired
//! state brought back into new maps or the journal brought in line with
//! maps that lived on.

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool},
};

use ensuresec_common::maps::MAP_CONTROL;
use serde_json::json;

use super::{reconcile, restore};
use crate::{
    error::{Error, Result},
    journal::{
        AGENT, Entry, Journal, Kind,
        retention::Retention,
        writer::{Initial, JournalMetrics, JournalSink},
    },
    pins::PinDir,
    store::Store,
};

/// What the agent found pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapsAtStart {
    /// No maps: the first start, or the first after a reboot.
    New,
    /// Maps of this build's layout, kept from before.
    Kept,
    /// Maps of another layout (an upgrade): unpinned, to be made anew.
    Replaced(String),
}

/// Examines the pinned maps; maps of another layout are unpinned (the
/// attached program keeps its own until it is replaced in place).
pub fn examine_maps(pins: &PinDir) -> Result<MapsAtStart> {
    if !pins.map(MAP_CONTROL).exists() {
        return Ok(MapsAtStart::New);
    }
    match Store::open(pins) {
        Ok(_) => Ok(MapsAtStart::Kept),
        Err(Error::Layout { map, what }) => {
            let why = format!("{map}: {what}");
            let dir = pins.maps();
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            for entry in entries.flatten() {
                std::fs::remove_file(entry.path())
                    .map_err(|e| Error::io(format!("unpinning {}", entry.path().display()), e))?;
            }
            Ok(MapsAtStart::Replaced(why))
        }
        Err(e) => Err(e),
    }
}

/// Opens the journal; one that cannot be read is moved aside and
/// journaled in the new one. `None` (logged) when there is no journal to
/// be had: the agent enforces without one.
pub fn open_journal(state_dir: &Path) -> Option<Journal> {
    match Journal::open_checked(state_dir) {
        Ok((mut journal, corrupt)) => {
            if let Some(c) = corrupt {
                tracing::error!(
                    error = %c.error,
                    moved_to = %c.moved_to.display(),
                    "the journal could not be read; moved aside, starting a new one"
                );
                let entry = Entry::now(Kind::JournalReset, AGENT).detail(json!({
                    "error": c.error,
                    "moved_to": c.moved_to,
                }));
                if let Err(e) = journal.write(&[entry], &[]) {
                    tracing::error!(error = %e, "writing to the new journal");
                }
            }
            Some(journal)
        }
        Err(e) => {
            tracing::error!(error = %e, "no journal: decisions and changes are not recorded and a reboot loses them");
            None
        }
    }
}

/// New maps get the journal's desired state now, before anything is
/// attached; returns the journal entry that says so (`None` for maps kept
/// from before, and for a first start with nothing to restore).
pub fn restore_into_new(
    store: &Store,
    journal: &Journal,
    maps: &MapsAtStart,
) -> Result<Option<Entry>> {
    let why = match maps {
        MapsAtStart::Kept => return Ok(None),
        MapsAtStart::Replaced(why) => format!("maps of another layout ({why})"),
        MapsAtStart::New => "no maps (first start or a reboot)".into(),
    };
    let started = std::time::Instant::now();
    let done = restore::restore(store, journal)?;
    if done == restore::Restored::default() {
        return Ok(None);
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        blocks = done.blocks,
        allows = done.allows,
        decisions = done.decisions,
        offenders = done.offenders,
        expired = done.expired,
        failed = done.failed,
        seconds,
        "restored the desired state from the journal into new maps"
    );
    Ok(Some(Entry::now(Kind::Restore, AGENT).detail(
        json!({"why": why, "restored": done, "seconds": seconds}),
    )))
}

/// Maps kept from before are the truth: the journal follows them (done by
/// the journal's thread, first, since it reads every entry).
fn reconcile_kept(store: Arc<Store>) -> Initial {
    Box::new(move |journal| {
        let (mut changes, entries) = reconcile::lists(&store, journal)?;
        changes.extend(reconcile::decisions(&store, journal)?);
        if !entries.is_empty() {
            tracing::info!(
                differences = entries.len(),
                "the maps held list changes the journal did not (made while the agent was down): journaled"
            );
        }
        Ok((entries, changes))
    })
}

/// How often the journal's copy of the decisions is compared with the maps
/// (a lift by the CLI, a write the journal missed).
const JOURNAL_SYNC: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the journal's thread, which also keeps the journal's decisions in
/// line with the maps.
pub fn start_journal(
    journal: Journal,
    retention: Retention,
    registry: &prometheus::Registry,
    store: Arc<Store>,
    maps: &MapsAtStart,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(JournalSink, std::thread::JoinHandle<()>)> {
    let metrics = JournalMetrics::register(registry)?;
    let (mut writer, sink) = crate::journal::writer::start(journal, metrics, retention);
    if *maps == MapsAtStart::Kept {
        writer = writer.with_initial(reconcile_kept(store.clone()));
    }
    let sync: crate::journal::writer::Sync = Box::new(move |j| reconcile::decisions(&store, j));
    let thread = writer.with_sync(sync, JOURNAL_SYNC).spawn(stop.clone());
    Ok((sink, thread))
}
