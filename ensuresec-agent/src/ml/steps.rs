//! Time steps of per-source traffic: what each source sent since the previous
//! step, read from the kernel's per-source table. The agent scores these with
//! the anomaly model, and `cargo xtask dataset` records them with the same
//! code, so the model is trained on exactly what it later sees.

use std::collections::HashMap;

use ensuresec_common::{
    features::{AddrKey, SourceSlot, SourceStats},
    vector::Counts,
};

use crate::{error::Result, store::Store};

/// One source over one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceStep {
    pub source: AddrKey,
    pub counts: Counts,
    /// The step's length.
    pub secs: f64,
    /// When the kernel first saw the source (monotonic ns).
    pub first_seen_ns: u64,
}

/// A source's totals summed over CPUs, plus its current windows' sketches.
#[derive(Clone, Copy, Debug, Default)]
struct Summed {
    first_seen_ns: u64,
    totals: [u64; 9],
    port_sketch: [u64; 4],
    dst_sketch: [u64; 2],
}

fn totals(s: &SourceStats) -> [u64; 9] {
    [
        s.packets,
        s.bytes,
        s.syn,
        s.synack,
        s.ack_rst,
        s.udp,
        s.icmp,
        s.frags,
        s.udp_reflect,
    ]
}

impl Summed {
    fn add(&mut self, s: &SourceStats, windows_since_ns: u64) {
        self.first_seen_ns = match self.first_seen_ns {
            0 => s.first_seen_ns,
            t => t.min(s.first_seen_ns),
        };
        for (acc, v) in self.totals.iter_mut().zip(totals(s)) {
            *acc += v;
        }
        if s.window.packets > 0 && s.window.start_ns >= windows_since_ns {
            for (a, b) in self.port_sketch.iter_mut().zip(s.window.port_sketch) {
                *a |= b;
            }
            for (a, b) in self.dst_sketch.iter_mut().zip(s.window.dst_sketch) {
                *a |= b;
            }
        }
    }

