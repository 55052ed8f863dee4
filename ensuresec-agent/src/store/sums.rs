//! Sums of per-CPU values as the agent reads them: counts add, first-seen
//! times take the earliest, distinct counts merge through their sketches.

use ensuresec_common::features::{Horizon, SourceStats, Window};

/// Per-CPU values of one key, summed as the agent sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summed<T> {
    pub total: T,
    /// The windows of the CPUs whose window started at or after `since_ns`.
    pub window: Window,
}

/// A source's per-CPU values summed as the agent sees them (`Summed`), with
/// its horizon, which the kernel keeps beside its slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSum {
    pub total: SourceStats,
    /// The windows of the CPUs whose window started at or after `since_ns`.
    pub window: Window,
    /// The horizons of the CPUs whose horizon has begun and is not over.
    pub horizon: Horizon,
}

/// The earlier of two first-seen times, where the sum so far is 0 until a
/// CPU's slot has been added.
pub(super) fn earliest(acc: u64, v: u64) -> u64 {
    if acc == 0 { v } else { acc.min(v.max(1)) }
}

/// ORs a CPU's sketch into the sum's; returns the bits the sum now has set.
fn merge_sketch(acc: &mut [u64], other: &[u64]) -> u32 {
    for (a, b) in acc.iter_mut().zip(other) {
        *a |= b;
    }
    acc.iter().map(|x| x.count_ones()).sum()
}

/// Adds one window to a sum of windows (another CPU's, another port's).
pub fn add_window(acc: &mut Window, w: &Window) {
    acc.start_ns = if acc.start_ns == 0 {
        w.start_ns
    } else {
        acc.start_ns.min(w.start_ns)
    };
    acc.packets += w.packets;
    acc.bytes = acc.bytes.wrapping_add(w.bytes);
    acc.syn += w.syn;
    acc.synack += w.synack;
    acc.ack_rst += w.ack_rst;
    acc.udp += w.udp;
    acc.icmp += w.icmp;
    acc.frags += w.frags;
    acc.udp_reflect += w.udp_reflect;
    acc.fresh += w.fresh;
    acc.reflect_bytes = acc.reflect_bytes.wrapping_add(w.reflect_bytes);
    // CPUs that elected the same port add their votes (a flow spread over
    // receive queues); otherwise the best-backed candidate stands.
    let ((port, votes), (mine, mine_votes)) = (w.top_port(), acc.top_port());
    if port == mine {
        acc.vote = (port as u32) << 16 | (votes as u32 + mine_votes as u32).min(0xffff);
    } else if votes > mine_votes {
        acc.vote = w.vote;
    }
    // Distinct counts merge through the sketches, not by adding.
    acc.distinct_ports = merge_sketch(&mut acc.port_sketch, &w.port_sketch);
    acc.distinct_dsts = merge_sketch(&mut acc.dst_sketch, &w.dst_sketch);
    acc.tripped |= w.tripped;
}

/// Adds one CPU's per-source totals to the sum of others.
pub(super) fn add_source(t: &mut SourceStats, v: &SourceStats) {
    t.first_seen_ns = earliest(t.first_seen_ns, v.first_seen_ns);
    t.last_seen_ns = t.last_seen_ns.max(v.last_seen_ns);
    t.packets += v.packets;
    t.bytes += v.bytes;
    t.syn += v.syn;
    t.synack += v.synack;
    t.ack_only += v.ack_only;
    t.rst += v.rst;
    t.fin += v.fin;
    t.udp += v.udp;
    t.icmp += v.icmp;
    t.frags += v.frags;
    t.ack_rst += v.ack_rst;
    t.udp_reflect += v.udp_reflect;
}

/// Adds one CPU's horizon to the sum of others (sketches merge, as windows').
pub(super) fn add_horizon(acc: &mut Horizon, h: &Horizon) {
    acc.start_ns = earliest(acc.start_ns, h.start_ns);
    acc.syn += h.syn;
    acc.completed += h.completed;
    acc.distinct_ports = merge_sketch(&mut acc.port_sketch, &h.port_sketch);
    acc.openings = merge_sketch(
        core::slice::from_mut(&mut acc.opening_sketch),
        &[h.opening_sketch],
    );
    acc.tripped |= h.tripped;
}

#[cfg(test)]
mod tests {
    use ensuresec_common::features::vote;

    use super::*;

    fn voted(port: u16, votes: u32) -> Window {
        let mut w = Window::default();
        for _ in 0..votes {
            w.vote = vote(w.vote, port);
        }
        w
    }

    #[test]
    fn cpus_that_elected_the_same_port_add_their_votes() {
        // One reflector's answers spread over three receive queues.
        let mut acc = Window::default();
        for _ in 0..3 {
            add_window(&mut acc, &voted(123, 40));
        }
        assert_eq!(acc.top_port(), (123, 120));
        // Another CPU's stronger candidate replaces a weaker one.
        add_window(&mut acc, &voted(53, 500));
        assert_eq!(acc.top_port(), (53, 500));
        add_window(&mut acc, &voted(9, 1));
        assert_eq!(acc.top_port(), (53, 500));
    }

    #[test]
    fn cpus_horizons_add_their_counts_and_merge_their_sketches() {
        let cpu = |start_ns, syn, ports: u64, openings: u64| Horizon {
            start_ns,
            syn,
            completed: 1,
            port_sketch: [ports, 0, 0, 0],
            opening_sketch: openings,
            ..Default::default()
        };
        let mut acc = Horizon::default();
        add_horizon(&mut acc, &cpu(50, 10, 0b0111, 0b11));
        add_horizon(&mut acc, &cpu(20, 5, 0b1100, 0b110));
        assert_eq!(acc.start_ns, 20, "the earliest");
        assert_eq!((acc.syn, acc.completed, acc.uncompleted()), (15, 2, 13));
        // The same port or opening seen by two CPUs counts once.
        assert_eq!((acc.distinct_ports, acc.openings), (4, 3));
    }
}
