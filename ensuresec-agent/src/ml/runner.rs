//! The scoring loop: every step, read what each source sent, score the
//! vectors in batches, and hand sources above the threshold to the detection
//! engine, which decides on them like on any detector's finding. The model
//! file is watched and reloaded when it changes; a file that cannot be used
//! is reported (log, metric, status) and the previous model, if any, keeps
//! scoring. Without a usable model, the threshold detectors go on alone.

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
    features::AddrKey,
    vector::{self, FEATURES, WIDTH},
};
use ndarray::Array2;

use super::{
    metrics::MlMetrics,
    model::{Model, ModelError},
    settings::MlSettings,
    state::{self, MlState},
    steps::Stepper,
};
use crate::{clock, store::Store};

/// A source the model flagged.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub source: AddrKey,
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

/// The three features that contributed most to a row's error.
pub fn top_features(errors: ndarray::ArrayView1<f32>) -> Vec<(usize, f32)> {
    let total: f32 = errors.iter().sum();
    let mut idx: Vec<usize> = (0..errors.len()).collect();
    idx.sort_by(|a, b| errors[*b].total_cmp(&errors[*a]));
    idx.into_iter()
        .take(3)
        .map(|i| (i, if total > 0.0 { errors[i] / total } else { 0.0 }))
        .collect()
}

pub struct Runner {
    store: Arc<Store>,
    settings: MlSettings,
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
    pub fn new(
        store: Arc<Store>,
        settings: MlSettings,
        window: Duration,
        metrics: MlMetrics,
        findings: SyncSender<Finding>,
        state_path: PathBuf,
    ) -> Self {
        let state = MlState {
            model: settings.model.clone(),
            state: "missing".into(),
            ..MlState::default()
        };
        Self {
            store,
            settings,
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
            .name("ensuresec-ml".into())
            .spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(20).min(next - Instant::now()));
                        continue;
                    }
                    next += self.settings.step;
                    if next < Instant::now() {
                        next = Instant::now() + self.settings.step;
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
        let now = stamp(&self.settings.model);
        if self.seen == Some(now) {
            return;
        }
        self.seen = Some(now);
        match Model::load(&self.settings.model) {
            Ok(model) => {
                let info = &model.info;
                tracing::info!(
                    model = %info.path.display(),
                    version = %info.version,
                    threshold = info.threshold,
                    "anomaly model loaded"
                );
                if let Some(step) = info.step_seconds
                    && (step - self.settings.step.as_secs_f64()).abs() > 1e-6
                {
                    tracing::warn!(
                        trained_step = step,
                        step = self.settings.step.as_secs_f64(),
                        "the model was trained on steps of another length; scores may drift"
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
                        error = %e,
                        still_scoring = %m.info.version,
                        "anomaly model refused; the previous one keeps scoring"
                    ),
                    None => tracing::error!(
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

    /// One step: the sources that sent at least `min_packets`, scored.
    fn step(&mut self) -> crate::error::Result<()> {
        let steps = self
            .stepper
            .step(&self.store, clock::mono_ns(), self.window_ns)?;
        let Some(model) = &self.model else {
            return Ok(());
        };
        let steps: Vec<_> = steps
            .into_iter()
            .filter(|s| s.counts.packets >= self.settings.min_packets)
            .collect();
        let threshold = self.settings.threshold.unwrap_or(model.info.threshold);
        for chunk in steps.chunks(self.settings.batch) {
            let mut x = Array2::<f32>::zeros((chunk.len(), WIDTH));
            for (mut row, s) in x.rows_mut().into_iter().zip(chunk) {
                for (cell, v) in row.iter_mut().zip(vector::of(&s.counts, s.secs)) {
                    *cell = v;
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
                    tracing::error!(error = %e, "anomaly model inference failed");
                    return Ok(());
                }
            };
            self.metrics
                .inference_seconds
                .observe(started.elapsed().as_secs_f64());
            for (i, (s, score)) in chunk.iter().zip(&scored.scores).enumerate() {
                if !score.is_finite() {
                    self.metrics
                        .model_errors
                        .with_label_values(&["not_finite"])
                        .inc();
                    continue;
                }
                self.metrics.scores.observe(*score as f64);
                self.metrics.scored.inc();
                self.state.sources_scored += 1;
                if *score <= threshold {
                    continue;
                }
                self.metrics.flagged.inc();
                self.state.flagged += 1;
                let finding = Finding {
                    source: s.source,
                    score: *score,
                    threshold,
                    top: top_features(scored.errors.row(i)),
                    first_seen_ns: s.first_seen_ns,
                    packets: s.counts.packets,
                };
                match self.findings.try_send(finding) {
                    Ok(()) => {}
                    // The engine is behind: it decides on what it has; the
                    // next step scores this source again if it goes on.
                    Err(TrySendError::Full(_)) => self.metrics.findings_dropped.inc(),
                    // The engine is gone: the agent is stopping.
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
        }
        Ok(())
    }
}

/// "log_pps 61 %, syn_share 20 %, ..." for logs and the decisions table.
pub fn describe_top(top: &[(usize, f32)]) -> String {
    top.iter()
        .filter_map(|(i, share)| Some(format!("{} {:.0} %", FEATURES.get(*i)?, share * 100.0)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_features_are_the_largest_errors_with_their_share() {
        let mut e = ndarray::Array1::<f32>::zeros(WIDTH);
        e[0] = 6.0;
        e[3] = 3.0;
        e[11] = 1.0;
        let top = top_features(e.view());
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 3, 11]);
        assert!((top[0].1 - 0.6).abs() < 1e-6);
        assert_eq!(
            describe_top(&top),
            "log_pps 60 %, syn_share 30 %, log_distinct_ports 10 %"
        );
    }
}
