//! When a storefront's fail-safe profile goes on and off: on with the first
//! open incident of a kind its profile names, off when the last of them
//! resolves, or after `max_on` at most (the tighter thresholds make
//! decisions of their own, which could keep an incident from ever going
//! quiet). The engine does the switching; this says when, and journals it.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, mpsc::SyncSender},
};

use serde_json::json;

use super::incidents::{Incident, Key};
use crate::{
    detect::{engine::FailsafeCommand, failsafe::Failsafe},
    journal::{AGENT, Entry, Kind, query::Row},
};

pub struct Switches {
    failsafe: Arc<Failsafe>,
    commands: SyncSender<FailsafeCommand>,
    /// The open incidents holding each storefront's profile on.
    holding: HashMap<usize, BTreeSet<Key>>,
    /// When each profile that is on went on (wall-clock ms).
    on_since: HashMap<usize, u64>,
    /// Profiles turned off after `max_on` while incidents still hold them:
    /// on again only after those resolve.
    spent: HashSet<usize>,
}

impl Switches {
    pub fn new(failsafe: Arc<Failsafe>, commands: SyncSender<FailsafeCommand>) -> Self {
        Switches {
            failsafe,
            commands,
            holding: HashMap::new(),
            on_since: HashMap::new(),
            spent: HashSet::new(),
        }
    }

    /// The storefront whose profile `incident` turns on, if any.
    fn triggers(&self, incident: &Incident) -> Option<usize> {
        let i = self.failsafe.index(&incident.storefront)?;
        let profile = self.failsafe.profile(i)?;
        (profile.on.is_empty() || profile.on.iter().any(|k| k == incident.kind.name())).then_some(i)
    }

    /// An incident opened (or was resumed): the entry that says its
    /// storefront's profile went on, if it did.
    pub fn opened(&mut self, incident: &Incident) -> Option<Entry> {
        let i = self.triggers(incident)?;
        let holding = self.holding.entry(i).or_default();
        let first = holding.is_empty();
        holding.insert((incident.storefront.clone(), incident.kind));
        (first && !self.spent.contains(&i))
            .then(|| self.switch(i, true, &format!("{} incident", incident.kind)))
    }

    /// An incident resolved: the entry that says the profile went off, if
    /// it was the last one holding it on.
    pub fn resolved(&mut self, incident: &Incident) -> Option<Entry> {
        let i = self.triggers(incident)?;
        let holding = self.holding.get_mut(&i)?;
        holding.remove(&(incident.storefront.clone(), incident.kind));
        if !holding.is_empty() {
            return None;
        }
        if self.spent.remove(&i) {
            return None;
        }
        Some(self.switch(i, false, &format!("{} incident resolved", incident.kind)))
    }

    /// Profiles on for their `max_on`: turned off, whatever holds them.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Entry> {
        let due: Vec<usize> = self
            .on_since
            .iter()
            .filter(|(i, since)| {
                self.failsafe
                    .profile(**i)
                    .is_some_and(|p| now_ms.saturating_sub(**since) >= p.max_on.as_millis() as u64)
            })
            .map(|(i, _)| *i)
            .collect();
        due.into_iter()
            .map(|i| {
                self.spent.insert(i);
                self.switch(i, false, "on for its longest (max_on)")
            })
            .collect()
    }

    /// The `failsafe_off` entries for profiles the journal says are on and
    /// no open incident holds (the agent stopped with them on, or their
    /// profile left the config): at start, after the incidents resumed.
    pub fn settle(&self, journaled: &[Row]) -> Vec<Entry> {
        journaled
            .iter()
            .filter(|r| r.entry.kind == Kind::FailsafeOn)
            .filter_map(|r| r.entry.storefront.as_deref())
            .filter(|s| {
                self.failsafe
                    .index(s)
                    .is_none_or(|i| !self.on_since.contains_key(&i))
            })
            .map(|s| off_entry(s, "no open incident holds it (at the agent's start)"))
            .collect()
    }

    fn switch(&mut self, i: usize, on: bool, why: &str) -> Entry {
        // Waits for room (the engine takes commands every 50 ms): a switch
        // is never lost while the engine runs.
        if self
            .commands
            .send(FailsafeCommand {
                storefront: i,
                on,
                why: why.to_string(),
            })
            .is_err()
        {
            tracing::error!(
                storefront = self.failsafe.name(i),
                on,
                "the engine is gone: a fail-safe command is lost"
            );
        }
        if on {
            self.on_since.insert(i, crate::clock::unix_ms());
            // Its addresses, for `explain` of one of them.
            let mut entry = Entry::now(Kind::FailsafeOn, AGENT).detail(json!({
                "why": why,
                "addresses": self.failsafe.targets_of(i),
            }));
            entry.storefront = Some(self.failsafe.name(i).to_string());
            entry
        } else {
            self.on_since.remove(&i);
            off_entry(self.failsafe.name(i), why)
        }
    }
}

