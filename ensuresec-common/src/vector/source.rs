//! The feature vector of one source over one time step.

use super::{ln1p, share, traffic};

/// What one source sent during one step: exact deltas of the kernel's
/// per-source totals, and the distinct destination ports and addresses of its
/// current kernel window (a sketch: they saturate at 256 and 128).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
    pub syn: u64,
    pub synack: u64,
    pub ack_rst: u64,
    pub udp: u64,
    pub icmp: u64,
    pub frags: u64,
    pub udp_reflect: u64,
    pub distinct_ports: u32,
    pub distinct_dsts: u32,
}

/// Names of the vector's components, in order (the dataset's columns and the
/// model's inputs).
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
    "other_share",
    "log_distinct_ports",
    "log_distinct_dsts",
    "log_syn_per_port",
    "log_packets_per_dst",
];

pub const WIDTH: usize = FEATURES.len();

/// The vector of a step that lasted `secs` seconds (at least a millisecond).
pub fn of(w: &Counts, secs: f64) -> [f32; WIDTH] {
    let t = traffic(w, secs.max(0.001));
    let known = w.syn + w.synack + w.ack_rst + w.udp + w.icmp;
    let packets = w.packets.max(1) as f64;
    let mut v = [0f32; WIDTH];
    v[..t.len()].copy_from_slice(&t);
    v[t.len()..].copy_from_slice(&[
        share(w.packets.saturating_sub(known), w.packets),
        ln1p(w.distinct_ports as f64),
        ln1p(w.distinct_dsts as f64),
        ln1p(w.syn as f64 / w.distinct_ports.max(1) as f64),
        ln1p(packets / w.distinct_dsts.max(1) as f64),
    ]);
    v
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn shares_and_rates() {
        let w = Counts {
            packets: 100,
            bytes: 6000,
            syn: 50,
            udp: 25,
            distinct_ports: 4,
            distinct_dsts: 1,
            ..Counts::default()
        };
        let v = of(&w, 2.0);
        assert!((v[0] - (51f32).ln()).abs() < 1e-5, "50 packets/s");
        assert!((v[2] - 0.04).abs() < 1e-6, "60 bytes a packet");
        assert_eq!((v[3], v[6]), (0.5, 0.25));
        assert_eq!(v[10], 0.25, "the rest");
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn empty_windows_are_finite() {
        assert!(of(&Counts::default(), 0.0).iter().all(|x| x.is_finite()));
    }
}
