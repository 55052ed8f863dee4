//! The detectors: pure functions from a window of counters to detections.
//! A rate threshold is reached when one window holds that many events per
//! second of window, or, for a source's packet floods, when the rate so far
//! is well above it over at least a twentieth of the window (`early`): a page
//! load's burst of packets is not mistaken for a flood.

use ensuresec_common::{decisions::Detector, features::Window};

use super::settings::Detectors;

mod destination;
mod early;
mod horizon;

pub use destination::{Gates, dest_detections};
pub use early::Span;
pub use horizon::horizon_detection;

/// What tripped a detector: the observed count and the threshold, both for
/// the whole window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    pub detector: Detector,
    pub observed: u64,
    pub threshold: u64,
    /// Detector-specific evidence (the model's top features).
    pub extra: [u64; 2],
    /// The storefront's name in `ES_REASONS` (application detections); 0 for none.
    pub storefront_id: u32,
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
            storefront_id: 0,
        });
    }
}

/// The window counter a detector compares with its threshold, and whether
/// that threshold is a rate (scaled by the window) or a plain count.
fn observed(w: &Window, detector: Detector) -> (u32, bool) {
    match detector {
        Detector::PortScan => (w.distinct_ports, false),
        Detector::HostSweep => (w.distinct_dsts, false),
        Detector::Reflection => (w.udp_reflect, true),
        Detector::SynAckReflection => (w.synack, true),
        Detector::SynFlood => (w.syn, true),
        Detector::UdpFlood => (w.udp, true),
        Detector::IcmpFlood => (w.icmp, true),
        Detector::AckRstFlood => (w.ack_rst, true),
        Detector::FragmentFlood => (w.frags, true),
        // Measured elsewhere: sockets, the model's scores, the application.
        Detector::HalfOpen
        | Detector::Ml
        | Detector::MlAggregate
        | Detector::HttpFlood
        | Detector::CredentialStuffing
        | Detector::AccountTakeover
        | Detector::CardTesting
        | Detector::Scanner
        | Detector::AttackTool
        | Detector::SlowSyn
        | Detector::SlowScan
        | Detector::ServiceScan
        | Detector::Failsafe => (0, false),
    }
}

/// Runs `order`'s detectors on a source's window, `span` into it.
/// Reflected UDP is also UDP: a reflection detection keeps the UDP flood
/// detector quiet.
fn detections(w: &Window, d: &Detectors, order: &[Detector], span: Span) -> Vec<Detection> {
    let mut out = Vec::new();
    for &detector in order {
        if detector == Detector::UdpFlood
            && out
                .iter()
                .any(|x: &Detection| x.detector == Detector::Reflection)
        {
            continue;
        }
        let (count, is_rate) = observed(w, detector);
        let threshold = d.get(detector).per_source;
        let threshold = match (is_rate, threshold) {
            (true, rate @ 1..) => early::needed(detector, rate, span).min(u32::MAX as u64) as u32,
            _ => threshold,
        };
        check(&mut out, detector, count, threshold, None);
    }
    out
}

/// Whether a source's unsolicited UDP comes from one port, as a reflector's
/// answers do (from the abused service's port); a flooder that rotates its
/// source ports at a closed port sends requests, a UDP flood.
fn answers_from_one_port(w: &Window) -> bool {
    // Port 0 is what packets without ports (later fragments) vote for.
    let (port, votes) = w.top_port();
    port != 0 && votes as u32 >= w.udp_reflect.min(u16::MAX as u32) / 2
}

