//! The responder's thread: follows the engine's decisions over a bounded
//! channel, groups them into incidents and writes each incident as it
//! changes, with an entry for each step of its lifecycle, through a journal
//! connection of its own. Never touches the maps.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ensuresec_common::decisions::{Action, Detector};
use serde_json::json;

use super::{
    drops::DropWatch,
    incidents::{Change, Incident, IncidentKind, Key, Observation, State, Tracker},
    metrics::ResponderMetrics,
    notices::queue::Queue,
    places::Places,
    record,
    switches::Switches,
};
use crate::{
    clock,
    detect::outcome::{Listener, Outcome},
    journal::{AGENT, Entry, Journal, Kind},
};

/// Decisions waiting for the responder at most; past it they are counted
/// and left out of incidents (the journal still has them).
const CHANNEL: usize = 16_384;
/// How often changed incidents are written and quiet ones resolved.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How often the open incidents' drop counts are read from the kernel.
const DROPS_EVERY: Duration = Duration::from_secs(2);

pub struct Responder {
    rx: Receiver<Outcome>,
    tracker: Tracker,
    places: Places,
    journal: Journal,
    metrics: ResponderMetrics,
    /// Incidents changed since the last write, with the entries that tell
    /// of their steps.
    dirty: HashMap<Key, Vec<Entry>>,
    /// Resolved incidents not written yet, with their steps.
    resolved: Vec<(Incident, Vec<Entry>)>,
    /// The storefronts' fail-safe profiles, on while their incidents last.
    switches: Switches,
    /// The notices each change makes, queued with it.
    notices: Queue,
    /// What the kernel dropped on the way to each incident's destinations.
    drops: DropWatch,
    last_drops: Instant,
}

/// The engine's listener that feeds the responder; never blocks.
pub fn listener(tx: SyncSender<Outcome>, metrics: ResponderMetrics) -> Listener {
    Box::new(move |outcome| {
        if matches!(outcome, Outcome::Decided { .. }) {
            match tx.try_send(outcome.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => metrics.dropped.inc(),
            }
        }
    })
}

impl Responder {
    /// A responder that resumes the incidents `journal` holds open.
    pub fn new(
        journal: Journal,
        places: Places,
        quiet: Duration,
        metrics: ResponderMetrics,
        mut switches: Switches,
        drops: DropWatch,
        notices: Queue,
    ) -> Result<(Self, SyncSender<Outcome>), crate::journal::JournalError> {
        let mut journal = journal;
        let resumed = record::unresolved(&journal)?;
        let mut dirty: HashMap<Key, Vec<Entry>> = HashMap::new();
        for i in &resumed {
            metrics.open.with_label_values(&[i.kind.name()]).inc();
            if let Some(mut on) = switches.opened(i) {
                on.detail["resumed"] = true.into();
                dirty
                    .entry((i.storefront.clone(), i.kind))
                    .or_default()
                    .push(on);
            }
        }
        // Profiles the journal says are on and nothing holds now go off.
        let settled = switches.settle(&journal.failsafe_switches()?);
        if let Err(e) = journal.write(&settled, &[]) {
            tracing::warn!(error = %e, "could not journal the fail-safe profiles' state");
        }
        let (tx, rx) = sync_channel(CHANNEL);
        let responder = Responder {
            rx,
            tracker: Tracker::new(quiet.as_millis() as u64, resumed),
            places,
            journal,
            metrics,
            dirty,
            resolved: Vec::new(),
            switches,
            notices,
            drops,
            last_drops: Instant::now(),
        };
        Ok((responder, tx))
    }

