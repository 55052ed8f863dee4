//! The detection loop: a thread that waits for the trip-wire events the
//! ring buffer's reader queued (`events`), runs the detectors on each and
//! writes decisions, and once a second expires decisions and refreshes the
//! gauges. Its work per tick is
//! bounded, so that a flood from many sources cannot keep it from the one
//! source that trips.

mod app;
mod failsafe;
mod model;
mod network;
mod report;
mod upkeep;

pub use app::{app_target, plan_app};
pub use failsafe::FailsafeCommand;
use report::Layer;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::Receiver,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use ensuresec_common::{
    decisions::{DecisionKey, Detector, SCOPE_DESTINATION, SCOPE_SOURCE},
    features::{
        AddrKey, DestKey, DetectConfig, EVENT_DEST_TRIP, EVENT_SOURCE_HORIZON, EVENT_SOURCE_TRIP,
        Event, Scale,
    },
};

use super::{
    allow::AllowCache,
    baseline::Baselines,
    decide::{self, covers},
    detector::{Action, Detectors},
    events::{EventQueue, MAX_PENDING, TAKE_PER_TURN, spawn_reader},
    inbox::Inbox,
    kernel::ensure_syncookies,
    metrics::DetectMetrics,
    outcome::{Outcomes, Place},
    plan::plan,
    rules::{self, Detection, Gates},
    settings::DetectSettings,
    watch::WatchList,
};
use crate::{
    app::detect::AppFinding,
    clock,
    error::{Error, Result},
    ml::runner::Finding,
    store::{
        Store,
        decisions::{DecisionTarget, key_addr},
    },
};

/// How often watched sources and destinations are looked at again.
const REVISIT: Duration = Duration::from_millis(50);