/// Per-source detections in a source's window, `span` into it.
pub fn source_detections(w: &Window, d: &Detectors, span: Span) -> Vec<Detection> {
    let mut w = *w;
    if !answers_from_one_port(&w) {
        w.udp_reflect = 0;
    }
    let w = &w;
    // Most specific first: the first detection decides, and a fast port scan
    // is also many SYNs, reflected UDP is also UDP, and so are the first
    // fragments of a flood of fragmented UDP.
    const ORDER: [Detector; 9] = [
        Detector::PortScan,
        Detector::HostSweep,
        Detector::Reflection,
        Detector::SynAckReflection,
        Detector::SynFlood,
        Detector::FragmentFlood,
        Detector::UdpFlood,
        Detector::IcmpFlood,
        Detector::AckRstFlood,
    ];
    detections(w, d, &ORDER, span)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn w() -> Window {
        Window::default()
    }

    pub(super) fn names(v: &[Detection]) -> Vec<&'static str> {
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
        assert!(source_detections(&x, &Detectors::default(), Span::whole(1.0)).is_empty());
    }

    #[test]
    fn floods_trip_their_detector_with_evidence() {
        let d = Detectors::default();
        let mut x = w();
        x.syn = 250;
        let got = source_detections(&x, &d, Span::whole(1.0));
        assert_eq!(
            got,
            [Detection {
                detector: Detector::SynFlood,
                observed: 250,
                threshold: 200,
                extra: [0; 2],
                storefront_id: 0,
            }]
        );
        // A half-second window needs half the count.
        x.syn = 120;
        assert_eq!(
            names(&source_detections(&x, &d, Span::whole(0.5))),
            ["syn_flood"]
        );
        assert!(source_detections(&x, &d, Span::whole(1.0)).is_empty());
    }

    #[test]
    fn reflection_is_reported_instead_of_udp_flood() {
        let mut x = w();
        x.udp = 9000;
        x.udp_reflect = 9000;
        x.vote = 123 << 16 | 9000;
        assert_eq!(
            names(&source_detections(
                &x,
                &Detectors::default(),
                Span::whole(1.0)
            )),
            ["reflection"]
        );
        // The same answers from ever-changing source ports are requests.
        x.vote = 40_001 << 16 | 1;
        assert_eq!(
            names(&source_detections(
                &x,
                &Detectors::default(),
                Span::whole(1.0)
            )),
            ["udp_flood"]
        );
        x.vote = 123 << 16 | 9000;
        x.udp_reflect = 0;
        assert_eq!(
            names(&source_detections(
                &x,
                &Detectors::default(),
                Span::whole(1.0)
            )),
            ["udp_flood"]
        );
    }

    #[test]
    fn scans_count_distinct_ports_and_hosts_per_window() {
        let mut x = w();
        x.distinct_ports = 25;
        x.distinct_dsts = 7;
        assert_eq!(
            names(&source_detections(
                &x,
                &Detectors::default(),
                Span::whole(10.0)
            )),
            ["port_scan", "host_sweep"],
            "not scaled by the window"
        );
        // A fast SYN scan is also a SYN flood; the scan is named first.
        x.syn = 300;
        assert_eq!(
            names(&source_detections(
                &x,
                &Detectors::default(),
                Span::whole(1.0)
            ))[0],
            "port_scan"
        );
    }

    #[test]
    fn a_young_window_decides_a_packet_flood_but_not_a_pool_of_connections() {
        let d = Detectors::default();
        let young = Span {
            length_secs: 1.0,
            elapsed_secs: 0.04,
        };
        let mut x = w();
        x.udp = 800;
        let got = source_detections(&x, &d, young);
        assert_eq!(names(&got), ["udp_flood"]);
        assert_eq!(got[0].threshold, 313);
        // The same count at the end of the window is a tenth of the threshold.
        assert!(source_detections(&x, &d, Span::whole(1.0)).is_empty());
        // A load tester opening 51 connections at once.
        let mut x = w();
        x.syn = 51;
        assert!(source_detections(&x, &d, young).is_empty());
        x.syn = 120;
        assert_eq!(names(&source_detections(&x, &d, young)), ["syn_flood"]);
    }

    #[test]
    fn a_zero_threshold_disables_a_check() {
        let mut d = Detectors::default();
        d.get_mut(Detector::SynFlood).per_source = 0;
        let mut x = w();
        x.syn = 1_000_000;
        assert!(source_detections(&x, &d, Span::whole(1.0)).is_empty());
    }
}
