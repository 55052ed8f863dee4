//! When a storefront's fail-safe profile goes on and off: on with the first
//! open incident of a kind its profile names, off when the last of them
//! resolves. The engine does the switching; this says when, and journals it.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc,
        mpsc::{SyncSender, TrySendError},
    },
};

use serde_json::json;

use super::incidents::{Incident, Key};
use crate::{
    detect::{engine::FailsafeCommand, failsafe::Failsafe},
    journal::{AGENT, Entry, Kind},
};

pub struct Switches {
    failsafe: Arc<Failsafe>,
    commands: SyncSender<FailsafeCommand>,
    /// The open incidents holding each storefront's profile on.
    holding: HashMap<usize, BTreeSet<Key>>,
}

impl Switches {
    pub fn new(failsafe: Arc<Failsafe>, commands: SyncSender<FailsafeCommand>) -> Self {
        Switches {
            failsafe,
            commands,
            holding: HashMap::new(),
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
        first.then(|| self.switch(i, true, incident))
    }

    /// An incident resolved: the entry that says the profile went off, if
    /// it was the last one holding it on.
    pub fn resolved(&mut self, incident: &Incident) -> Option<Entry> {
        let i = self.triggers(incident)?;
        let holding = self.holding.get_mut(&i)?;
        holding.remove(&(incident.storefront.clone(), incident.kind));
        holding.is_empty().then(|| self.switch(i, false, incident))
    }

    fn switch(&self, i: usize, on: bool, incident: &Incident) -> Entry {
        let why = format!("{} incident", incident.kind);
        match self.commands.try_send(FailsafeCommand {
            storefront: i,
            on,
            why: why.clone(),
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                tracing::error!(storefront = %incident.storefront, on, "the engine did not take a fail-safe command");
            }
        }
        let kind = if on {
            Kind::FailsafeOn
        } else {
            Kind::FailsafeOff
        };
        // Its addresses, for `explain` of one of them.
        let mut entry = Entry::now(kind, AGENT).detail(json!({
            "why": why,
            "addresses": self.failsafe.targets_of(i),
        }));
        entry.storefront = Some(incident.storefront.clone());
        entry
    }
}
