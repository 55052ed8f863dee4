//! The detection loop: a thread that waits on the kernel's ring buffer, runs
//! the detectors on each trip-wire event and writes decisions, and once a
//! second expires decisions and refreshes the gauges.

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
    features::{DestKey, DetectConfig, EVENT_DEST_TRIP, EVENT_SAMPLE, EVENT_SOURCE_TRIP, Event},
    ports::bitmap,
};
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::{
    decide::{self, Plan, action_name},
    rules::{self, Detection},
    settings::{Action, DetectSettings, Detectors},
    sockets,
};
use crate::{
    clock,
    error::Result,
    ml::runner::{Finding, describe_top},
    store::{Store, decisions::key_addr},
};

/// The detection metrics.
#[derive(Clone)]
pub struct DetectMetrics {
    pub detections: IntCounterVec,
    pub decisions_active: IntGaugeVec,
    pub events: IntCounter,
    pub dropped: IntCounter,
    pub samples: IntCounter,
    pub time_to_mitigate: Histogram,
}

impl DetectMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let m = Self {
            detections: IntCounterVec::new(
                Opts::new("ensuresec_detections_total", "Detections, by detector"),
                &["detector"],
            )?,
            decisions_active: IntGaugeVec::new(
                Opts::new(
                    "ensuresec_decisions_active",
                    "Automatic decisions in force, by action",
                ),
                &["action"],
            )?,
            events: IntCounter::new(
                "ensuresec_ringbuf_events_total",
                "Events read from the kernel's ring buffer",
            )?,
            dropped: IntCounter::new(
                "ensuresec_ringbuf_dropped_total",
                "Events the kernel could not queue (ring buffer full)",
            )?,
            samples: IntCounter::new("ensuresec_samples_total", "Sampled packet headers received")?,
            time_to_mitigate: Histogram::with_opts(
                HistogramOpts::new(
                    "ensuresec_time_to_mitigate_seconds",
                    "From the first packet of an attack's window to the decision in the kernel",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.detections.clone()))?;
        registry.register(Box::new(m.decisions_active.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.samples.clone()))?;
        registry.register(Box::new(m.time_to_mitigate.clone()))?;
        Ok(m)
    }
}

pub struct Engine {
    store: Arc<Store>,
    settings: DetectSettings,
    metrics: DetectMetrics,
    ring: RingBuf<MapData>,
    kernel_dropped: u64,
    /// Sources and destinations that tripped a wire, looked at again every
    /// `REVISIT` until their window ends: a count may reach a detector's
    /// threshold between two trip levels.
    watched: HashMap<WatchKey, (Event, Instant)>,
    /// Sources the anomaly model flagged, from its scoring thread.
    findings: Option<Receiver<Finding>>,
}

/// What a trip event is about: (kind, address, port, protocol).
type WatchKey = (u32, [u8; 16], u16, u8);

/// How often watched sources and destinations are looked at again.
const REVISIT: Duration = Duration::from_millis(50);

/// A spoofed SYN flood fills the listen queue with half-open connections
/// nobody completes; SYN cookies let the kernel answer without keeping them.
/// Linux enables them under pressure by default (1); an administrator may
/// have turned them off (0), in which case the agent turns them back on.
fn ensure_syncookies() {
    let path = "/proc/sys/net/ipv4/tcp_syncookies";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "0") {
        match std::fs::write(path, "1") {
            Ok(()) => tracing::warn!("SYN flood from many sources: turned tcp_syncookies on"),
            Err(e) => tracing::error!(error = %e, "could not turn tcp_syncookies on"),
        }
    }
}

/// Configures the kernel side of detection (windows, trip wires, tracked ports).
pub fn configure_kernel(store: &Store, settings: &DetectSettings) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let w = store.write()?;
    w.set_tracked_ports(&bitmap(&settings.tcp_ports), &bitmap(&settings.udp_ports))?;
    w.set_detect_config(&DetectConfig {
        enabled: 1,
        sample_every: settings.raw.sample_every,
        window_ns: settings.window.as_nanos() as u64,
        trip_packets: settings.raw.trip_packets,
        trip_ports: settings.raw.trip_ports,
        trip_dsts: settings.raw.trip_hosts,
        trip_dst_packets: settings.raw.trip_dst_packets,
        cpus,
        ..DetectConfig::default()
    })
}

