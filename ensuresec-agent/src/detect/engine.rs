//! The detection loop: a thread that waits on the kernel's ring buffer, runs
//! the detectors on each trip-wire event and writes decisions, and once a
//! second expires decisions and refreshes the gauges. Its work per tick is
//! bounded, so that a flood from many sources cannot keep it from the one
//! source that trips.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
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
    decisions::{Action as Recorded, DecisionKey, Detector, SCOPE_DESTINATION, SCOPE_SOURCE},
    entry::Target,
    features::{DestKey, DetectConfig, EVENT_DEST_TRIP, EVENT_SAMPLE, EVENT_SOURCE_TRIP, Event},
    maps::FLAG_ALLOW,
};

use super::{
    decide::{self, action_name, covers},
    detector::{Action, Detectors},
    kernel::ensure_syncookies,
    metrics::DetectMetrics,
    plan::{Plan, plan},
    rules::{self, Detection},
    settings::DetectSettings,
    sockets,
};
use crate::{
    clock,
    error::{Error, Result},
    ml::runner::{Finding, describe_top},
    store::{
        Store,
        decisions::{DecisionTarget, key_addr},
    },
};

/// What a trip event is about: (kind, address, port, protocol).
type WatchKey = (u32, [u8; 16], u16, u8);

/// How often watched sources and destinations are looked at again.
const REVISIT: Duration = Duration::from_millis(50);
/// Sources and destinations watched at once, and looked at again per tick:
/// a flood of many tripping sources sheds re-examinations (counted), never
/// the first look at a new trip.
const MAX_WATCHED: usize = 4096;
const MAX_REVISITS_PER_TICK: usize = 256;

/// The allowlist's prefixes, read again only when the lists changed.
struct AllowCache {
    generation: Option<u32>,
    prefixes: Vec<Target>,
}