    /// Runs until `stop` is set and what came is written.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("ensuresec-respond".into())
            .spawn(move || self.run(&stop))
            .expect("spawning the responder thread")
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut last_flush = Instant::now();
        loop {
            let gone = match self.rx.recv_timeout(FLUSH_EVERY) {
                Ok(outcome) => {
                    self.observe(&outcome);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if last_flush.elapsed() >= FLUSH_EVERY {
                if self.last_drops.elapsed() >= DROPS_EVERY {
                    self.count_drops();
                    self.last_drops = Instant::now();
                }
                self.resolve_quiet(clock::unix_ms());
                self.expire_profiles();
                self.flush();
                last_flush = Instant::now();
            }
            if gone || stop.load(Ordering::Relaxed) {
                // What the engine decided before it stopped goes in; the
                // incidents stay open for the next run to resume.
                while let Ok(outcome) = self.rx.try_recv() {
                    self.observe(&outcome);
                }
                self.flush();
                return;
            }
        }
    }

    fn observe(&mut self, outcome: &Outcome) {
        let Some(o) = observation(outcome, &self.places) else {
            return;
        };
        let key = Tracker::key_of(&o);
        let (change, incident) = self.tracker.observe(&o);
        // Drops to a destination count from the decision on.
        self.drops.watch(&key, incident);
        let step = match change {
            Change::Opened => {
                self.metrics
                    .opened
                    .with_label_values(&[incident.kind.name()])
                    .inc();
                self.metrics
                    .open
                    .with_label_values(&[incident.kind.name()])
                    .inc();
                let open = step_entry(Kind::IncidentOpen, incident);
                let failsafe = self.switches.opened(incident);
                vec![Some(open), failsafe]
            }
            Change::Mitigating => vec![Some(step_entry(Kind::IncidentMitigating, incident))],
            Change::Updated | Change::Resolved => Vec::new(),
        };
        let steps = self.dirty.entry(key).or_default();
        steps.extend(step.into_iter().flatten());
    }

    /// Updates the open incidents' drop counts; a change is written (no
    /// step: the journal's entries are for the lifecycle).
    fn count_drops(&mut self) {
        let keys: Vec<Key> = self
            .tracker
            .open()
            .map(|i| (i.storefront.clone(), i.kind))
            .collect();
        for key in keys {
            if let Some(i) = self.tracker.get_mut(&key)
                && self.drops.update(&key, i)
            {
                self.dirty.entry(key).or_default();
            }
        }
    }

    /// Profiles on for their longest go off (journaled at once: no
    /// incident row goes with it).
    fn expire_profiles(&mut self) {
        let off = self.switches.expire(clock::unix_ms());
        if !off.is_empty()
            && let Err(e) = self.journal.write(&off, &[])
        {
            tracing::warn!(error = %e, "could not journal a fail-safe profile going off");
        }
    }

    fn resolve_quiet(&mut self, now_ms: u64) {
        for mut incident in self.tracker.tick(now_ms) {
            self.metrics
                .open
                .with_label_values(&[incident.kind.name()])
                .dec();
            let key = (incident.storefront.clone(), incident.kind);
            self.drops.update(&key, &mut incident);
            self.drops.forget(&key);
            // Steps not written yet (an opening) go first.
            let mut steps = self.dirty.remove(&key).unwrap_or_default();
            steps.push(step_entry(Kind::IncidentResolved, &incident));
            steps.extend(self.switches.resolved(&incident));
            self.resolved.push((incident, steps));
        }
    }

    /// Writes what changed; on failure (a full disk) it is kept and tried
    /// again at the next flush.
    fn flush(&mut self) {
        if self.dirty.is_empty() && self.resolved.is_empty() {
            return;
        }
        let keys: Vec<Key> = self.dirty.keys().cloned().collect();
        let mut rows = Vec::with_capacity(keys.len() + self.resolved.len());
        for key in &keys {
            if let Some(i) = self.tracker.get_mut(key) {
                rows.push((record::row(i), self.dirty[key].clone()));
            }
        }
        for (i, steps) in &self.resolved {
            rows.push((record::row(i), steps.clone()));
        }
        let notices = &mut self.notices;
        match self
            .journal
            .save_incidents(&mut rows, |changed| notices.rows(changed))
        {
            Ok(()) => {
                for (key, (row, _)) in keys.iter().zip(&rows) {
                    if let Some(i) = self.tracker.get_mut(key) {
                        i.id = row.id;
                    }
                }
                self.dirty.clear();
                self.resolved.clear();
            }
            Err(e) => {
                self.metrics.write_errors.inc();
                tracing::warn!(error = %e, "could not write the incidents; trying again");
            }
        }
    }
}

/// What incidents take from a decision.
fn observation(outcome: &Outcome, places: &Places) -> Option<Observation> {
    let Outcome::Decided {
        target,
        record,
        evidence,
        place,
        ..
    } = outcome
    else {
        return None;
    };
    let detector = Detector::from_id(record.detector)?;
    let kind = IncidentKind::of(detector)?;
    let app = place.app();
    Some(Observation {
        storefront: places.storefront(place),
        kind,
        detector,
        source: target.list_target().map(|t| t.to_string()),
        enforced: Action::from_id(record.action) != Some(Action::Alert),
        accounts: app.map(|a| a.accounts.clone()).unwrap_or_default(),
        destinations: places.destinations(place),
        evidence: match app {
            Some(a) => format!("{target}: {}", a.evidence),
            None => format!("{target}: {evidence}"),
        },
        at_ms: clock::unix_ms(),
    })
}

fn step_entry(kind: Kind, incident: &Incident) -> Entry {
    let mut entry = Entry::now(kind, AGENT).detail(json!({
        "kind": incident.kind.name(),
        "severity": incident.severity,
        "state": incident.state.name(),
        "sources": incident.sources_total,
        "decisions": incident.decisions,
        "first_seen": clock::rfc3339_ms(incident.first_seen_ms),
    }));
    entry.storefront = Some(incident.storefront.clone());
    if incident.state == State::Resolved {
        entry.detail["resolved"] = clock::rfc3339_ms(clock::unix_ms()).into();
    }
    entry
}