    fn counts(&self, previous: &[u64; 9]) -> Counts {
        let d: Vec<u64> = self
            .totals
            .iter()
            .zip(previous)
            .map(|(now, before)| now - before)
            .collect();
        Counts {
            packets: d[0],
            bytes: d[1],
            syn: d[2],
            synack: d[3],
            ack_rst: d[4],
            udp: d[5],
            icmp: d[6],
            frags: d[7],
            udp_reflect: d[8],
            distinct_ports: self.port_sketch.iter().map(|w| w.count_ones()).sum(),
            distinct_dsts: self.dst_sketch.iter().map(|w| w.count_ones()).sum(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Baseline {
    totals: [u64; 9],
}

/// Turns successive reads of the per-source table into steps. It remembers
/// each source's totals at the previous step (72 bytes a source, bounded by
/// the kernel table's size: a source the table dropped is forgotten).
#[derive(Default)]
pub struct Stepper {
    baselines: HashMap<AddrKey, Baseline>,
    last_ns: Option<u64>,
}

impl Stepper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sources tracked between steps.
    pub fn tracked(&self) -> usize {
        self.baselines.len()
    }

    /// Reads the table at `now_ns` and returns the sources that sent anything
    /// since the previous call. The first call only sets the baselines.
    pub fn step(&mut self, store: &Store, now_ns: u64, window_ns: u64) -> Result<Vec<SourceStep>> {
        let since = self.last_ns.unwrap_or(now_ns).saturating_sub(window_ns);
        let mut summed: HashMap<AddrKey, Summed> = HashMap::with_capacity(self.baselines.len());
        store.for_each_source(|slot: &SourceSlot| {
            summed.entry(slot.key).or_default().add(&slot.stats, since);
        })?;
        Ok(self.advance(summed, now_ns))
    }

    fn advance(&mut self, summed: HashMap<AddrKey, Summed>, now_ns: u64) -> Vec<SourceStep> {
        let last = self.last_ns.replace(now_ns);
        let mut out = Vec::new();
        let mut baselines = HashMap::with_capacity(summed.len());
        for (source, s) in summed {
            let previous = match (last, self.baselines.get(&source)) {
                (None, _) => None,
                // A source the kernel re-created (evicted, then back) or lost
                // on one CPU: its totals went down, so start over.
                (Some(_), Some(b)) if b.totals.iter().zip(&s.totals).any(|(b, n)| n < b) => None,
                (Some(_), Some(b)) => Some(b.totals),
                // New since the last step: everything it sent is in the step.
                (Some(last), None) if s.first_seen_ns >= last => Some([0; 9]),
                // Seen before we were watching: its totals span unknown time.
                (Some(_), None) => None,
            };
            if let (Some(previous), Some(last)) = (previous, last) {
                let counts = s.counts(&previous);
                if counts.packets > 0 {
                    out.push(SourceStep {
                        source,
                        counts,
                        secs: now_ns.saturating_sub(last) as f64 / 1e9,
                        first_seen_ns: s.first_seen_ns,
                    });
                }
            }
            baselines.insert(source, Baseline { totals: s.totals });
        }
        self.baselines = baselines;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: u8) -> AddrKey {
        let mut k = [0u8; 16];
        k[15] = n;
        k
    }

    fn stats(first_seen_ns: u64, packets: u64, syn: u64) -> SourceStats {
        SourceStats {
            first_seen_ns,
            packets,
            bytes: packets * 60,
            syn,
            ..SourceStats::default()
        }
    }

    fn read(rows: &[(u8, SourceStats)]) -> HashMap<AddrKey, Summed> {
        let mut m: HashMap<AddrKey, Summed> = HashMap::new();
        for (n, s) in rows {
            m.entry(source(*n)).or_default().add(s, 0);
        }
        m
    }

    #[test]
    fn the_first_read_only_sets_baselines() {
        let mut st = Stepper::new();
        assert!(
            st.advance(read(&[(1, stats(5, 100, 10))]), 1_000)
                .is_empty()
        );
        assert_eq!(st.tracked(), 1);
    }

    #[test]
    fn steps_are_deltas_summed_over_cpus() {
        let mut st = Stepper::new();
        st.advance(
            read(&[(1, stats(5, 100, 10)), (1, stats(7, 50, 0))]),
            1_000_000_000,
        );
        let out = st.advance(
            read(&[(1, stats(5, 300, 110)), (1, stats(7, 60, 0))]),
            3_000_000_000,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].counts.packets, 210);
        assert_eq!(out[0].counts.syn, 100);
        assert_eq!(out[0].counts.bytes, 210 * 60);
        assert_eq!(out[0].secs, 2.0);
        assert_eq!(out[0].first_seen_ns, 5);
    }

    #[test]
    fn idle_sources_yield_no_step() {
        let mut st = Stepper::new();
        st.advance(read(&[(1, stats(5, 100, 0))]), 1_000);
        assert!(st.advance(read(&[(1, stats(5, 100, 0))]), 2_000).is_empty());
    }

    #[test]
    fn new_sources_count_from_zero_old_unknown_ones_wait() {
        let mut st = Stepper::new();
        st.advance(read(&[]), 1_000);
        // Source 2 was first seen before the previous step, but we never read it.
        let out = st.advance(
            read(&[(1, stats(1_500, 40, 40)), (2, stats(500, 900, 0))]),
            2_000,
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].source, out[0].counts.packets), (source(1), 40));
        let out = st.advance(read(&[(2, stats(500, 950, 0))]), 3_000);
        assert_eq!((out[0].source, out[0].counts.packets), (source(2), 50));
    }

    #[test]
    fn totals_going_down_restart_the_baseline() {
        let mut st = Stepper::new();
        st.advance(read(&[(1, stats(5, 100, 0))]), 1_000);
        assert!(
            st.advance(read(&[(1, stats(1_200, 3, 0))]), 2_000)
                .is_empty()
        );
        let out = st.advance(read(&[(1, stats(1_200, 13, 0))]), 3_000);
        assert_eq!(out[0].counts.packets, 10);
    }

    #[test]
    fn sketches_count_only_windows_in_the_step() {
        let mut old = stats(5, 10, 0);
        old.window.packets = 1;
        old.window.start_ns = 100;
        old.window.port_sketch = [0b111, 0, 0, 0];
        let mut cur = stats(6, 10, 0);
        cur.window.packets = 1;
        cur.window.start_ns = 5_000;
        cur.window.port_sketch = [0b1000, 0, 0, 0];
        let mut s = Summed::default();
        s.add(&old, 1_000);
        s.add(&cur, 1_000);
        assert_eq!(s.counts(&[0; 9]).distinct_ports, 1);
    }
}
