//! `[ml]`: the anomaly model's file, how often sources are scored, and what a
//! high score does. Off unless `model` is set; it needs `[[protect]]` blocks,
//! which turn on the kernel's per-source features.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::detect::detector::{Action, DetectorConfig};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MlSection {
    /// The ONNX model (`models/ensuresec-ae.onnx`); reloaded when it changes.
    pub model: Option<PathBuf>,
    /// `alert_only` (default), `throttle` or `ban`.
    pub action: Action,
    /// How often every active source is scored.
    pub step: String,
    /// Sources with fewer packets in a step are not scored.
    pub min_packets: u64,
    /// Replaces the model's own threshold.
    pub threshold: Option<f32>,
    pub throttle_pps: u32,
    /// Overrides `[detect] dry_run` for the model.
    pub dry_run: Option<bool>,
    /// Vectors per inference call.
    pub batch: usize,
}

impl Default for MlSection {
    fn default() -> Self {
        Self {
            model: None,
            action: Action::Alert,
            step: "1s".into(),
            min_packets: 2,
            threshold: None,
            throttle_pps: 100,
            dry_run: None,
            batch: 256,
        }
    }
}

/// `[ml]` after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct MlSettings {
    pub model: PathBuf,
    pub step: Duration,
    pub min_packets: u64,
    pub threshold: Option<f32>,
    pub batch: usize,
    /// What a flagged source gets, as for any detector.
    pub decisions: DetectorConfig,
}

impl MlSection {
    /// `None` when no model is configured. Errors name the key.
    pub fn validate(&self) -> Result<Option<MlSettings>, String> {
        let Some(model) = &self.model else {
            return Ok(None);
        };
        if model.as_os_str().is_empty() {
            return Err("ml.model is empty".into());
        }
        let step = ensuresec_common::ttl::parse_interval(&self.step)
            .map_err(|e| format!("ml.step: {e}"))?;
        if step < Duration::from_millis(250) || step > Duration::from_secs(60) {
            return Err(format!(
                "ml.step = {:?} must be within 250ms..60s",
                self.step
            ));
        }
        if self.action == Action::Budget {
            return Err(
                "ml.action = \"budget\": the model judges sources; use alert_only, throttle or ban"
                    .into(),
            );
        }
        if self.min_packets == 0 {
            return Err("ml.min_packets must be at least 1".into());
        }
        if let Some(t) = self.threshold
            && !(t.is_finite() && t > 0.0)
        {
            return Err(format!("ml.threshold = {t} must be a positive number"));
        }
        if !(1..=4096).contains(&self.batch) {
            return Err(format!("ml.batch = {} must be within 1..=4096", self.batch));
        }
        if self.throttle_pps == 0 {
            return Err("ml.throttle_pps must be at least 1".into());
        }
        Ok(Some(MlSettings {
            model: model.clone(),
            step,
            min_packets: self.min_packets,
            threshold: self.threshold,
            batch: self.batch,
            decisions: DetectorConfig {
                per_source: 0,
                aggregate: 0,
                action: self.action,
                aggregate_action: Action::Alert,
                throttle_pps: self.throttle_pps,
                dry_run: self.dry_run,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<MlSettings>, String> {
        toml::from_str::<MlSection>(text)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn off_without_a_model() {
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn defaults_alert_only() {
        let s = parse("model = \"/m.onnx\"").unwrap().unwrap();
        assert_eq!(s.decisions.action, Action::Alert);
        assert_eq!(s.step, Duration::from_secs(1));
        let s = parse("model = \"/m.onnx\"\naction = \"alert_only\"")
            .unwrap()
            .unwrap();
        assert_eq!(s.decisions.action, Action::Alert);
        let s = parse("model = \"/m.onnx\"\naction = \"ban\"")
            .unwrap()
            .unwrap();
        assert_eq!(s.decisions.action, Action::Ban);
    }

    #[test]
    fn bad_values_are_named() {
        for (text, needle) in [
            ("model = \"/m\"\naction = \"budget\"", "ml.action"),
            ("model = \"/m\"\nstep = \"10ms\"", "ml.step"),
            ("model = \"/m\"\nstep = \"soon\"", "ml.step"),
            ("model = \"/m\"\nthreshold = -1.0", "ml.threshold"),
            ("model = \"/m\"\nbatch = 0", "ml.batch"),
            ("model = \"/m\"\nmin_packets = 0", "ml.min_packets"),
            ("model = \"\"", "ml.model"),
            ("model = \"/m\"\nspeed = 3", "speed"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
