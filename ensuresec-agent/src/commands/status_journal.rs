//! What `status` reads from the journal: the journal itself, the open
//! incidents, and the storefronts whose fail-safe profile is on.

use serde::Serialize;

use crate::{
    clock,
    journal::{Journal, Kind, incidents::IncidentFilter, query::Filter},
    respond::record,
};

#[derive(Serialize)]
pub struct JournalStatus {
    pub path: String,
    pub bytes: u64,
    pub entries: u64,
    /// The newest entry's time (RFC 3339).
    pub last_entry_at: Option<String>,
    /// Why it could not be read, if it could not.
    pub error: Option<String>,
}

pub fn journal_status(state_dir: &std::path::Path) -> Option<JournalStatus> {
    let path = Journal::path_in(state_dir);
    let read = || -> crate::error::Result<Option<JournalStatus>> {
        let Some(j) = Journal::open_read_only(state_dir)? else {
            return Ok(None);
        };
        let newest = j.entries(&Filter {
            limit: Some(1),
            ..Default::default()
        })?;
        Ok(Some(JournalStatus {
            path: path.display().to_string(),
            bytes: j.size_bytes(),
            entries: j.count()?,
            last_entry_at: newest.first().map(|r| clock::rfc3339_ms(r.entry.at_ms)),
            error: None,
        }))
    };
    read().unwrap_or_else(|e| {
        Some(JournalStatus {
            path: path.display().to_string(),
            bytes: 0,
            entries: 0,
            last_entry_at: None,
            error: Some(e.to_string()),
        })
    })
}

#[derive(Serialize)]
pub struct ResponseStatus {
    pub open_incidents: Vec<IncidentBrief>,
    pub failsafe_on: Vec<FailsafeOn>,
}

#[derive(Serialize)]
pub struct IncidentBrief {
    pub id: i64,
    pub storefront: String,
    pub kind: String,
    pub state: String,
    pub since: String,
    pub sources: u64,
}

#[derive(Serialize)]
pub struct FailsafeOn {
    pub storefront: String,
    pub since: String,
    pub why: String,
}

pub fn response_status(state_dir: &std::path::Path) -> Option<ResponseStatus> {
    let read = || -> crate::error::Result<Option<ResponseStatus>> {
        let Some(j) = Journal::open_read_only(state_dir)? else {
            return Ok(None);
        };
        let open_incidents = j
            .incidents(&IncidentFilter {
                unresolved: true,
                ..Default::default()
            })?
            .iter()
            .filter_map(|r| record::incident(r).ok())
            .map(|i| IncidentBrief {
                id: i.id,
                storefront: i.storefront,
                kind: i.kind.to_string(),
                state: i.state.name().into(),
                since: clock::rfc3339_ms(i.first_seen_ms),
                sources: i.sources_total,
            })
            .collect();
        let failsafe_on = j
            .failsafe_switches()?
            .into_iter()
            .filter(|r| r.entry.kind == Kind::FailsafeOn)
            .map(|r| FailsafeOn {
                storefront: r.entry.storefront.unwrap_or_default(),
                since: clock::rfc3339_ms(r.entry.at_ms),
                why: r.entry.detail["why"].as_str().unwrap_or("").to_string(),
            })
            .collect();
        Ok(Some(ResponseStatus {
            open_incidents,
            failsafe_on,
        }))
    };
    // A journal `status` cannot read is already named by its journal line.
    read().ok().flatten()
}

pub fn print_response(r: &ResponseStatus) {
    if r.open_incidents.is_empty() {
        println!("incidents: none open");
    }
    for i in &r.open_incidents {
        println!(
            "incident #{}: {} at {}, {} since {} ({} sources)",
            i.id, i.kind, i.storefront, i.state, i.since, i.sources
        );
    }
    for f in &r.failsafe_on {
        println!(
            "fail-safe: {} tightened since {} ({})",
            f.storefront, f.since, f.why
        );
    }
}
