//! Detections over a source's horizon (minutes): a flood or a scan too slow
//! for any window adds up here. Counts, not rates: the horizon is one span.

use ensuresec_common::{decisions::Detector, features::Horizon};

use super::{Detection, check};
use crate::detect::settings::Detectors;

/// The first horizon detection of a source, most specific first: a slow
/// port scan is also SYNs that never complete, and a service scan is a
/// scan of one port.
pub fn horizon_detection(h: &Horizon, d: &Detectors) -> Option<Detection> {
    let mut out = Vec::new();
    let threshold = |detector| d.get(detector).per_source;
    check(
        &mut out,
        Detector::SlowScan,
        h.distinct_ports,
        threshold(Detector::SlowScan),
        None,
    );
    check(
        &mut out,
        Detector::ServiceScan,
        h.openings,
        threshold(Detector::ServiceScan),
        None,
    );
    // A client completes its handshakes; a flood, a half-open scan or a
    // spoofer does not, whatever else the address does.
    check(
        &mut out,
        Detector::SlowSyn,
        h.uncompleted(),
        threshold(Detector::SlowSyn),
        None,
    );
    out.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(h: &Horizon) -> Option<&'static str> {
        horizon_detection(h, &Detectors::default()).map(|d| d.detector.name())
    }

    #[test]
    fn syns_that_never_complete_add_up() {
        let mut h = Horizon {
            syn: 29,
            ..Default::default()
        };
        assert_eq!(names(&h), None);
        h.syn = 30;
        assert_eq!(names(&h), Some("slow_syn"));
        // The same SYNs with their handshakes completed: a busy client.
        h.completed = 30;
        assert_eq!(names(&h), None);
        // Browsing from the address hides no SYN that never completes.
        h.syn = 100;
        assert_eq!(names(&h), Some("slow_syn"));
    }

    #[test]
    fn scans_are_named_before_their_syns() {
        let h = Horizon {
            syn: 40,
            distinct_ports: 20,
            ..Default::default()
        };
        let d = horizon_detection(&h, &Detectors::default()).expect("a scan");
        assert_eq!(
            (d.detector, d.observed, d.threshold),
            (Detector::SlowScan, 20, 20)
        );
        let h = Horizon {
            syn: 14,
            completed: 14,
            openings: 12,
            ..Default::default()
        };
        assert_eq!(names(&h), Some("service_scan"));
    }

    #[test]
    fn a_zero_threshold_disables_a_horizon_detector() {
        let mut d = Detectors::default();
        d.get_mut(Detector::SlowSyn).per_source = 0;
        let h = Horizon {
            syn: 1_000,
            ..Default::default()
        };
        assert!(horizon_detection(&h, &d).is_none());
    }
}
