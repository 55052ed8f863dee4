//! The incidents' lifecycle, apart from any I/O: each decision joins the
//! open incident of its storefront and kind or opens one; an enforced
//! decision makes it mitigating; a quiet period resolves it.

use std::collections::HashMap;

use ensuresec_common::decisions::Detector;

use super::{Incident, IncidentKind, State};

/// One decision, as incidents see it.
#[derive(Clone, Debug)]
pub struct Observation {
    pub storefront: String,
    pub kind: IncidentKind,
    pub detector: Detector,
    /// The source or network decided on (none for a decision on a
    /// destination or a storefront as a whole).
    pub source: Option<String>,
    /// It drops or limits (not an alert).
    pub enforced: bool,
    /// Pseudonyms of the accounts involved.
    pub accounts: Vec<String>,
    /// The addresses the attack was aimed at, where known.
    pub destinations: Vec<std::net::IpAddr>,
    pub evidence: String,
    pub at_ms: u64,
}

/// What an observation or the clock did to an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Opened,
    /// It was open and is now mitigated.
    Mitigating,
    /// More sources, decisions or accounts.
    Updated,
    Resolved,
}

/// An incident's storefront and kind: one open incident each.
pub type Key = (String, IncidentKind);

pub struct Tracker {
    open: HashMap<Key, Incident>,
    quiet_ms: u64,
}

impl Tracker {
    /// `resumed`: the incidents left open by a previous run.
    pub fn new(quiet_ms: u64, resumed: Vec<Incident>) -> Self {
        let open = resumed
            .into_iter()
            .filter(|i| i.state != State::Resolved)
            .map(|i| ((i.storefront.clone(), i.kind), i))
            .collect();
        Tracker { open, quiet_ms }
    }

    pub fn key_of(o: &Observation) -> Key {
        (o.storefront.clone(), o.kind)
    }

    pub fn observe(&mut self, o: &Observation) -> (Change, &mut Incident) {
        let kind = o.kind;
        let key = Self::key_of(o);
        let mut change = Change::Updated;
        let incident = self.open.entry(key).or_insert_with(|| {
            change = Change::Opened;
            Incident::new(o.storefront.clone(), kind, o.at_ms)
        });
        incident.last_seen_ms = incident.last_seen_ms.max(o.at_ms);
        incident.detectors.insert(o.detector.name().to_string());
        if let Some(source) = &o.source {
            incident.add_source(source);
        }
        incident.decisions += 1;
        incident.add_evidence(&o.evidence);
        for d in &o.destinations {
            incident.add_destination(&d.to_string());
        }
        incident.add_accounts(&o.accounts, o.detector == Detector::AccountTakeover);
        if o.enforced {
            incident.enforced += 1;
            if incident.state == State::Open {
                incident.state = State::Mitigating;
                incident.mitigating_since_ms = Some(o.at_ms);
                if change != Change::Opened {
                    change = Change::Mitigating;
                }
            }
        }
        (change, incident)
    }

    /// Resolves the incidents quiet for the quiet period; returns them.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Incident> {
        let quiet: Vec<_> = self
            .open
            .iter()
            .filter(|(_, i)| now_ms.saturating_sub(i.last_seen_ms) >= self.quiet_ms)
            .map(|(k, _)| k.clone())
            .collect();
        quiet
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .map(|mut i| {
                i.state = State::Resolved;
                i.resolved_ms = Some(now_ms);
                i
            })
            .collect()
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut Incident> {
        self.open.get_mut(key)
    }

    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }
}
