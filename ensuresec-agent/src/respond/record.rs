//! Incidents as the journal keeps them: a row with the searched columns and
//! the incident in JSON.

use super::incidents::{Incident, State};
use crate::journal::{
    Journal, JournalError,
    incidents::{IncidentFilter, IncidentRow},
};

pub fn row(i: &Incident) -> IncidentRow {
    IncidentRow {
        id: i.id,
        storefront: i.storefront.clone(),
        kind: i.kind.name().to_string(),
        state: i.state.name().to_string(),
        first_seen_ms: i.first_seen_ms,
        last_seen_ms: i.last_seen_ms,
        body: serde_json::to_string(i).expect("an incident is plain data"),
    }
}

pub fn incident(row: &IncidentRow) -> Result<Incident, JournalError> {
    let mut i: Incident = serde_json::from_str(&row.body).map_err(|e| JournalError::Malformed {
        what: "an incident",
        value: format!("#{}: {e}", row.id),
    })?;
    i.id = row.id;
    Ok(i)
}

/// The incidents a previous run left open or mitigating (an unreadable
/// one is named in the log and left out: it cannot be resumed).
pub fn unresolved(journal: &Journal) -> Result<Vec<Incident>, JournalError> {
    let rows = journal.incidents(&IncidentFilter {
        unresolved: true,
        ..Default::default()
    })?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            incident(r)
                .map_err(|e| tracing::warn!(error = %e, "an open incident is unreadable"))
                .ok()
        })
        .filter(|i| i.state != State::Resolved)
        .collect())
}
