//! Aggregate detections at a destination: floods many sources make, and
//! answers nobody asked for.

use ensuresec_common::{
    decisions::Detector,
    features::{UNSOLICITED_MIN, Window},
};

use super::{Detection, check, observed, scaled};
use crate::detect::settings::Detectors;

/// What an aggregate detection needs beyond the detectors' thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gates {
    /// Distinct sources (sketch bits of 128) for floods of what clients send:
    /// then no single source is to blame and per-source bans cannot help.
    pub min_sources: u32,
    /// Distinct sources for answers nobody asked for (reflected UDP,
    /// unsolicited SYN-ACKs): a handful of reflectors is already an attack.
    pub unsolicited_min_sources: u32,
    /// Rate of unsolicited answers that is an attack at this destination:
    /// far above its own normal (`baseline`), never below a floor.
    pub unsolicited_pps: f64,
    /// The destination is TCP to ports the host does not serve: SYNs there
    /// are as unwanted as unsolicited answers.
    pub unserved_tcp: bool,
    /// The destination is UDP: its fragments are parts of datagrams.
    pub udp: bool,
}

/// Whether the detector's evidence at this destination is traffic nobody
/// needs: then it is held to the destination's own normal.
fn unsolicited(d: Detector, gates: &Gates) -> bool {
    match d {
        Detector::Reflection | Detector::SynAckReflection => true,
        Detector::SynFlood => gates.unserved_tcp,
        _ => false,
    }
}

/// Whether most of a window's SYNs came from sources new to this host, as
/// they do when the sources are forged (one packet each).
fn from_new_sources(w: &Window) -> bool {
    w.fresh.saturating_mul(2) >= w.syn
}

