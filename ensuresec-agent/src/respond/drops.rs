//! What each open incident's destinations were spared: the kernel's
//! sampled per-destination drop counts, from when the incident first named
//! each destination (a resumed incident adds to what it had).

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use ensuresec_common::maps::DropCount;

use super::incidents::{Incident, Key};
use crate::store::Store;

#[derive(Default)]
struct Watched {
    /// What the incident held when watching began.
    before: (u64, u64),
    /// Each destination's count when it was first seen.
    baseline: HashMap<IpAddr, DropCount>,
}

pub struct DropWatch {
    store: Arc<Store>,
    watched: HashMap<Key, Watched>,
}

impl DropWatch {
    pub fn new(store: Arc<Store>) -> Self {
        DropWatch {
            store,
            watched: HashMap::new(),
        }
    }

    /// Takes the counts of the incident's destinations not seen yet as
    /// their baselines: drops from now on are the incident's.
    pub fn watch(&mut self, key: &Key, incident: &Incident) {
        let w = self.watched.entry(key.clone()).or_insert_with(|| Watched {
            before: (incident.packets_dropped, incident.connections_dropped),
            baseline: HashMap::new(),
        });
        for d in &incident.destinations {
            if let Ok(addr) = d.parse::<IpAddr>()
                && !w.baseline.contains_key(&addr)
                && let Ok(now) = self.store.drops_to(addr)
            {
                w.baseline.insert(addr, now);
            }
        }
    }

    /// Brings `incident`'s drop counts up to date; whether they changed.
    pub fn update(&mut self, key: &Key, incident: &mut Incident) -> bool {
        let w = self.watched.entry(key.clone()).or_insert_with(|| Watched {
            before: (incident.packets_dropped, incident.connections_dropped),
            baseline: HashMap::new(),
        });
        let (mut packets, mut syns) = w.before;
        for d in &incident.destinations {
            let Ok(addr) = d.parse::<IpAddr>() else {
                continue;
            };
            let Ok(now) = self.store.drops_to(addr) else {
                continue;
            };
            let base = *w.baseline.entry(addr).or_insert(now);
            packets += now.packets.saturating_sub(base.packets);
            syns += now.syns.saturating_sub(base.syns);
        }
        let changed = (packets, syns) != (incident.packets_dropped, incident.connections_dropped);
        incident.packets_dropped = packets;
        incident.connections_dropped = syns;
        changed
    }

    pub fn forget(&mut self, key: &Key) {
        self.watched.remove(key);
    }
}