/// Turns detection off in the kernel (no `[[protect]]` block).
pub fn disable_kernel(store: &Store) -> Result<()> {
    store.write()?.set_detect_config(&DetectConfig::default())
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        settings: DetectSettings,
        metrics: DetectMetrics,
    ) -> Result<Self> {
        let ring = store.events()?;
        Ok(Self {
            store,
            settings,
            metrics,
            ring,
            kernel_dropped: 0,
            watched: HashMap::new(),
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
            let until = Instant::now() + self.settings.window;
            self.watched
                .insert((e.kind, e.addr, e.port, e.proto), (e, until));
            self.handle(&e);
        }
    }

    fn handle(&mut self, e: &Event) {
        let result = match e.kind {
            EVENT_SOURCE_TRIP => self.on_source(e),
            EVENT_DEST_TRIP => self.on_destination(e),
            _ => Ok(()),
        };
        if let Err(err) = result {
            tracing::error!(error = %err, "handling a kernel event");
        }
    }

    /// Looks at watched sources and destinations again; forgets those whose
    /// window ended or that a decision already covers.
    fn revisit(&mut self) {
        let now = Instant::now();
        self.watched.retain(|_, (_, until)| *until > now);
        let events: Vec<Event> = self.watched.values().map(|(e, _)| *e).collect();
        for e in events {
            let key = DecisionKey {
                addr: e.addr,
                port: if e.kind == EVENT_DEST_TRIP { e.port } else { 0 },
                proto: if e.kind == EVENT_DEST_TRIP {
                    e.proto
                } else {
                    0
                },
                scope: if e.kind == EVENT_DEST_TRIP {
                    SCOPE_DESTINATION
                } else {
                    SCOPE_SOURCE
                },
            };
            if self.active(&key).unwrap_or(false) {
                self.watched.remove(&(e.kind, e.addr, e.port, e.proto));
                continue;
            }
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
                tracing::error!(error = %e, "deciding on an anomaly");
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
        let Some(stats) = self.store.source_stats(&e.addr, self.since())? else {
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
            .with_label_values(&[detection.detector.name()])
            .inc();
        let key = DecisionKey {
            addr: *addr,
            port: 0,
            proto: 0,
            scope: SCOPE_SOURCE,
        };
        if self.active(&key)? {
            return Ok(());
        }
        let source = key_addr(addr);
        if let Some(allow) = self.store.allowlisted_by(source)? {
            tracing::info!(%source, detector = detection.detector.name(), allowlist = %allow.target, "detection on an allowlisted source: no decision");
            return Ok(());
        }
        let config = detectors.get(detection.detector);
        let strikes = self.store.offender(addr)?.map_or(0, |o| o.strikes) + 1;
        let dry_run = self.settings.dry_run_for(detectors, detection.detector);
        let plan = decide::plan(&self.settings, config, config.action, dry_run, strikes);
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
        let Some(stats) = self.store.dest_stats(&dest, self.since())? else {
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
            let plan = decide::plan(&self.settings, config, action, dry_run, 0);
            if d.detector == ensuresec_common::decisions::Detector::SynFlood && !dry_run {
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
            let target = crate::store::decisions::DecisionTarget(key).to_string();
            self.log_decision(&target, &d, &plan, &record);
        }
        Ok(())
    }

    fn active(&self, key: &DecisionKey) -> Result<bool> {
        Ok(self
            .store
            .decision(key)?
            .is_some_and(|r| r.expires_at_ns > clock::mono_ns()))
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
            evidence = %decide::describe_evidence(record),
            strikes = record.strikes,
            time_to_mitigate_s = seconds,
            "decision"
        );
    }

    /// Sources holding too many connections open (slowloris-style), from the
    /// kernel's socket tables.
    fn half_open(&mut self) -> Result<()> {
        let blocks = &self.settings.protect;
        let Some((_, detectors)) = blocks
            .iter()
            .filter(|(_, d)| d.half_open.per_source > 0)
            .min_by_key(|(_, d)| d.half_open.per_source)
        else {
            return Ok(());
        };
        let detectors = *detectors;
        let threshold = detectors.half_open.per_source;
        let protected = |local| blocks.iter().any(|(t, _)| t.contains(local));
        let now = clock::mono_ns();
        for (remote, n) in sockets::connections(protected) {
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
                    .source_stats(&key, 0)?
                    .map_or(now, |s| s.total.first_seen_ns.min(now));
                self.decide_source(&key, &detection, &detectors, first_seen)?;
            }
        }
        Ok(())
    }

    /// Removes expired decisions (lifting their throttles and budgets) and
    /// refreshes the decision gauges and the kernel's dropped-event count.
    fn maintain(&mut self) -> Result<()> {
        self.half_open()?;
        let now = clock::mono_ns();
        let mut active = [0i64; 5];
        for (key, record) in self.store.decisions()? {
            if record.expires_at_ns <= now {
                decide::lift(&self.store.write()?, &key, &record, decide::Lift::Expired)?;
            } else {
                active[(record.action as usize).min(4)] += 1;
            }
        }
        for action in 1..=4u32 {
            self.metrics
                .decisions_active
                .with_label_values(&[action_name(action)])
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
