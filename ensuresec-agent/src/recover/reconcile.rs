//! The maps are the truth while they live: what they hold and the journal
//! does not (a change made with the agent down, a write the journal lost)
//! becomes the journal's desired state, and each difference in the lists
//! is journaled.

use std::collections::HashMap;

use ensuresec_common::decisions::DecisionRecord;
use serde_json::json;

use crate::{
    clock,
    error::Result,
    journal::{
        AGENT, Entry, Journal, Kind, StateChange,
        state::{DecisionRow, ListRow, OffenderRow},
    },
    store::{
        Store,
        decisions::{DecisionTarget, key_addr},
    },
};

/// The operator's part of every list entry in the maps.
pub fn list_rows_in_maps(store: &Store) -> Result<Vec<ListRow>> {
    let reasons = store.reasons()?;
    Ok(store
        .entries()?
        .into_iter()
        .filter_map(|l| {
            let reason = reasons.text(l.entry.reason_id).map(str::to_string);
            ListRow::of_entry(l.target.to_string(), &l.entry, reason)
        })
        .collect())
}

/// The journal's list state made equal to the maps': the changes, and an
/// entry for each difference.
pub fn lists(store: &Store, journal: &Journal) -> Result<(Vec<StateChange>, Vec<Entry>)> {
    let now_ms = clock::unix_ms();
    let mut journaled: HashMap<String, ListRow> = journal
        .list_rows()?
        .into_iter()
        .map(|r| (r.target.clone(), r))
        .collect();
    let (mut changes, mut entries) = (Vec::new(), Vec::new());
    for mut row in list_rows_in_maps(store)? {
        match journaled.remove(&row.target) {
            Some(had) if had.same_as(&row) => {}
            had => {
                row.operation = had.as_ref().and_then(|h| h.operation);
                entries.push(
                    Entry::now(Kind::Reconcile, AGENT)
                        .target(&row.target)
                        .detail(json!({"maps": row, "journal": had})),
                );
                changes.push(StateChange::List(row));
            }
        }
    }
    for (target, had) in journaled {
        let expired = had.block_expires_ms.is_some_and(|t| t <= now_ms) && !had.allow;
        if !expired {
            entries.push(
                Entry::now(Kind::Reconcile, AGENT)
                    .target(&target)
                    .detail(json!({"maps": null, "journal": had})),
            );
        }
        changes.push(StateChange::List(ListRow::none(target)));
    }
    Ok((changes, entries))
}

/// The storefront name of a record, from its id in `ES_REASONS`.
pub fn storefront_name(store: &Store, record: &DecisionRecord) -> Option<String> {
    (record.storefront_id != 0)
        .then(|| store.reason_text(record.storefront_id).ok().flatten())
        .flatten()
}

/// The journal's decisions and offenders made equal to the maps' (decisions
/// still in force only).
pub fn decisions(store: &Store, journal: &Journal) -> Result<Vec<StateChange>> {
    let now = clock::mono_ns();
    let mut journaled: HashMap<String, DecisionRow> = journal
        .decision_rows()?
        .into_iter()
        .map(|r| (r.target.clone(), r))
        .collect();
    let mut changes = Vec::new();
    for (key, record) in store.decisions()? {
        if record.expires_at_ns <= now {
            continue;
        }
        let target = DecisionTarget(key).to_string();
        let row = DecisionRow::of_record(target.clone(), &record, storefront_name(store, &record));
        match journaled.remove(&target) {
            Some(had) if had.same_as(&row) => {}
            _ => changes.push(StateChange::Decision(row)),
        }
    }
    changes.extend(journaled.into_keys().map(StateChange::DecisionGone));
    let mut offenders: HashMap<String, OffenderRow> = journal
        .offender_rows()?
        .into_iter()
        .map(|r| (r.addr.clone(), r))
        .collect();
    for (addr, o) in store.offenders()? {
        let row = OffenderRow {
            addr: key_addr(&addr).to_string(),
            strikes: o.strikes,
            last_secs: o.last_secs,
        };
        match offenders.remove(&row.addr) {
            Some(had) if had == row => {}
            _ => changes.push(StateChange::Offender(row)),
        }
    }
    changes.extend(offenders.into_keys().map(StateChange::OffenderGone));
    Ok(changes)
}