pub struct Engine {
    store: Arc<Store>,
    settings: DetectSettings,
    metrics: DetectMetrics,
    ring: RingBuf<MapData>,
    /// The feature tables' geometry, fixed while the agent runs.
    geometry: DetectConfig,
    kernel_dropped: u64,
    /// Sources and destinations that tripped a wire, looked at again every
    /// `REVISIT` until their window ends: a count may reach a detector's
    /// threshold between two trip levels.
    watched: HashMap<WatchKey, (Event, Instant)>,
    /// Watched keys in the order they are looked at again.
    rota: VecDeque<WatchKey>,
    allow: AllowCache,
    /// Sources the anomaly model flagged, from its scoring thread.
    findings: Option<Receiver<Finding>>,
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
            watched: HashMap::new(),
            rota: VecDeque::new(),
            allow: AllowCache {
                generation: None,
                prefixes: Vec::new(),
            },
            findings: None,
        })
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
                    self.drain();
                    self.revisit();
                    self.take_findings();
                    if last_maintain.elapsed() >= Duration::from_secs(1) {
                        last_maintain = Instant::now();
                        if let Err(e) = self.maintain() {
                            tracing::error!(error = %e, "decision upkeep failed");
                        }
                    }
                }
            })
            .expect("spawning the detection thread")
    }

    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
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
            self.metrics.events.inc();
            if e.kind == EVENT_SAMPLE {
                self.metrics.samples.inc();
                continue;
            }
            self.watch(&e);
            self.handle(&e);
        }
    }

    /// Keeps looking at an event's source or destination until its window ends.
    fn watch(&mut self, e: &Event) {
        let key = (e.kind, e.addr, e.port, e.proto);
        let until = Instant::now() + self.settings.window;
        if let Some(w) = self.watched.get_mut(&key) {
            *w = (*e, until);
        } else if self.watched.len() < MAX_WATCHED {
            self.watched.insert(key, (*e, until));
            self.rota.push_back(key);
        } else {
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
    /// tick in turn; forgets those whose window ended or that a decision
    /// already covers.
    fn revisit(&mut self) {
        let now = Instant::now();
        let turns = self.rota.len().min(MAX_REVISITS_PER_TICK);
        if self.rota.len() > turns {
            self.metrics
                .revisits_shed
                .inc_by((self.rota.len() - turns) as u64);
        }
        for _ in 0..turns {
            let Some(key) = self.rota.pop_front() else {
                break;
            };
            let Some((e, until)) = self.watched.get(&key).copied() else {
                continue;
            };
            if until <= now || self.active(&watch_decision(&e)).unwrap_or(false) {
                self.watched.remove(&key);
                continue;
            }
            self.rota.push_back(key);
            self.handle(&e);
        }
    }

    fn take_findings(&mut self) {
        let Some(rx) = &self.findings else {
            return;
        };
        let found: Vec<Finding> = rx.try_iter().collect();
        // Every block carries the same `[ml]` decisions.
        let Some(detectors) = self.settings.protect.first().map(|(_, d)| *d) else {
            return;
        };
        for f in found {
            let [observed, threshold, top, shares] =
                crate::ml::evidence::pack(f.score, f.threshold, &f.top);
            let detection = Detection {
                detector: Detector::Ml,
                observed,
                threshold,
                extra: [top, shares],
            };
            tracing::debug!(
                source = %key_addr(&f.source),
                score = f.score,
                threshold = f.threshold,
                packets = f.packets,
                top = %describe_top(&f.top),
                "anomaly model flagged a source"
            );
            if let Err(e) = self.decide_source(&f.source, &detection, &detectors, f.first_seen_ns) {
                self.failed(&e, "deciding on an anomaly");
            }
        }
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

    /// The allowlist entry that covers `addr`: its exact entry, or one of the
    /// allowlist's prefixes (read again only after the lists changed).
    fn allowlisted_by(&mut self, addr: IpAddr) -> Result<Option<Target>> {
        let exact = Target::of_addr(addr);
        if self
            .store
            .entries_for(&exact)?
            .is_some_and(|e| e.flags & FLAG_ALLOW != 0)
        {
            return Ok(Some(exact));
        }
        let generation = self.store.control()?.generation;
        if self.allow.generation != Some(generation) {
            self.allow.prefixes = self
                .store
                .prefix_entries()?
                .into_iter()
                .filter(|l| l.entry.flags & FLAG_ALLOW != 0)
                .map(|l| l.target)
                .collect();
            self.allow.generation = Some(generation);
        }
        Ok(self
            .allow
            .prefixes
            .iter()
            .find(|t| t.contains(addr))
            .copied())
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
            .with_label_values(&[detection.detector.name()])
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
        if let Some(allow) = self.allowlisted_by(source)? {
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
        self.log_decision(&source.to_string(), detection, &plan, &record);
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
                .with_label_values(&[d.detector.name()])
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
            self.log_decision(&target, &d, &plan, &record);
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

    fn log_decision(
        &self,
        target: &str,
        d: &Detection,
        plan: &Plan,
        record: &ensuresec_common::decisions::DecisionRecord,
    ) {
        let seconds = record.decided_ns.saturating_sub(record.first_seen_ns) as f64 / 1e9;
        if plan.enforced() {
            self.metrics.time_to_mitigate.observe(seconds);
        }
        tracing::warn!(
            target,
            detector = d.detector.name(),
            action = action_name(record.action),
            does = %decide::describe_action(record),
            evidence = %decide::describe_evidence(record),
            strikes = record.strikes,
            time_to_mitigate_s = seconds,
            "decision"
        );
    }

    /// Sources holding too many established connections to this host's
    /// listening ports (slowloris-style), from the kernel's socket table.
    fn half_open(&mut self) -> Result<()> {
        let blocks = &self.settings.protect;
        let Some((_, detectors)) = blocks
            .iter()
            .filter(|(_, d)| d.get(Detector::HalfOpen).per_source > 0)
            .min_by_key(|(_, d)| d.get(Detector::HalfOpen).per_source)
        else {
            return Ok(());
        };
        let detectors = *detectors;
        let threshold = detectors.get(Detector::HalfOpen).per_source;
        let protected = |local| blocks.iter().any(|(t, _)| t.contains(local));
        let now = clock::mono_ns();
        let counts = sockets::inbound_established(protected)
            .map_err(|e| Error::io("reading the socket table (sock_diag)", e))?;
        for (remote, n) in counts {
            if n >= threshold {
                let detection = Detection {
                    detector: Detector::HalfOpen,
                    observed: n as u64,
                    threshold: threshold as u64,
                    extra: [0; 2],
                };
                let key = crate::store::decisions::addr_key(remote);
                // The attack began when the source was first seen, if still known.
                let first_seen = self
                    .store
                    .source_stats(&self.geometry, &key, 0)?
                    .map_or(now, |s| s.total.first_seen_ns.min(now));
                self.decide_source(&key, &detection, &detectors, first_seen)?;
            }
        }
        Ok(())
    }

    /// Removes expired decisions (lifting their throttles and budgets) and
    /// refreshes the decision gauges and the kernel's dropped-event count.
    fn maintain(&mut self) -> Result<()> {
        if let Err(e) = self.half_open() {
            self.failed(&e, "the half-open detector");
        }
        let now = clock::mono_ns();
        let mut active = [0i64; Recorded::COUNT + 1];
        for (key, record) in self.store.decisions()? {
            if record.expires_at_ns <= now {
                decide::lift(&self.store.write()?, &key, &record, decide::Lift::Expired)?;
            } else {
                active[(record.action as usize).min(Recorded::COUNT)] += 1;
            }
        }
        for action in Recorded::ALL {
            self.metrics
                .decisions_active
                .with_label_values(&[action.name()])
                .set(active[action as usize]);
        }
        let (dropped, _) = self.store.event_stats()?;
        if dropped > self.kernel_dropped {
            self.metrics.dropped.inc_by(dropped - self.kernel_dropped);
            self.kernel_dropped = dropped;
        }
        Ok(())
    }
}

/// The decision that would cover what event `e` is about.
fn watch_decision(e: &Event) -> DecisionKey {
    let dest = e.kind == EVENT_DEST_TRIP;
    DecisionKey {
        addr: e.addr,
        port: if dest { e.port } else { 0 },
        proto: if dest { e.proto } else { 0 },
        scope: if dest {
            SCOPE_DESTINATION
        } else {
            SCOPE_SOURCE
        },
    }
}
