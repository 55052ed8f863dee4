//! Undoing at once: every decision one detector made since a time (a
//! detector that misfired), or an operator's import (what it added goes,
//! what it replaced comes back). Entries changed since by someone else are
//! left as they are: the later change wins.

use ensuresec_common::{
    decisions::{DecisionKey, DecisionRecord, Detector},
    entry::Target,
    maps::FLAG_BLOCK,
};
use serde::Serialize;

use crate::{
    clock,
    detect::decide::{self, Lift},
    edit::Op,
    error::{Error, Result},
    journal::{Journal, operations::Before},
    store::{Store, Writer},
};

/// The decisions in force that `detector` made at or after `since_secs`
/// (wall clock), oldest first.
pub fn decisions_of(
    store: &Store,
    detector: Detector,
    since_secs: u64,
) -> Result<Vec<(DecisionKey, DecisionRecord)>> {
    let now = clock::mono_ns();
    let mut found: Vec<_> = store
        .decisions()?
        .into_iter()
        .filter(|(_, r)| {
            r.detector == detector as u32 && r.created_secs >= since_secs && r.expires_at_ns > now
        })
        .collect();
    found.sort_by_key(|(_, r)| r.created_secs);
    Ok(found)
}

/// Lifts each decision as an operator would (a false positive: the
/// source's strikes are forgotten too). Returns those lifted; one that
/// changed or went meanwhile is skipped.
pub fn lift(
    w: &Writer,
    planned: &[(DecisionKey, DecisionRecord)],
) -> Result<Vec<(DecisionKey, DecisionRecord)>> {
    let mut lifted = Vec::new();
    for (key, record) in planned {
        if w.decision(key)?.as_ref() != Some(record) {
            continue;
        }
        decide::lift(w, key, record, Lift::ByHand)?;
        lifted.push((*key, *record));
    }
    Ok(lifted)
}

/// What undoing an import does.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Undo {
    /// Blocks the import added, removed.
    pub removed: Vec<String>,
    /// Blocks the import replaced, put back as they were.
    pub restored: Vec<String>,
    /// Entries whose block is gone already (removed or expired since).
    pub gone: usize,
    #[serde(skip)]
    put_back: Vec<(Target, Before, u64)>,
}

/// Plans undoing `operation`: the entries it set last, and what they held.
pub fn plan_undo(store: &Store, journal: &Journal, operation: i64) -> Result<Undo> {
    let before = journal.before_operation(operation)?;
    let mut undo = Undo::default();
    for row in journal.rows_of_operation(operation)? {
        let target: Target = row.target.parse().map_err(Error::Target)?;
        let blocks = store
            .entries_for(&target)?
            .is_some_and(|e| e.flags & FLAG_BLOCK != 0);
        if !blocks {
            undo.gone += 1;
            continue;
        }
        // Replaced: as it was, unless its own time has run out since.
        let kept = before
            .get(&row.target)
            .and_then(|b| match b.block_expires_ms {
                None => Some((b.clone(), 0)),
                Some(ms) => clock::mono_of_wall_ms(ms).map(|ns| (b.clone(), ns)),
            });
        match kept {
            Some((b, expires_at_ns)) => {
                undo.put_back.push((target, b, expires_at_ns));
                undo.restored.push(row.target);
            }
            None => undo.removed.push(row.target),
        }
    }
    Ok(undo)
}

/// Applies a planned undo: every block the operation set is removed, then
/// the replaced ones are put back with their reason, time added and expiry.
pub fn apply_undo(w: &Writer, undo: &Undo) -> Result<()> {
    let unblock = undo
        .removed
        .iter()
        .chain(&undo.restored)
        .map(|t| Ok((t.parse().map_err(Error::Target)?, Op::Unblock)))
        .collect::<Result<Vec<(Target, Op)>>>()?;
    w.edit(&unblock)?;
    let mut reasons = w.reasons()?;
    let mut blocks = Vec::with_capacity(undo.put_back.len());
    for (target, b, expires_at_ns) in &undo.put_back {
        let reason_id = match &b.reason {
            Some(text) => w.intern_reason(&mut reasons, text, || w.reason_ids_in_use())?,
            None => 0,
        };
        blocks.push((
            *target,
            Op::Block {
                expires_at_ns: *expires_at_ns,
                reason_id,
                now_secs: b.added_secs,
            },
        ));
    }
    w.edit(&blocks)?;
    Ok(())
}
