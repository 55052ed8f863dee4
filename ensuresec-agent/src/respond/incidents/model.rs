//! One incident: where, what, since when, who, what was done, who was hurt.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::IncidentKind;

/// Sources, destinations and accounts listed per incident at most: an
/// incident of a million spoofed sources stays small. The source count goes
/// on; accounts past the limit are not kept (`incidents affected` says so).
pub const MAX_LISTED: usize = 1000;
const MAX_EVIDENCE: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Detected; nothing enforced yet (alerts, a dry run).
    Open,
    /// At least one decision drops or limits the attack.
    Mitigating,
    /// Quiet for the configured period.
    Resolved,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Mitigating => "mitigating",
            State::Resolved => "resolved",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The journal's id; 0 until it is first written.
    pub id: i64,
    /// The storefront attacked: its name, or the protected prefix or
    /// address when no storefront claims it, or `host`.
    pub storefront: String,
    pub kind: IncidentKind,
    pub severity: String,
    pub state: State,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub mitigating_since_ms: Option<u64>,
    pub resolved_ms: Option<u64>,
    pub detectors: BTreeSet<String>,
    /// Sources and networks decided on (the first `MAX_LISTED`).
    pub sources: BTreeSet<String>,
    pub sources_total: u64,
    pub decisions: u64,
    /// Decisions that drop or limit (not alerts).
    pub enforced: u64,
    /// Pseudonyms of the accounts tried from attacking sources.
    pub accounts_tried: BTreeSet<String>,
    /// Pseudonyms of the accounts that logged in from attacking sources.
    pub accounts_taken_over: BTreeSet<String>,
    /// The first pieces of evidence.
    pub evidence: Vec<String>,
    /// The addresses attacked (the first `MAX_LISTED`).
    #[serde(default)]
    pub destinations: BTreeSet<String>,
    /// Packets to them dropped while it lasted, and new TCP connections
    /// (SYNs) among them: estimates, sampled in the kernel.
    #[serde(default)]
    pub packets_dropped: u64,
    #[serde(default)]
    pub connections_dropped: u64,
}

impl Incident {
    pub fn new(storefront: String, kind: IncidentKind, at_ms: u64) -> Self {
        Incident {
            id: 0,
            storefront,
            kind,
            severity: kind.severity().to_string(),
            state: State::Open,
            first_seen_ms: at_ms,
            last_seen_ms: at_ms,
            mitigating_since_ms: None,
            resolved_ms: None,
            detectors: BTreeSet::new(),
            sources: BTreeSet::new(),
            sources_total: 0,
            decisions: 0,
            enforced: 0,
            accounts_tried: BTreeSet::new(),
            accounts_taken_over: BTreeSet::new(),
            evidence: Vec::new(),
            destinations: BTreeSet::new(),
            packets_dropped: 0,
            connections_dropped: 0,
        }
    }

    pub(super) fn add_source(&mut self, source: &str) {
        if self.sources.contains(source) {
            return;
        }
        self.sources_total += 1;
        if self.sources.len() < MAX_LISTED {
            self.sources.insert(source.to_string());
        }
    }

    pub(super) fn add_accounts(&mut self, accounts: &[String], taken_over: bool) {
        let set = if taken_over {
            &mut self.accounts_taken_over
        } else {
            &mut self.accounts_tried
        };
        for a in accounts {
            if set.len() >= MAX_LISTED {
                break;
            }
            set.insert(a.clone());
        }
    }

    pub(super) fn add_destination(&mut self, addr: &str) {
        if self.destinations.len() < MAX_LISTED {
            self.destinations.insert(addr.to_string());
        }
    }

    pub(super) fn add_evidence(&mut self, text: &str) {
        if self.evidence.len() < MAX_EVIDENCE && !self.evidence.iter().any(|e| e == text) {
            self.evidence.push(text.to_string());
        }
    }
}
