//! Which notices an incident's change makes, for which channels: one at its
//! opening, one when it is mitigated or has grown (at most one per
//! `update_every`), one when it resolves; each channel gets the incidents
//! of its storefronts only. Queued with the change, in its transaction.

use std::collections::{HashMap, HashSet};

use super::{
    channel::Channel,
    render::{Facts, Templates},
};
use crate::{
    clock,
    journal::{Entry, Kind, incidents::IncidentRow, outbox::OutboxRow},
    respond::{incidents::Incident, record},
};

/// An update is due when the sources or accounts grew this much.
const GROWTH: u64 = 2;

pub struct Queue {
    channels: Vec<Channel>,
    templates: Templates,
    host: String,
    update_every_ms: u64,
    /// The storefronts the config names (other incidents are the host's).
    storefronts: HashSet<String>,
    /// Per incident: when its last notice was queued, and its sources and
    /// accounts then.
    last: HashMap<i64, (u64, u64, usize)>,
}

impl Queue {
    pub fn new(
        channels: Vec<Channel>,
        templates: Templates,
        host: String,
        update_every_ms: u64,
        storefronts: HashSet<String>,
    ) -> Self {
        Queue {
            channels,
            templates,
            host,
            update_every_ms,
            storefronts,
            last: HashMap::new(),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The notices for incidents just written with their steps.
    pub fn rows(&mut self, changed: &[(IncidentRow, Vec<Entry>)]) -> Vec<OutboxRow> {
        if self.channels.is_empty() {
            return Vec::new();
        }
        let now = clock::unix_ms();
        let mut out = Vec::new();
        for (row, steps) in changed {
            let Ok(incident) = record::incident(row) else {
                continue;
            };
            for event in self.events(&incident, steps, now) {
                out.extend(self.notices(&incident, event, now));
            }
        }
        out
    }

    fn events(&mut self, i: &Incident, steps: &[Entry], now: u64) -> Vec<&'static str> {
        let has = |k: Kind| steps.iter().any(|e| e.kind == k);
        let mut events = Vec::new();
        if has(Kind::IncidentOpen) {
            events.push("open");
        } else if has(Kind::IncidentMitigating) || self.grew(i, now) {
            events.push("update");
        }
        if has(Kind::IncidentResolved) {
            events.push("resolved");
            self.last.remove(&i.id);
        } else if !events.is_empty() {
            self.last
                .insert(i.id, (now, i.sources_total, i.accounts_tried.len()));
        }
        events
    }

    /// Grown enough since its last notice, and that long enough ago.
    fn grew(&self, i: &Incident, now: u64) -> bool {
        let Some((at, sources, accounts)) = self.last.get(&i.id) else {
            return false;
        };
        now.saturating_sub(*at) >= self.update_every_ms
            && (i.sources_total >= GROWTH * (*sources).max(1)
                || i.accounts_tried.len() as u64 >= GROWTH * (*accounts as u64).max(1))
    }

    fn notices(&self, i: &Incident, event: &str, now: u64) -> Vec<OutboxRow> {
        let storefront = self
            .storefronts
            .contains(&i.storefront)
            .then_some(i.storefront.as_str());
        let notice = self
            .templates
            .render(event, Facts::of(i, &self.host), i.kind, i.state);
        let payload = serde_json::to_string(&notice).expect("a notice is plain data");
        self.channels
            .iter()
            .filter(|c| c.wants(storefront, &i.severity))
            .map(|c| OutboxRow {
                id: 0,
                channel: c.name.clone(),
                incident: i.id,
                event: event.to_string(),
                // The first seen time tells apart incidents of one id in two
                // journals (one moved aside as corrupt).
                key: match event {
                    "update" => format!(
                        "{}/{}-{}/update-{now}/{}",
                        self.host, i.id, i.first_seen_ms, c.name
                    ),
                    _ => format!(
                        "{}/{}-{}/{event}/{}",
                        self.host, i.id, i.first_seen_ms, c.name
                    ),
                },
                created_ms: now,
                payload: payload.clone(),
                attempts: 0,
                next_ms: now,
                delivered_ms: None,
                failed_ms: None,
                last_error: None,
            })
            .collect()
    }
}
