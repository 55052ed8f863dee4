//! The scoring loop of one model: every step, read what each source sent (or
//! what each protected destination received), score the vectors in batches,
//! and hand those above the threshold to the detection engine, which decides
//! on them like on any detector's finding. The model file is watched and
//! reloaded when it changes; a file that cannot be used is reported (log,
//! metric, status) and the previous model, if any, keeps scoring. Without a
//! usable model, the threshold detectors go on alone.

use std::{
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use ensuresec_common::{
    features::{AddrKey, DestKey, Window},
    vector,
};
use ndarray::Array2;

use super::{
    destinations,
    evidence::top_features,
    metrics::MlMetrics,
    model::{Model, ModelError, Subject},
    settings::{MlSettings, ModelSettings},
    state::{self, MlState},
    steps::Stepper,
};
use crate::{clock, store::Store};

/// Addresses that only a neighbour on the link uses: IPv4 and IPv6
/// link-local, and the unspecified address of duplicate address detection.
/// The per-source model does not score them: their neighbour discovery and
/// multicast listener chatter is not traffic it learnt, and a decision on a
/// router's link-local address would cut the host's IPv6 off. The threshold
/// detectors still see a flood from a neighbour.
pub fn on_link(addr: std::net::IpAddr) -> bool {
    match addr {
        std::net::IpAddr::V4(a) => a.is_link_local() || a.is_unspecified(),
        std::net::IpAddr::V6(a) => a.is_unicast_link_local() || a.is_unspecified(),
    }
}

/// What a model flagged.
#[derive(Clone, Debug, PartialEq)]
pub enum Flagged {
    Source(AddrKey),
    /// A protected address: the port and protocol that received the most,
    /// and each port's own window.
    Destination {
        hot: DestKey,
        ports: Vec<(DestKey, Window)>,
    },
}

/// A source or destination the model flagged.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub flagged: Flagged,
    pub score: f32,
    pub threshold: f32,
    /// The features with the largest errors, with their share of the error.
    pub top: Vec<(usize, f32)>,
    pub first_seen_ns: u64,
    pub packets: u64,
}

/// What identifies a version of the model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

fn error_kind(e: &ModelError) -> &'static str {
    match e {
        ModelError::Read { .. } => "read",
        ModelError::NotOnnx { .. } => "not_onnx",
        ModelError::Incompatible { .. } => "incompatible",
        ModelError::NotFinite { .. } => "not_finite",
    }
}

/// One vector to score, and what it is about.
struct Row {
    flagged: Flagged,
    vector: Vec<f32>,
    first_seen_ns: u64,
    packets: u64,
}

pub struct Runner {
    store: Arc<Store>,
    shared: MlSettings,
    settings: ModelSettings,
    /// The `[[protect]]` prefixes: the only destinations scored.
    protect: Vec<ensuresec_common::entry::Target>,
    window_ns: u64,
    metrics: MlMetrics,
    findings: SyncSender<Finding>,
    state_path: PathBuf,
    model: Option<Model>,
    seen: Option<Option<FileStamp>>,
    stepper: Stepper,
    state: MlState,
}

