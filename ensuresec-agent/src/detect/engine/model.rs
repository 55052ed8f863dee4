//! Decisions on what the anomaly model flags, as on any detector's finding.

use ensuresec_common::decisions::Detector;

use super::Engine;
use crate::{
    detect::rules::Detection,
    ml::runner::{Finding, describe_top},
    store::decisions::key_addr,
};

impl Engine {
    pub(super) fn take_findings(&mut self) {
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
                storefront_id: 0,
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
}
