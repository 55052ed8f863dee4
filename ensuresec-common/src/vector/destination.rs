//! The feature vector of one protected destination address over its current
//! kernel window: what every source together sent it. A reflection or a
//! spoofed flood is thousands of sources with one packet each, which no
//! per-source vector holds; here they are one row with a high share of
//! first-time sources, many distinct sources and source ports, or one top
//! source port.

use super::{Counts, ln1p, share, traffic};
use crate::features::Window;

/// Names of the vector's components, in order (the destinations dataset's
/// columns and the aggregate model's inputs).
pub const FEATURES: [&str; 15] = [
    "log_pps",
    "log_bps",
    "mean_size",
    "syn_share",
    "synack_share",
    "ack_rst_share",
    "udp_share",
    "icmp_share",
    "frag_share",
    "reflect_share",
    "fresh_share",
    "log_distinct_sources",
    "log_distinct_src_ports",
    "top_port_share",
    "log_packets_per_source",
];

pub const WIDTH: usize = FEATURES.len();

/// The vector of a destination's window `w` (its CPUs' and ports' windows
/// merged) that has lasted `secs` so far. A window just begun holds a few
/// packets: its rate is taken over a tenth of a second at least (the
/// kernel's burst scale), so that one packet is not a flood.
pub fn of(w: &Window, secs: f64) -> [f32; WIDTH] {
    let c = Counts {
        packets: w.packets.into(),
        bytes: w.bytes.into(),
        syn: w.syn.into(),
        synack: w.synack.into(),
        ack_rst: w.ack_rst.into(),
        udp: w.udp.into(),
        icmp: w.icmp.into(),
        frags: w.frags.into(),
        udp_reflect: w.udp_reflect.into(),
        ..Counts::default()
    };
    let t = traffic(&c, secs.max(0.1));
    let (_, top_votes) = w.top_port();
    let of_packets = |n: u32| share(n.min(w.packets).into(), c.packets);
    let mut v = [0f32; WIDTH];
    v[..t.len()].copy_from_slice(&t);
    v[t.len()..].copy_from_slice(&[
        of_packets(w.fresh),
        ln1p(w.distinct_dsts as f64),
        ln1p(w.distinct_ports as f64),
        of_packets(top_votes.into()),
        ln1p(c.packets.max(1) as f64 / w.distinct_dsts.max(1) as f64),
    ]);
    v
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn one_packet_sources_show_as_fresh_and_many() {
        let w = Window {
            packets: 4000,
            bytes: 4000 * 300,
            udp: 4000,
            udp_reflect: 4000,
            fresh: 3900,
            distinct_dsts: 128,
            distinct_ports: 1,
            vote: 161 << 16 | 3000,
            ..Window::default()
        };
        let v = of(&w, 0.5);
        assert!((v[0] - (8001f32).ln()).abs() < 1e-3, "8,000 packets/s");
        assert_eq!(v[9], 1.0, "all of it unsolicited");
        assert!((v[10] - 0.975).abs() < 1e-6, "first-time sources");
        assert!((v[13] - 0.75).abs() < 1e-6, "one source port");
    }

    #[test]
    fn a_fresh_window_is_no_flood_and_empty_ones_are_finite() {
        let one = Window {
            packets: 1,
            bytes: 60,
            ..Window::default()
        };
        assert!(
            (of(&one, 0.001)[0] - (11f32).ln()).abs() < 1e-5,
            "over 0.1 s"
        );
        assert!(of(&Window::default(), 0.0).iter().all(|x| x.is_finite()));
    }
}
