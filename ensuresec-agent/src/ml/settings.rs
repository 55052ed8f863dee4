//! `[ml]`: the anomaly models' files, how often they score, and what a high
//! score does. `model` scores sources, `aggregate_model` destinations (all of
//! their sources at once); off unless one is set. Both need `[[protect]]`
//! blocks, which turn on the kernel's features.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::model::Subject;
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
    /// The aggregate model (`models/ensuresec-aggregate-ae.onnx`).
    pub aggregate_model: Option<PathBuf>,
    /// `alert_only` (default) or `budget`: filter the answers nobody asked
    /// for (reflected UDP, unsolicited SYN-ACKs) at a flagged destination
    /// when they are most of what it receives.
    pub aggregate_action: Action,
    /// Replaces the aggregate model's own threshold.
    pub aggregate_threshold: Option<f32>,
    /// Destination windows with fewer packets are not scored: no flood.
    pub aggregate_min_packets: u64,
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
            aggregate_model: None,
            aggregate_action: Action::Alert,
            aggregate_threshold: None,
            aggregate_min_packets: 20,
        }
    }
}

/// `[ml]` after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct MlSettings {
    pub step: Duration,
    pub batch: usize,
    /// The configured models: a per-source one, an aggregate one, or both.
    pub models: Vec<ModelSettings>,
}

/// One model's file, threshold and decisions.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    pub subject: Subject,
    pub path: PathBuf,
    pub threshold: Option<f32>,
    /// Rows with fewer packets are not scored.
    pub min_packets: u64,
    /// What a flagged source or destination gets, as for any detector.
    pub decisions: DetectorConfig,
}

fn model_path(key: &str, path: &Option<PathBuf>) -> Result<Option<PathBuf>, String> {
    match path {
        Some(p) if p.as_os_str().is_empty() => Err(format!("ml.{key} is empty")),
        other => Ok(other.clone()),
    }
}

fn threshold(key: &str, t: Option<f32>) -> Result<Option<f32>, String> {
    match t {
        Some(t) if !(t.is_finite() && t > 0.0) => {
            Err(format!("ml.{key} = {t} must be a positive number"))
        }
        other => Ok(other),
    }
}

impl MlSection {
    /// `None` when no model is configured. Errors name the key.
    pub fn validate(&self) -> Result<Option<MlSettings>, String> {
        let source = model_path("model", &self.model)?;
        let aggregate = model_path("aggregate_model", &self.aggregate_model)?;
        if source.is_none() && aggregate.is_none() {
            return Ok(None);
        }
        let defaults = Self::default();
        if source.is_none()
            && (self.threshold.is_some()
                || self.action != defaults.action
                || self.throttle_pps != defaults.throttle_pps
                || self.min_packets != defaults.min_packets)
        {
            return Err(
                "ml.threshold, ml.action, ml.throttle_pps and ml.min_packets are for ml.model, which is not set"
                    .into(),
            );
        }
        if aggregate.is_none()
            && (self.aggregate_threshold.is_some()
                || self.aggregate_action != defaults.aggregate_action
                || self.aggregate_min_packets != defaults.aggregate_min_packets)
        {
            return Err(
                "ml.aggregate_threshold, ml.aggregate_action and ml.aggregate_min_packets are for ml.aggregate_model, which is not set"
                    .into(),
            );
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
        if self.aggregate_min_packets == 0 {
            return Err("ml.aggregate_min_packets must be at least 1".into());
        }
        if !matches!(self.aggregate_action, Action::Alert | Action::Budget) {
            return Err(
                "ml.aggregate_action: the aggregate model judges destinations; use alert_only or budget"
                    .into(),
            );
        }
        if !(1..=4096).contains(&self.batch) {
            return Err(format!("ml.batch = {} must be within 1..=4096", self.batch));
        }
        if self.throttle_pps == 0 {
            return Err("ml.throttle_pps must be at least 1".into());
        }
        let decisions = DetectorConfig {
            per_source: 0,
            aggregate: 0,
            action: self.action,
            aggregate_action: Action::Alert,
            throttle_pps: self.throttle_pps,
            dry_run: self.dry_run,
        };
        let source_threshold = threshold("threshold", self.threshold)?;
        let aggregate_threshold = threshold("aggregate_threshold", self.aggregate_threshold)?;
        let mut models = Vec::new();
        if let Some(path) = source {
            models.push(ModelSettings {
                subject: Subject::Source,
                path,
                threshold: source_threshold,
                min_packets: self.min_packets,
                decisions,
            });
        }
        if let Some(path) = aggregate {
            models.push(ModelSettings {
                subject: Subject::Destination,
                path,
                threshold: aggregate_threshold,
                min_packets: self.aggregate_min_packets,
                decisions: DetectorConfig {
                    action: Action::Alert,
                    aggregate_action: self.aggregate_action,
                    ..decisions
                },
            });
        }
        Ok(Some(MlSettings {
            step,
            batch: self.batch,
            models,
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

    fn action(text: &str, subject: Subject) -> (Action, Action) {
        let s = parse(text).unwrap().unwrap();
        let m = s.models.iter().find(|m| m.subject == subject).unwrap();
        (m.decisions.action, m.decisions.aggregate_action)
    }

    #[test]
    fn defaults_alert_only() {
        let s = parse("model = \"/m.onnx\"").unwrap().unwrap();
        assert_eq!(s.models.len(), 1);
        assert_eq!(s.step, Duration::from_secs(1));
        assert_eq!(
            action("model = \"/m.onnx\"", Subject::Source).0,
            Action::Alert
        );
        let text = "model = \"/m.onnx\"\naction = \"ban\"";
        assert_eq!(action(text, Subject::Source).0, Action::Ban);
        let text = "aggregate_model = \"/a.onnx\"";
        assert_eq!(action(text, Subject::Destination).1, Action::Alert);
        let text = "aggregate_model = \"/a.onnx\"\naggregate_action = \"budget\"";
        assert_eq!(action(text, Subject::Destination).1, Action::Budget);
    }

    #[test]
    fn either_model_or_both() {
        let s = parse("model = \"/m\"\naggregate_model = \"/a\"\naggregate_threshold = 0.5")
            .unwrap()
            .unwrap();
        let subjects: Vec<Subject> = s.models.iter().map(|m| m.subject).collect();
        assert_eq!(subjects, [Subject::Source, Subject::Destination]);
        assert_eq!(s.models[1].threshold, Some(0.5));
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
            (
                "aggregate_model = \"/a\"\naggregate_min_packets = 0",
                "ml.aggregate_min_packets",
            ),
            ("model = \"\"", "ml.model"),
            ("model = \"/m\"\nspeed = 3", "speed"),
            ("aggregate_model = \"\"", "ml.aggregate_model"),
            (
                "aggregate_model = \"/a\"\naggregate_action = \"ban\"",
                "ml.aggregate_action",
            ),
            (
                "aggregate_model = \"/a\"\naggregate_threshold = 0.0",
                "ml.aggregate_threshold",
            ),
            (
                "model = \"/m\"\naggregate_threshold = 0.5",
                "ml.aggregate_model, which is not set",
            ),
            (
                "aggregate_model = \"/a\"\nthreshold = 0.5",
                "ml.model, which is not set",
            ),
            (
                "aggregate_model = \"/a\"\nmin_packets = 5",
                "ml.model, which is not set",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