pub struct Engine {
    store: Arc<Store>,
    settings: DetectSettings,
    metrics: DetectMetrics,
    /// The kernel's ring buffer until `spawn` hands it to the reader thread.
    ring: Option<RingBuf<MapData>>,
    /// Trip events the reader thread queued.
    events: Arc<EventQueue>,
    /// The feature tables' geometry, fixed while the agent runs.
    geometry: DetectConfig,
    kernel_dropped: u64,
    /// Sources and destinations that tripped a wire, looked at again every
    /// `REVISIT` until their window ends.
    watched: WatchList,
    allow: AllowCache,
    /// Sources the anomaly model flagged, from its scoring thread.
    findings: Option<Receiver<Finding>>,
    /// What the application detectors found, from the log and event inputs.
    app: Option<Inbox<AppFinding>>,
    /// Storefront names interned in `ES_REASONS`, checked before each use.
    storefront_ids: HashMap<std::sync::Arc<str>, u32>,
    /// What application decisions were made on, in words.
    app_evidence: Option<super::app_evidence::EvidenceFile>,
    /// Each destination's normal rate of unsolicited answers.
    baselines: Baselines,
    /// Who follows the decisions (the journal, the responder).
    outcomes: Outcomes,
    /// The storefronts' fail-safe switches, and the responder's commands.
    failsafe: Option<(Arc<super::failsafe::Failsafe>, Receiver<FailsafeCommand>)>,
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        settings: DetectSettings,
        metrics: DetectMetrics,
    ) -> Result<Self> {
        let ring = store.events()?;
        let geometry = store.detect_config()?;
        Ok(Self {
            store,
            settings,
            metrics,
            ring: Some(ring),
            events: Arc::new(EventQueue::new(MAX_PENDING)?),
            geometry,
            kernel_dropped: 0,
            watched: WatchList::default(),
            allow: AllowCache::default(),
            findings: None,
            app: None,
            storefront_ids: HashMap::new(),
            app_evidence: None,
            baselines: Baselines::default(),
            outcomes: Outcomes::default(),
            failsafe: None,
        })
    }

    /// Decides on the application detectors' findings, woken by each. The
    /// storefronts' names are interned now, so that the first decision does
    /// not pay for reading the reason table.
    pub fn with_app(
        mut self,
        inbox: Inbox<AppFinding>,
        storefronts: &[std::sync::Arc<str>],
    ) -> Self {
        self.app = Some(inbox);
        self.app_evidence = Some(super::app_evidence::EvidenceFile::open(self.store.pins()));
        if let Err(e) = self.intern_storefronts(storefronts) {
            tracing::warn!(error = %e, "could not record the storefronts' names yet; retried at their first decision");
        }
        self
    }

    /// Tells `listener` every decision made and every one that expires.
    pub fn with_listener(mut self, listener: super::outcome::Listener) -> Self {
        self.outcomes.subscribe(listener);
        self
    }

    /// Decides on what the anomaly model flags, as on any detector's finding.
    pub fn with_findings(mut self, findings: Receiver<Finding>) -> Self {
        self.findings = Some(findings);
        self
    }

    /// Runs until `stop` is set.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        let reader = self.ring.take().map(|ring| {
            spawn_reader(
                ring,
                self.events.clone(),
                self.metrics.reader.clone(),
                stop.clone(),
            )
            .expect("spawning the ring buffer's reader")
        });
        std::thread::Builder::new()
            .name("ensuresec-detect".into())
            .spawn(move || {
                let mut last_maintain = Instant::now() - Duration::from_secs(1);
                while !stop.load(Ordering::Relaxed) {
                    self.wait(REVISIT);
                    self.take_app();
                    self.drain();
                    self.revisit();
                    self.take_findings();
                    self.take_failsafe();
                    if last_maintain.elapsed() >= Duration::from_secs(1) {
                        last_maintain = Instant::now();
                        if let Err(e) = self.maintain() {
                            tracing::error!(error = %e, "decision upkeep failed");
                        }
                        if let Err(e) = self.renew_failsafe() {
                            self.failed(&e, "renewing the fail-safe budgets");
                        }
                        self.flush_evidence();
                    }
                }
                self.flush_evidence();
                if let Some(reader) = reader {
                    let _ = reader.join();
                }
            })
            .expect("spawning the detection thread")
    }

    /// Sleeps until the reader queued kernel events or the application
    /// inbox has something, or `timeout`.
    fn wait(&self, timeout: Duration) {
        let pollfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = vec![pollfd(self.events.fd())];
        if let Some(app) = &self.app {
            fds.push(pollfd(app.fd()));
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as i32,
            )
        };
    }

    fn drain(&mut self) {
        for e in self.events.take(TAKE_PER_TURN) {
            self.watch(&e);
            self.handle(&e);
            // Counted once handled: a reader that sees the count knows the
            // decision, if any, is made.
            self.metrics.events.inc();
        }
        self.metrics.watched.set(self.watched.len() as i64);
    }

    /// Keeps looking at an event's source or destination until its window ends.
    fn watch(&mut self, e: &Event) {
        let until = Instant::now() + self.window_of(e);
        if !self.watched.watch(e, until) {
            self.metrics.revisits_shed.inc();
        }
    }

    fn handle(&mut self, e: &Event) {
        let result = match e.kind {
            EVENT_SOURCE_TRIP => self.on_source(e, false),
            EVENT_SOURCE_HORIZON => self.on_source(e, true),
            EVENT_DEST_TRIP => self.on_destination(e),
            _ => Ok(()),
        };
        if let Err(err) = result {
            self.failed(&err, "handling a kernel event");
        }
    }

    /// Counts and logs a decision that could not be made.
    fn failed(&self, err: &Error, doing: &str) {
        let reason = match err {
            Error::DecisionsFull => "decisions_full",
            _ => "error",
        };
        self.metrics
            .decisions_failed
            .with_label_values(&[reason])
            .inc();
        tracing::error!(error = %err, "{doing}");
    }

    /// Looks at watched sources and destinations again, a bounded number per
    /// tick in turn.
    fn revisit(&mut self) {
        let store = self.store.clone();
        let (events, shed) = self.watched.turn(Instant::now(), |key| {
            store
                .decision(key)
                .ok()
                .flatten()
                .is_some_and(|r| r.expires_at_ns > clock::mono_ns())
        });
        self.metrics.revisits_shed.inc_by(shed as u64);
        for e in events {
            self.handle(&e);
        }
        self.metrics.watched.set(self.watched.len() as i64);
    }
}