impl Runner {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        shared: &MlSettings,
        settings: ModelSettings,
        protect: Vec<ensuresec_common::entry::Target>,
        window: Duration,
        metrics: MlMetrics,
        findings: SyncSender<Finding>,
        state_path: PathBuf,
    ) -> Self {
        let state = MlState {
            model: settings.path.clone(),
            state: "missing".into(),
            ..MlState::default()
        };
        Self {
            store,
            shared: shared.clone(),
            settings,
            protect,
            window_ns: window.as_nanos() as u64,
            metrics,
            findings,
            state_path,
            model: None,
            seen: None,
            stepper: Stepper::new(),
            state,
        }
    }

    /// Loads the model now (so that the agent's log says at once whether it
    /// is usable), then scores every step until `stop` is set.
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        self.reload_if_changed();
        std::thread::Builder::new()
            .name(format!("ensuresec-ml-{}", self.settings.subject.name()))
            .spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(20).min(next - Instant::now()));
                        continue;
                    }
                    next += self.shared.step;
                    if next < Instant::now() {
                        next = Instant::now() + self.shared.step;
                    }
                    self.reload_if_changed();
                    let started = Instant::now();
                    if let Err(e) = self.step() {
                        tracing::error!(error = %e, "anomaly scoring step failed");
                    }
                    self.metrics
                        .step_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.save_state();
                }
            })
            .expect("spawning the anomaly scoring thread")
    }

    fn save_state(&self) {
        if let Err(e) = state::write(&self.state_path, &self.state) {
            tracing::debug!(error = %e, path = %self.state_path.display(), "writing the model state");
        }
    }

    /// Loads the model when its file appeared, changed or went away.
    pub fn reload_if_changed(&mut self) {
        let now = stamp(&self.settings.path);
        if self.seen == Some(now) {
            return;
        }
        self.seen = Some(now);
        let subject = self.settings.subject.name();
        match Model::load(&self.settings.path, self.settings.subject) {
            Ok(model) => {
                let info = &model.info;
                tracing::info!(
                    subject,
                    model = %info.path.display(),
                    version = %info.version,
                    threshold = info.threshold,
                    "anomaly model loaded"
                );
                if let Some(step) = info.step_seconds
                    && (step - self.shared.step.as_secs_f64()).abs() > 1e-6
                {
                    tracing::warn!(
                        subject,
                        trained_step = step,
                        step = self.shared.step.as_secs_f64(),
                        "the model was trained on steps of another length; scores may drift"
                    );
                }
                let window = self.window_ns as f64 / 1e9;
                if let Some(trained) = info.window_seconds
                    && (trained - window).abs() > 1e-6
                {
                    tracing::warn!(
                        subject,
                        trained_window = trained,
                        window,
                        "the model was trained on kernel windows of another length ([detect] window); scores may drift"
                    );
                }
                self.metrics.model_info.reset();
                self.metrics
                    .model_info
                    .with_label_values(&[info.version.as_str(), &info.width.to_string()])
                    .set(1);
                self.metrics.model_loaded.set(1);
                self.state.state = "loaded".into();
                self.state.version = Some(info.version.clone());
                self.state.input_width = Some(info.width);
                self.state.threshold = Some(self.settings.threshold.unwrap_or(info.threshold));
                self.state.error = None;
                self.model = Some(model);
            }
            Err(e) => {
                self.metrics
                    .model_errors
                    .with_label_values(&[error_kind(&e)])
                    .inc();
                match &self.model {
                    Some(m) => tracing::error!(
                        subject,
                        error = %e,
                        still_scoring = %m.info.version,
                        "anomaly model refused; the previous one keeps scoring"
                    ),
                    None => tracing::error!(
                        subject,
                        error = %e,
                        "anomaly model refused; threshold detectors go on without it"
                    ),
                }
                self.state.state = "error".into();
                self.state.error = Some(e.to_string());
                if self.model.is_none() {
                    self.metrics.model_loaded.set(0);
                }
            }
        }
        self.state.changed_secs = clock::unix_secs();
        self.save_state();
    }

    /// What this step has to score: sources (or destinations) with at least
    /// `min_packets` packets.
    fn rows(&mut self) -> crate::error::Result<Vec<Row>> {
        let now = clock::mono_ns();
        let min = self.settings.min_packets;
        Ok(match self.settings.subject {
            Subject::Source => self
                .stepper
                .step(&self.store, now, self.window_ns)?
                .into_iter()
                .filter(|s| s.counts.packets >= min)
                .filter(|s| !on_link(crate::store::decisions::key_addr(&s.source)))
                .map(|s| Row {
                    flagged: Flagged::Source(s.source),
                    vector: vector::of(&s.counts, s.secs).to_vec(),
                    first_seen_ns: s.first_seen_ns,
                    packets: s.counts.packets,
                })
                .collect(),
            Subject::Destination => destinations::read(&self.store, now, self.window_ns)?
                .into_iter()
                .filter(|d| d.window.packets as u64 >= min)
                .filter(|d| {
                    let addr = crate::store::decisions::key_addr(&d.addr);
                    self.protect.iter().any(|t| t.contains(addr))
                })
                .map(|d| Row {
                    vector: vector::destination::of(&d.window, d.secs).to_vec(),
                    flagged: Flagged::Destination {
                        hot: d.hot,
                        ports: d.ports,
                    },
                    first_seen_ns: d.window.start_ns,
                    packets: d.window.packets as u64,
                })
                .collect(),
        })
    }

    /// One step: what sent (or received) at least `min_packets`, scored.
    fn step(&mut self) -> crate::error::Result<()> {
        // Destination rows need no baseline: without a model, nothing to read.
        if self.model.is_none() && self.settings.subject == Subject::Destination {
            return Ok(());
        }
        let rows = self.rows()?;
        let Some(model) = &self.model else {
            return Ok(());
        };
        let threshold = self.settings.threshold.unwrap_or(model.info.threshold);
        let width = model.info.width;
        for chunk in rows.chunks(self.shared.batch) {
            let mut x = Array2::<f32>::zeros((chunk.len(), width));
            for (mut row, r) in x.rows_mut().into_iter().zip(chunk) {
                for (cell, v) in row.iter_mut().zip(&r.vector) {
                    *cell = *v;
                }
            }
            let started = Instant::now();
            let scored = match model.score(x.view()) {
                Ok(s) => s,
                Err(e) => {
                    self.metrics
                        .model_errors
                        .with_label_values(&["inference"])
                        .inc();
                    tracing::error!(
                        subject = self.settings.subject.name(),
                        error = %e,
                        "anomaly model inference failed"
                    );
                    return Ok(());
                }
            };
            self.metrics
                .inference_seconds
                .observe(started.elapsed().as_secs_f64());
            for (i, (r, score)) in chunk.iter().zip(&scored.scores).enumerate() {
                if !score.is_finite() {
                    self.metrics
                        .model_errors
                        .with_label_values(&["not_finite"])
                        .inc();
                    continue;
                }
                self.metrics.scores.observe(*score as f64);
                self.metrics.scored.inc();
                self.state.scored += 1;
                if *score <= threshold {
                    continue;
                }
                self.metrics.flagged.inc();
                self.state.flagged += 1;
                let finding = Finding {
                    flagged: r.flagged.clone(),
                    score: *score,
                    threshold,
                    top: top_features(scored.errors.row(i)),
                    first_seen_ns: r.first_seen_ns,
                    packets: r.packets,
                };
                match self.findings.try_send(finding) {
                    Ok(()) => {}
                    // The engine is behind: it decides on what it has; the
                    // next step scores this again if it goes on.
                    Err(TrySendError::Full(_)) => self.metrics.findings_dropped.inc(),
                    // The engine is gone: the agent is stopping.
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::on_link;

    #[test]
    fn only_link_local_and_unspecified_sources_are_on_link() {
        for a in ["fe80::1", "fe80::aa:bb", "169.254.3.4", "::", "0.0.0.0"] {
            assert!(on_link(a.parse().unwrap()), "{a}");
        }
        for a in [
            "fd77::3:13",
            "2001:db8::1",
            "10.77.3.10",
            "203.0.113.9",
            "ff02::1",
        ] {
            assert!(!on_link(a.parse().unwrap()), "{a}");
        }
    }
}
