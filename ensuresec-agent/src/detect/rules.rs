//! The detectors: pure functions from a window of counters to detections.
//! A rate threshold is reached when one window holds that many events per
//! second of window; counts are never extrapolated from a short burst, so a
//! page load's burst of packets is not mistaken for a flood.

use ensuresec_common::{decisions::Detector, features::Window};

use super::settings::Detectors;

/// What tripped a detector: the observed count and the threshold, both for
/// the whole window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    pub detector: Detector,
    pub observed: u64,
    pub threshold: u64,
    /// Detector-specific evidence (the model's top features).
    pub extra: [u64; 2],
}

fn scaled(rate: u32, window_secs: f64) -> u64 {
    ((rate as f64) * window_secs).ceil().max(1.0) as u64
}

fn check(
    out: &mut Vec<Detection>,
    detector: Detector,
    observed: u32,
    threshold: u32,
    scale: Option<f64>,
) {
    if threshold == 0 {
        return;
    }
    let threshold = match scale {
        Some(window_secs) => scaled(threshold, window_secs),
        None => threshold as u64,
    };
    if observed as u64 >= threshold {
        out.push(Detection {
            detector,
            observed: observed as u64,
            threshold,
            extra: [0; 2],
        });
    }
}

/// Per-source detections in a source's window.
pub fn source_detections(w: &Window, d: &Detectors, window_secs: f64) -> Vec<Detection> {
    let mut out = Vec::new();
    let rate = Some(window_secs);
    // Most specific first: the first detection decides, and a fast port scan
    // is also many SYNs, reflected UDP is also UDP.
    check(
        &mut out,
        Detector::PortScan,
        w.distinct_ports,
        d.port_scan.per_source,
        None,
    );
    check(
        &mut out,
        Detector::HostSweep,
        w.distinct_dsts,
        d.host_sweep.per_source,
        None,
    );
    check(
        &mut out,
        Detector::Reflection,
        w.udp_reflect,
        d.reflection.per_source,
        rate,
    );
    check(
        &mut out,
        Detector::SynAckReflection,
        w.synack,
        d.synack_reflection.per_source,
        rate,
    );
    check(
        &mut out,
        Detector::SynFlood,
        w.syn,
        d.syn_flood.per_source,
        rate,
    );
    if !out.iter().any(|x| x.detector == Detector::Reflection) {
        check(
            &mut out,
            Detector::UdpFlood,
            w.udp,
            d.udp_flood.per_source,
            rate,
        );
    }
    check(
        &mut out,
        Detector::IcmpFlood,
        w.icmp,
        d.icmp_flood.per_source,
        rate,
    );
    check(
        &mut out,
        Detector::AckRstFlood,
        w.ack_rst,
        d.ack_rst_flood.per_source,
        rate,
    );
    check(
        &mut out,
        Detector::FragmentFlood,
        w.frags,
        d.fragment_flood.per_source,
        rate,
    );
    out
}

/// Aggregate detections in a destination's window. They only count when the
/// traffic comes from at least `min_sources` distinct sources (sketch bits):
/// then no single source is to blame and per-source bans cannot help.
pub fn dest_detections(
    w: &Window,
    d: &Detectors,
    window_secs: f64,
    min_sources: u32,
) -> Vec<Detection> {
    let mut out = Vec::new();
    if w.distinct_dsts < min_sources {
        return out;
    }
    let rate = Some(window_secs);
    check(
        &mut out,
        Detector::SynFlood,
        w.syn,
        d.syn_flood.aggregate,
        rate,
    );
    check(
        &mut out,
        Detector::Reflection,
        w.udp_reflect,
        d.reflection.aggregate,
        rate,
    );
    if !out.iter().any(|x| x.detector == Detector::Reflection) {
        check(
            &mut out,
            Detector::UdpFlood,
            w.udp,
            d.udp_flood.aggregate,
            rate,
        );
    }
    check(
        &mut out,
        Detector::IcmpFlood,
        w.icmp,
        d.icmp_flood.aggregate,
        rate,
    );
    check(
        &mut out,
        Detector::AckRstFlood,
        w.ack_rst,
        d.ack_rst_flood.aggregate,
        rate,
    );
    check(
        &mut out,
        Detector::FragmentFlood,
        w.frags,
        d.fragment_flood.aggregate,
        rate,
    );
    check(
        &mut out,
        Detector::SynAckReflection,
        w.synack,
        d.synack_reflection.aggregate,
        rate,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Window {
        Window::default()
    }

    fn names(v: &[Detection]) -> Vec<&'static str> {
        v.iter().map(|d| d.detector.name()).collect()
    }

    #[test]
    fn quiet_traffic_trips_nothing() {
        let mut x = w();
        x.packets = 80;
        x.syn = 8;
        x.ack_rst = 60;
        x.udp = 2;
        x.distinct_ports = 2;
        x.distinct_dsts = 1;
        assert!(source_detections(&x, &Detectors::default(), 1.0).is_empty());
    }

    #[test]
    fn floods_trip_their_detector_with_evidence() {
        let d = Detectors::default();
        let mut x = w();
        x.syn = 250;
        let got = source_detections(&x, &d, 1.0);
        assert_eq!(
            got,
            [Detection {
                detector: Detector::SynFlood,
                observed: 250,
                threshold: 200,
                extra: [0; 2],
            }]
        );
        // A half-second window needs half the count.
        x.syn = 120;
        assert_eq!(names(&source_detections(&x, &d, 0.5)), ["syn_flood"]);
        assert!(source_detections(&x, &d, 1.0).is_empty());
    }

    #[test]
    fn reflection_is_reported_instead_of_udp_flood() {
        let mut x = w();
        x.udp = 9000;
        x.udp_reflect = 9000;
        assert_eq!(
            names(&source_detections(&x, &Detectors::default(), 1.0)),
            ["reflection"]
        );
        x.udp_reflect = 0;
        assert_eq!(
            names(&source_detections(&x, &Detectors::default(), 1.0)),
            ["udp_flood"]
        );
    }

    #[test]
    fn scans_count_distinct_ports_and_hosts_per_window() {
        let mut x = w();
        x.distinct_ports = 25;
        x.distinct_dsts = 7;
        assert_eq!(
            names(&source_detections(&x, &Detectors::default(), 10.0)),
            ["port_scan", "host_sweep"],
            "not scaled by the window"
        );
        // A fast SYN scan is also a SYN flood; the scan is named first.
        x.syn = 300;
        assert_eq!(
            names(&source_detections(&x, &Detectors::default(), 1.0))[0],
            "port_scan"
        );
    }

    #[test]
    fn aggregate_needs_many_sources() {
        let d = Detectors::default();
        let mut x = w();
        x.syn = 9000;
        x.distinct_dsts = 3;
        assert!(
            dest_detections(&x, &d, 1.0, 16).is_empty(),
            "one source: ban it instead"
        );
        x.distinct_dsts = 90;
        assert_eq!(names(&dest_detections(&x, &d, 1.0, 16)), ["syn_flood"]);
    }

    #[test]
    fn a_zero_threshold_disables_a_check() {
        let mut d = Detectors::default();
        d.syn_flood.per_source = 0;
        let mut x = w();
        x.syn = 1_000_000;
        assert!(source_detections(&x, &d, 1.0).is_empty());
    }
}
