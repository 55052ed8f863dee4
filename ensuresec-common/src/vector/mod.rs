//! Feature vectors the anomaly models score and `cargo xtask dataset` writes:
//! one per source (what one address sent in a step) and one per protected
//! destination (what an address received, from all sources at once, so that
//! floods of one-packet sources are scored too). Rates are per second and
//! log-compressed, shares are fractions of the packets; no address or port
//! appears, so a model cannot learn the lab's hosts.

pub mod destination;
mod source;

pub use source::*;

fn ln1p(x: f64) -> f32 {
    x.max(0.0).ln_1p() as f32
}

/// Packets over `packets` (at least 1), as a fraction.
fn share(n: u64, packets: u64) -> f32 {
    (n as f64 / packets.max(1) as f64) as f32
}

/// The first ten features of both vectors: packets and bytes per second
/// (log), mean size, and the shares of SYN, SYN-ACK, ACK/RST, UDP, ICMP,
/// fragments and unsolicited UDP.
fn traffic(c: &Counts, secs: f64) -> [f32; 10] {
    let packets = c.packets.max(1) as f64;
    [
        ln1p(c.packets as f64 / secs),
        ln1p(c.bytes as f64 / secs),
        (c.bytes as f64 / packets / 1500.0).min(10.0) as f32,
        share(c.syn, c.packets),
        share(c.synack, c.packets),
        share(c.ack_rst, c.packets),
        share(c.udp, c.packets),
        share(c.icmp, c.packets),
        share(c.frags, c.packets),
        share(c.udp_reflect, c.packets),
    ]
}
