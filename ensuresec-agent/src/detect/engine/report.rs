//! How decisions are reported: the log line, and the time-to-mitigate
//! histogram by layer.

use ensuresec_common::decisions::{DecisionRecord, Detector};

use super::Engine;
use crate::{
    detect::{
        decide::{self, action_name},
        outcome::{Outcome, Place},
        plan::Plan,
    },
    store::decisions::DecisionTarget,
};

/// Where a detection came from, for the time-to-mitigate histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layer {
    Network,
    Model,
    App,
}

impl Layer {
    pub(super) fn of(d: Detector) -> Self {
        match d {
            Detector::Ml | Detector::MlAggregate => Layer::Model,
            d if d.is_app() => Layer::App,
            _ => Layer::Network,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Layer::Network => "network",
            Layer::Model => "model",
            Layer::App => "app",
        }
    }
}

impl Engine {
    /// Logs a decision and tells its followers; an enforced one is timed
    /// from `since_ns`.
    pub(super) fn log_decision(
        &self,
        target: &DecisionTarget,
        plan: &Plan,
        record: &DecisionRecord,
        layer: Layer,
        since_ns: u64,
        place: Place,
    ) {
        let seconds = record.decided_ns.saturating_sub(since_ns) as f64 / 1e9;
        if plan.enforced() {
            self.metrics
                .time_to_mitigate
                .with_label_values(&[layer.name()])
                .observe(seconds);
        }
        let (does, evidence) = (
            decide::describe_action(record),
            decide::describe_evidence(record),
        );
        tracing::warn!(
            target = %target,
            detector = decide::detector_name(record.detector),
            action = action_name(record.action),
            does = %does,
            evidence = %evidence,
            strikes = record.strikes,
            time_to_mitigate_s = seconds,
            "decision"
        );
        self.outcomes.publish(Outcome::Decided {
            target: *target,
            record: *record,
            does,
            evidence,
            place,
        });
    }
}