/// Aggregate detections in a destination's window of `window_secs`.
/// Reflected UDP counts with the fragments it arrives in (a reflection keeps
/// the UDP and fragment flood detectors quiet), and at least
/// `UNSOLICITED_MIN` of either kind is needed. Unsolicited answers, and SYNs
/// from mostly new sources to ports the host does not serve (a forged SYN
/// flood at any rate), are held to the lower of the detector's aggregate
/// threshold and the destination's own (`Gates::unsolicited_pps`); the
/// evidence names the top source port and the packets of first-time sources.
pub fn dest_detections(
    w: &Window,
    d: &Detectors,
    window_secs: f64,
    gates: &Gates,
) -> Vec<Detection> {
    const ORDER: [Detector; 7] = [
        Detector::SynFlood,
        Detector::Reflection,
        Detector::UdpFlood,
        Detector::IcmpFlood,
        Detector::AckRstFlood,
        Detector::FragmentFlood,
        Detector::SynAckReflection,
    ];
    let mut out = Vec::new();
    for detector in ORDER {
        let (sources, mut threshold) = if unsolicited(detector, gates) {
            let own = gates.unsolicited_pps.ceil().max(1.0) as u32;
            let global = d.get(detector).aggregate;
            // Answers come from a few reflectors; forged SYNs from many.
            let sources = if detector == Detector::SynFlood {
                gates.min_sources
            } else {
                gates.unsolicited_min_sources
            };
            (sources, if global == 0 { 0 } else { global.min(own) })
        } else {
            (gates.min_sources, d.get(detector).aggregate)
        };
        if w.distinct_dsts < sources
            || (detector == Detector::SynFlood && gates.unserved_tcp && !from_new_sources(w))
        {
            threshold = 0;
        }
        if matches!(detector, Detector::UdpFlood | Detector::FragmentFlood)
            && out
                .iter()
                .any(|x: &Detection| x.detector == Detector::Reflection)
        {
            continue;
        }
        let count = match detector {
            // Large answers arrive fragmented; later fragments carry no ports.
            Detector::Reflection => w.udp_reflect + w.frags * gates.udp as u32,
            _ => observed(w, detector).0,
        };
        if unsolicited(detector, gates) && threshold > 0 {
            // However short the window, a few stray answers are no attack.
            let at_least = scaled(threshold, window_secs).max(UNSOLICITED_MIN as u64);
            check(&mut out, detector, count, at_least as u32, None);
        } else {
            check(&mut out, detector, count, threshold, Some(window_secs));
        }
    }
    let (top_port, _) = w.top_port();
    for x in &mut out {
        x.extra = [top_port as u64, w.fresh as u64];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::rules::tests::{names, w};

    const GATES: Gates = Gates {
        min_sources: 16,
        unsolicited_min_sources: 4,
        unsolicited_pps: 20.0,
        unserved_tcp: false,
        udp: true,
    };

    #[test]
    fn aggregate_needs_many_sources() {
        let d = Detectors::default();
        let mut x = w();
        x.syn = 9000;
        x.distinct_dsts = 3;
        assert!(
            dest_detections(&x, &d, 1.0, &GATES).is_empty(),
            "one source: ban it instead"
        );
        x.distinct_dsts = 90;
        assert_eq!(names(&dest_detections(&x, &d, 1.0, &GATES)), ["syn_flood"]);
    }

    #[test]
    fn unsolicited_answers_from_a_few_reflectors_are_an_attack_at_any_scale() {
        let d = Detectors::default();
        let mut x = w();
        x.udp = 40;
        x.udp_reflect = 40;
        x.distinct_dsts = 3;
        assert!(
            dest_detections(&x, &d, 1.0, &GATES).is_empty(),
            "three reflectors"
        );
        x.distinct_dsts = 9;
        x.vote = 53 << 16 | 30;
        x.fresh = 9;
        let got = dest_detections(&x, &d, 1.0, &GATES);
        assert_eq!(names(&got), ["reflection"], "not also a UDP flood");
        assert_eq!(
            (got[0].threshold, got[0].extra),
            (UNSOLICITED_MIN as u64, [53, 9])
        );
        // A tenth of a second needs a tenth, but never fewer than a floor;
        // ten seconds ten times as much.
        assert_eq!(
            dest_detections(&x, &d, 0.1, &GATES)[0].threshold,
            UNSOLICITED_MIN as u64
        );
        x.udp_reflect = UNSOLICITED_MIN - 1;
        assert!(dest_detections(&x, &d, 0.1, &GATES).is_empty());
        // Large answers: the later fragments count with them.
        x.frags = 20;
        assert_eq!(names(&dest_detections(&x, &d, 1.0, &GATES)), ["reflection"]);
        x.frags = 0;
        x.udp_reflect = 40;
        x.distinct_dsts = 60;
        assert_eq!(
            names(&dest_detections(&x, &d, 10.0, &GATES)),
            Vec::<&str>::new()
        );
        x.distinct_dsts = 9;
        assert!(dest_detections(&x, &d, 10.0, &GATES).is_empty());
        // A destination whose normal is high is held to its own threshold,
        // never above the global one.
        let busy = Gates {
            unsolicited_pps: 1e9,
            ..GATES
        };
        assert!(dest_detections(&x, &d, 1.0, &busy).is_empty());
        x.udp_reflect = 6000;
        assert_eq!(dest_detections(&x, &d, 1.0, &busy)[0].threshold, 5000);
    }

    #[test]
    fn forged_syns_to_ports_nobody_serves_are_a_flood_at_a_low_rate() {
        let d = Detectors::default();
        let unserved = Gates {
            unserved_tcp: true,
            ..GATES
        };
        // 300 SYNs a second from as many new sources to an unserved port.
        let mut x = w();
        x.packets = 300;
        x.syn = 300;
        x.fresh = 300;
        x.distinct_dsts = 100;
        assert_eq!(
            names(&dest_detections(&x, &d, 1.0, &unserved)),
            ["syn_flood"]
        );
        // The same at a served port is held to the aggregate threshold.
        assert!(dest_detections(&x, &d, 1.0, &GATES).is_empty());
        // Sources that keep coming back (a client retrying) are no forgery.
        x.fresh = 40;
        assert!(dest_detections(&x, &d, 1.0, &unserved).is_empty());
        x.fresh = 300;
        // Too few sources: a scanner's or a client's, handled per source.
        x.distinct_dsts = 8;
        assert!(dest_detections(&x, &d, 1.0, &unserved).is_empty());
        // Background scans: a few a second.
        x.distinct_dsts = 100;
        x.syn = 8;
        x.fresh = 8;
        assert!(dest_detections(&x, &d, 1.0, &unserved).is_empty());
    }

    #[test]
    fn a_page_load_is_no_synack_reflection() {
        // A browser opening two dozen connections to fifteen hosts at once:
        // as many SYN-ACKs within a tenth of a second.
        let mut x = w();
        x.packets = 200;
        x.synack = 24;
        x.distinct_dsts = 15;
        for secs in [0.1, 1.0, 10.0] {
            assert!(dest_detections(&x, &Detectors::default(), secs, &GATES).is_empty());
        }
        x.synack = 400;
        assert_eq!(
            names(&dest_detections(&x, &Detectors::default(), 0.1, &GATES)),
            ["synack_reflection"]
        );
    }
}
