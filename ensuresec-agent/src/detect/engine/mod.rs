//! The detection loop: a thread that waits on the kernel's ring buffer, runs
//! the detectors on each trip-wire event and writes decisions, and once a
//! second expires decisions and refreshes the gauges. Its work per tick is
//! bounded, so that a flood from many sources cannot keep it from the one
//! source that trips.

mod app;
mod model;
mod report;
mod upkeep;

pub use app::{app_target, plan_app};
use report::Layer;

use std::{
    collections::HashMap,
    os::fd::AsRawFd,
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
    features::{DestKey, DetectConfig, EVENT_DEST_TRIP, EVENT_SOURCE_TRIP, Event},
};

use super::{
    allow::AllowCache,
    decide::{self, covers},
    detector::{Action, Detectors},
    inbox::Inbox,
    kernel::ensure_syncookies,
    metrics::DetectMetrics,
    plan::plan,
    rules::{self, Detection},
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
    ring: RingBuf<MapData>,
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
            ring,
            geometry,
            kernel_dropped: 0,
            watched: WatchList::default(),
            allow: AllowCache::default(),
            findings: None,
            app: None,
            storefront_ids: HashMap::new(),
            app_evidence: None,
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

    /// Decides on what the anomaly model flags, as on any detector's finding.
    pub fn with_findings(mut self, findings: Receiver<Finding>) -> Self {
        self.findings = Some(findings);
        self
    }

    /// Runs until `stop` is set.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> JoinHandle<()> {
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
                    if last_maintain.elapsed() >= Duration::from_secs(1) {
                        last_maintain = Instant::now();
                        if let Err(e) = self.maintain() {
                            tracing::error!(error = %e, "decision upkeep failed");
                        }
                        self.flush_evidence();
                    }
                }
                self.flush_evidence();
            })
            .expect("spawning the detection thread")
    }

    /// Sleeps until the kernel's ring buffer or the application inbox has
    /// something, or `timeout`.
    fn wait(&self, timeout: Duration) {
        let pollfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = vec![pollfd(self.ring.as_raw_fd())];
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
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() >= std::mem::size_of::<Event>() {
                // SAFETY: the kernel wrote an `Event`.
                events.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) });
            }
        }
        for e in events {
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
        let until = Instant::now() + self.settings.window;
        if !self.watched.watch(e, until) {
            self.metrics.revisits_shed.inc();
        }
    }

    fn handle(&mut self, e: &Event) {
        let result = match e.kind {
            EVENT_SOURCE_TRIP => self.on_source(e),
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

    fn window_secs(&self) -> f64 {
        self.settings.window.as_secs_f64()
    }

    /// Only windows that began within the last window count.
    fn since(&self) -> u64 {
        clock::mono_ns().saturating_sub(self.settings.window.as_nanos() as u64)
    }

    fn on_source(&mut self, e: &Event) -> Result<()> {
        let Some(detectors) = self.settings.detectors_for(key_addr(&e.peer)).copied() else {
            return Ok(());
        };
        let Some(stats) = self
            .store
            .source_stats(&self.geometry, &e.addr, self.since())?
        else {
            return Ok(());
        };
        let found = rules::source_detections(&stats.window, &detectors, self.window_secs());
        for d in found {
            self.decide_source(&e.addr, &d, &detectors, stats.window.start_ns)?;
        }
        Ok(())
    }

    fn decide_source(
        &mut self,
        addr: &[u8; 16],
        detection: &Detection,
        detectors: &Detectors,
        first_seen_ns: u64,
    ) -> Result<()> {
        self.metrics
            .detections
            .with_label_values(&[detection.detector.name(), ""])
            .inc();
        let key = DecisionKey {
            addr: *addr,
            port: 0,
            proto: 0,
            scope: SCOPE_SOURCE,
        };
        let config = detectors.get(detection.detector);
        let strikes = self.store.offender(addr)?.map_or(0, |o| o.strikes) + 1;
        let dry_run = self.settings.dry_run_for(detectors, detection.detector);
        let plan = plan(
            &self.settings,
            detection.detector,
            config,
            config.action,
            dry_run,
            strikes,
        );
        if self.live(&key)?.is_some_and(|r| covers(&r, &plan)) {
            return Ok(());
        }
        let source = key_addr(addr);
        if let Some(allow) = self.allow.covering(&self.store, source)? {
            tracing::info!(%source, detector = detection.detector.name(), allowlist = %allow, "detection on an allowlisted source: no decision");
            return Ok(());
        }
        let record = decide::apply(
            &self.store.write()?,
            &key,
            detection,
            plan,
            strikes,
            first_seen_ns,
        )?;
        self.log_decision(
            &source.to_string(),
            detection,
            &plan,
            &record,
            Layer::of(detection.detector),
            record.first_seen_ns,
        );
        Ok(())
    }

    fn on_destination(&mut self, e: &Event) -> Result<()> {
        let Some(detectors) = self.settings.detectors_for(key_addr(&e.addr)).copied() else {
            return Ok(());
        };
        let dest = DestKey {
            addr: e.addr,
            port: e.port,
            proto: e.proto,
            _pad: 0,
        };
        let Some(stats) = self.store.dest_stats(&self.geometry, &dest, self.since())? else {
            return Ok(());
        };
        let found = rules::dest_detections(
            &stats.window,
            &detectors,
            self.window_secs(),
            self.settings.raw.min_sources,
        );
        for d in found {
            self.metrics
                .detections
                .with_label_values(&[d.detector.name(), ""])
                .inc();
            let key = DecisionKey {
                addr: e.addr,
                port: e.port,
                proto: e.proto,
                scope: SCOPE_DESTINATION,
            };
            if self.active(&key)? {
                continue;
            }
            let config = detectors.get(d.detector);
            let dry_run = self.settings.dry_run_for(&detectors, d.detector);
            let action = match config.aggregate_action {
                Action::Budget => Action::Budget,
                _ => Action::Alert,
            };
            let plan = plan(&self.settings, d.detector, config, action, dry_run, 0);
            if d.detector == Detector::SynFlood && !dry_run {
                ensure_syncookies();
            }
            let record = decide::apply(
                &self.store.write()?,
                &key,
                &d,
                plan,
                0,
                stats.window.start_ns,
            )?;
            let target = DecisionTarget(key).to_string();
            self.log_decision(
                &target,
                &d,
                &plan,
                &record,
                Layer::Network,
                record.first_seen_ns,
            );
        }
        Ok(())
    }

    /// The decision in force on `key`, if any.
    fn live(
        &self,
        key: &DecisionKey,
    ) -> Result<Option<ensuresec_common::decisions::DecisionRecord>> {
        Ok(self
            .store
            .decision(key)?
            .filter(|r| r.expires_at_ns > clock::mono_ns()))
    }

    fn active(&self, key: &DecisionKey) -> Result<bool> {
        Ok(self.live(key)?.is_some())
    }
}