fn off_entry(storefront: &str, why: &str) -> Entry {
    let mut entry = Entry::now(Kind::FailsafeOff, AGENT).detail(json!({ "why": why }));
    entry.storefront = Some(storefront.to_string());
    entry
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use super::*;
    use crate::{
        app::settings::{AppSection, AppSettings, EventsConfig, StorefrontConfig},
        respond::incidents::IncidentKind,
    };

    fn switches() -> (Switches, std::sync::mpsc::Receiver<FailsafeCommand>) {
        let front: StorefrontConfig = toml::from_str(
            "name = \"shop-a\"\naddresses = [\"192.0.2.10\"]\n[failsafe]\non = [\"flood\"]\nmax_on = \"10s\"\n",
        )
        .unwrap();
        let app = AppSettings::validate(
            &AppSection::default(),
            &[front],
            &[],
            &EventsConfig::default(),
        )
        .unwrap();
        let (tx, rx) = sync_channel(16);
        (Switches::new(Failsafe::new(&app), tx), rx)
    }

    fn incident(kind: IncidentKind) -> Incident {
        Incident::new("shop-a".into(), kind, 0)
    }

    #[test]
    fn on_with_the_first_incident_off_with_the_last_or_after_max_on() {
        let (mut s, rx) = switches();
        assert!(
            s.opened(&incident(IncidentKind::Scan)).is_none(),
            "not a kind it names"
        );
        let on = s.opened(&incident(IncidentKind::Flood)).expect("on");
        assert_eq!(on.kind, Kind::FailsafeOn);
        assert_eq!(on.detail["addresses"][0], "192.0.2.10");
        assert!(rx.try_recv().unwrap().on);
        assert!(s.expire(crate::clock::unix_ms()).is_empty(), "not yet");
        let off = s.expire(crate::clock::unix_ms() + 10_000);
        assert_eq!(off.len(), 1, "held for its longest");
        assert!(!rx.try_recv().unwrap().on);
        // Spent: the incident's end sends nothing more, the next one turns
        // it on again.
        assert!(s.resolved(&incident(IncidentKind::Flood)).is_none());
        assert!(rx.try_recv().is_err());
        assert!(s.opened(&incident(IncidentKind::Flood)).is_some());
        assert!(s.resolved(&incident(IncidentKind::Flood)).is_some());
        assert_eq!(
            rx.try_iter().map(|c| c.on).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn a_profile_the_journal_left_on_goes_off_at_start_unless_held() {
        let (mut s, _rx) = switches();
        let journaled = |storefront: &str| Row {
            id: 1,
            entry: {
                let mut e = Entry::now(Kind::FailsafeOn, AGENT);
                e.storefront = Some(storefront.into());
                e
            },
        };
        let rows = [journaled("shop-a"), journaled("gone-shop")];
        let off = s.settle(&rows);
        assert_eq!(off.len(), 2);
        assert!(off.iter().all(|e| e.kind == Kind::FailsafeOff));
        s.opened(&incident(IncidentKind::Flood));
        let off = s.settle(&rows);
        assert_eq!(off.len(), 1, "shop-a is held by its resumed incident");
        assert_eq!(off[0].storefront.as_deref(), Some("gone-shop"));
    }
}
