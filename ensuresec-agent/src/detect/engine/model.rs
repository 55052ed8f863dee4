//! Decisions on what the anomaly models flag, as on any detector's finding:
//! a source the per-source model flagged, or a destination the aggregate
//! model flagged (a flood of many sources, each of them unremarkable).

use ensuresec_common::{
    decisions::Detector,
    features::{DestKey, UNSOLICITED_MIN, Window},
};

use super::Engine;
use crate::{
    detect::{detector::Action, plan::plan, rules::Detection},
    error::Result,
    ml::{
        evidence::describe_top,
        model::Subject,
        runner::{Finding, Flagged},
    },
    store::decisions::key_addr,
};

/// Whether answers nobody asked for (unsolicited UDP with its fragments,
/// SYN-ACKs, SYNs to ports nobody serves: `DestKey::unwanted`) are most of a
/// port's window, and enough to be no stray: the only traffic a model's
/// finding may filter there, since shoppers never send it.
fn mostly_unwanted(key: &DestKey, w: &Window) -> bool {
    let unwanted = key.unwanted(w);
    unwanted >= UNSOLICITED_MIN && unwanted.saturating_mul(2) >= w.packets
}

impl Engine {
    pub(super) fn take_findings(&mut self) {
        let Some(rx) = &self.findings else {
            return;
        };
        let found: Vec<Finding> = rx.try_iter().collect();
        for f in found {
            let (subject, protected) = match &f.flagged {
                Flagged::Source(_) => (Subject::Source, None),
                Flagged::Destination { hot, .. } => (Subject::Destination, Some(hot.addr)),
            };
            // The `[ml]` decisions are the same in every block; a destination
            // is judged by the block that protects it.
            let detectors = match protected {
                Some(addr) => self.settings.detectors_for(key_addr(&addr)).copied(),
                None => self.settings.protect.first().map(|(_, d)| *d),
            };
            let Some(detectors) = detectors else {
                continue;
            };
            let [observed, threshold, top, shares] =
                crate::ml::evidence::pack(f.score, f.threshold, &f.top);
            let detection = Detection {
                detector: subject.detector(),
                observed,
                threshold,
                extra: [top, shares],
                storefront_id: 0,
            };
            let result = match f.flagged {
                Flagged::Source(source) => {
                    tracing::debug!(
                        source = %key_addr(&source),
                        score = f.score,
                        threshold = f.threshold,
                        packets = f.packets,
                        top = %describe_top(subject, &f.top),
                        "anomaly model flagged a source"
                    );
                    self.decide_source(&source, &detection, &detectors, f.first_seen_ns, None)
                }
                Flagged::Destination { hot, ports } => {
                    tracing::debug!(
                        destination = %key_addr(&hot.addr),
                        score = f.score,
                        threshold = f.threshold,
                        packets = f.packets,
                        top = %describe_top(subject, &f.top),
                        "aggregate anomaly model flagged a destination"
                    );
                    self.decide_flagged_destination(&hot, &ports, &detection, &detectors)
                }
            };
            if let Err(e) = result {
                self.failed(&e, "deciding on an anomaly");
            }
        }
    }

    /// A destination the aggregate model flagged: an alert on its busiest
    /// port, or with `aggregate_action = "budget"` a filter of the answers
    /// nobody asked for on each port where they are most of the window. A
    /// model names no rate to budget other traffic at, and shoppers must
    /// stay served.
    fn decide_flagged_destination(
        &mut self,
        hot: &DestKey,
        ports: &[(DestKey, Window)],
        detection: &Detection,
        detectors: &crate::detect::settings::Detectors,
    ) -> Result<()> {
        let config = detectors.get(Detector::MlAggregate);
        let dry_run = self.settings.dry_run_for(detectors, Detector::MlAggregate);
        let plan_of = |action| {
            plan(
                &self.settings,
                Detector::MlAggregate,
                config,
                action,
                dry_run,
                0,
            )
        };
        let (budget, alert) = (plan_of(Action::Budget), plan_of(Action::Alert));
        let mut filtered = false;
        if config.aggregate_action == Action::Budget {
            for (key, w) in ports.iter().filter(|(k, w)| mostly_unwanted(k, w)) {
                let mut budget = budget;
                if key.is_unserved_tcp() {
                    budget = budget.unserved_only();
                }
                self.decide_destination(key, detection, budget, w.start_ns)?;
                filtered = true;
            }
        }
        if !filtered {
            let began_ns = ports
                .iter()
                .find(|(k, _)| k == hot)
                .map_or(0, |(_, w)| w.start_ns);
            self.decide_destination(hot, detection, alert, began_ns)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, proto: u8) -> DestKey {
        DestKey::new(ensuresec_common::features::AddrKey::ZERO, port, proto)
    }

    #[test]
    fn only_answers_nobody_asked_for_are_filtered() {
        let reflected = Window {
            packets: 100,
            udp: 100,
            udp_reflect: 60,
            ..Window::default()
        };
        assert!(mostly_unwanted(&key(0, 17), &reflected));
        let syn_flood = Window {
            packets: 100,
            syn: 90,
            synack: 5,
            ..Window::default()
        };
        assert!(!mostly_unwanted(&key(443, 6), &syn_flood));
        assert!(
            mostly_unwanted(&key(0, 6), &syn_flood),
            "SYNs to no service"
        );
        let stray = Window {
            packets: 3,
            udp_reflect: 3,
            ..Window::default()
        };
        assert!(!mostly_unwanted(&key(0, 17), &stray), "a few stray answers");
        assert!(!mostly_unwanted(&key(0, 17), &Window::default()));
    }
}
