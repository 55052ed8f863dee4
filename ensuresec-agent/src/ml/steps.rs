//! Time steps of per-source traffic: what each source sent since the previous
//! step, read from the kernel's per-source table. The agent scores these with
//! the anomaly model, and `cargo xtask dataset` records them with the same
//! code, so the model is trained on exactly what it later sees.
//!
//! Each CPU keeps its own slot of a source, with totals since the slot was
//! created and counters of its current window. A step's counts are the sum
//! over the source's slots of what each slot's totals grew by since the last
//! step; a slot that saw nothing adds nothing, so only active slots are looked
//! at (a flood of random sources fills the table, but only this second's
//! sources cost anything). Baselines are kept for slots active in the last
//! two steps only; a slot back from a longer pause is new, and its current
//! window, which began after the pause, holds exactly what it sent since.

use std::collections::HashMap;

use ensuresec_common::{
    features::{AddrKey, SourceSlot, SourceStats},
    vector::Counts,
};

use crate::{error::Result, store::Store};

/// The kernel stamps packets with a coarse clock read once a tick per CPU,
/// up to two ticks behind ours (20 ms at 100 Hz): slots seen this close
/// before the last step are looked at again.
const CLOCK_SLACK_NS: u64 = 30_000_000;

/// Baselines of slots idle for more steps than this are dropped.
const FORGET_AFTER_STEPS: u64 = 2;

/// One source over one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceStep {
    pub source: AddrKey,
    pub counts: Counts,
    /// The step's length.
    pub secs: f64,
    /// When the kernel first saw the source (monotonic ns, earliest slot).
    pub first_seen_ns: u64,
}

/// The window's counters in the order of `totals`.
fn window_counts(s: &SourceStats) -> [u64; 9] {
    let w = &s.window;
    [
        w.packets,
        w.bytes,
        w.syn,
        w.synack,
        w.ack_rst,
        w.udp,
        w.icmp,
        w.frags,
        w.udp_reflect,
    ]
    .map(u64::from)
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

/// A source's step so far: deltas summed over its active slots, and the
/// sketches of their current windows.
#[derive(Clone, Copy, Debug, Default)]
struct Accumulated {
    first_seen_ns: u64,
    delta: [u64; 9],
    port_sketch: [u64; 4],
    dst_sketch: [u64; 2],
}

impl Accumulated {
    fn add(&mut self, s: &SourceStats, delta: &[u64; 9], windows_since_ns: u64) {
        self.first_seen_ns = match self.first_seen_ns {
            0 => s.first_seen_ns,
            t => t.min(s.first_seen_ns),
        };
        for (acc, d) in self.delta.iter_mut().zip(delta) {
            *acc += d;
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

    fn counts(&self) -> Counts {
        let d = &self.delta;
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

/// A slot's totals at the step that last saw it active.
#[derive(Clone, Copy, Debug)]
struct Baseline {
    first_seen_ns: u64,
    totals: [u64; 9],
    step: u64,
}

/// Turns successive reads of the per-source table into steps, remembering
/// the totals of slots active in the last two steps (about 100 bytes each).
#[derive(Default)]
pub struct Stepper {
    baselines: HashMap<(AddrKey, u32), Baseline>,
    last_ns: Option<u64>,
    steps: u64,
}

/// One step in progress.
struct Pass {
    last_ns: Option<u64>,
    windows_since_ns: u64,
    /// Whether a kernel window is at least a step long, so that a window
    /// begun after the last step holds everything since.
    window_covers_step: bool,
    sources: HashMap<AddrKey, Accumulated>,
}

impl Stepper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Slots with a baseline.
    pub fn tracked(&self) -> usize {
        self.baselines.len()
    }

    /// Reads the table at `now_ns` and returns the sources that sent anything
    /// since the previous call. The first call only sets the baselines.
    pub fn step(&mut self, store: &Store, now_ns: u64, window_ns: u64) -> Result<Vec<SourceStep>> {
        let mut pass = self.begin(now_ns, window_ns);
        store.for_each_source(|cpu, slot| self.observe(&mut pass, cpu as u32, slot))?;
        Ok(self.finish(pass, now_ns))
    }

    fn begin(&self, now_ns: u64, window_ns: u64) -> Pass {
        Pass {
            last_ns: self.last_ns,
            windows_since_ns: self.last_ns.unwrap_or(now_ns).saturating_sub(window_ns),
            window_covers_step: self
                .last_ns
                .is_some_and(|last| window_ns >= now_ns.saturating_sub(last)),
            sources: HashMap::new(),
        }
    }

    fn observe(&mut self, pass: &mut Pass, cpu: u32, slot: &SourceSlot) {
        let s = &slot.stats;
        let now = totals(s);
        let baseline = Baseline {
            first_seen_ns: s.first_seen_ns,
            totals: now,
            step: self.steps,
        };
        let Some(last) = pass.last_ns else {
            self.baselines.insert((slot.key, cpu), baseline);
            return;
        };
        if s.last_seen_ns + CLOCK_SLACK_NS < last {
            return;
        }
        let delta: [u64; 9] = match self.baselines.insert((slot.key, cpu), baseline) {
            // The same slot, grown since.
            Some(b)
                if b.first_seen_ns == s.first_seen_ns
                    && b.totals.iter().zip(&now).all(|(b, n)| b <= n) =>
            {
                std::array::from_fn(|i| now[i] - b.totals[i])
            }
            // Created since the last step: all of it is in this step.
            _ if s.first_seen_ns + CLOCK_SLACK_NS >= last => now,
            // Back after a pause: its window began since the last step.
            _ if pass.window_covers_step && s.window.start_ns + CLOCK_SLACK_NS >= last => {
                window_counts(s)
            }
            // Active across the last step with no baseline: unknown.
            _ => return,
        };
        if delta[0] > 0 {
            pass.sources
                .entry(slot.key)
                .or_default()
                .add(s, &delta, pass.windows_since_ns);
        }
    }

    fn finish(&mut self, pass: Pass, now_ns: u64) -> Vec<SourceStep> {
        self.last_ns = Some(now_ns);
        let steps = self.steps;
        self.baselines
            .retain(|_, b| steps - b.step < FORGET_AFTER_STEPS);
        self.steps += 1;
        let Some(last) = pass.last_ns else {
            return Vec::new();
        };
        let secs = now_ns.saturating_sub(last) as f64 / 1e9;
        pass.sources
            .into_iter()
            .map(|(source, a)| SourceStep {
                source,
                counts: a.counts(),
                secs,
                first_seen_ns: a.first_seen_ns,
            })
            .collect()
    }

    /// A step over slots given directly (for tests).
    #[cfg(test)]
    fn advance(&mut self, slots: &[(u32, SourceSlot)], now_ns: u64) -> Vec<SourceStep> {
        let mut pass = self.begin(now_ns, 1_000_000_000);
        for (cpu, slot) in slots {
            self.observe(&mut pass, *cpu, slot);
        }
        self.finish(pass, now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn source(n: u8) -> AddrKey {
        let mut k = [0u8; 16];
        k[15] = n;
        AddrKey(k)
    }

    /// Source `n`'s slot: first and last seen, packets, SYNs.
    fn slot(n: u8, first_seen_ns: u64, last_seen_ns: u64, packets: u64, syn: u64) -> SourceSlot {
        SourceSlot {
            key: source(n),
            stats: SourceStats {
                first_seen_ns,
                last_seen_ns,
                packets,
                bytes: packets * 60,
                syn,
                ..SourceStats::default()
            },
        }
    }

    #[test]
    fn the_first_read_only_sets_baselines() {
        let mut st = Stepper::new();
        assert!(st.advance(&[(0, slot(1, 5, 5, 100, 10))], S).is_empty());
        assert_eq!(st.tracked(), 1);
    }

    #[test]
    fn steps_are_deltas_summed_over_cpus() {
        let mut st = Stepper::new();
        st.advance(&[(0, slot(1, 5, 9, 100, 10)), (1, slot(1, 7, 9, 50, 0))], S);
        let out = st.advance(
            &[
                (0, slot(1, 5, 2 * S, 300, 110)),
                (1, slot(1, 7, 2 * S, 60, 0)),
            ],
            3 * S,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].counts.packets, 210);
        assert_eq!(out[0].counts.syn, 100);
        assert_eq!(out[0].counts.bytes, 210 * 60);
        assert_eq!(out[0].secs, 2.0);
        assert_eq!(out[0].first_seen_ns, 5);
    }

    #[test]
    fn idle_slots_add_nothing_and_cost_nothing() {
        let mut st = Stepper::new();
        st.advance(&[(0, slot(1, 5, 9, 100, 0)), (1, slot(1, 6, 9, 40, 0))], S);
        // CPU 1 idle since before the last step: only CPU 0 counts.
        let out = st.advance(
            &[(0, slot(1, 5, 2 * S, 130, 0)), (1, slot(1, 6, 9, 40, 0))],
            2 * S,
        );
        assert_eq!(out[0].counts.packets, 30);
        assert!(
            st.advance(&[(0, slot(1, 5, 2 * S, 130, 0))], 3 * S)
                .is_empty()
        );
    }

    #[test]
    fn new_sources_count_from_zero_old_unknown_ones_wait() {
        let mut st = Stepper::new();
        st.advance(&[], S);
        // Source 2 was first seen well before the last step but never read.
        let out = st.advance(
            &[
                (0, slot(1, S + 500, 2 * S, 40, 40)),
                (0, slot(2, 1, 2 * S, 900, 0)),
            ],
            2 * S,
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].source, out[0].counts.packets), (source(1), 40));
        let out = st.advance(&[(0, slot(2, 1, 3 * S, 950, 0))], 3 * S);
        assert_eq!((out[0].source, out[0].counts.packets), (source(2), 50));
    }

    #[test]
    fn a_recreated_slot_restarts_its_baseline() {
        let mut st = Stepper::new();
        st.advance(&[(0, slot(1, 5, 9, 100, 0))], S);
        // Evicted long ago, back with a new first-seen before the last step.
        assert!(
            st.advance(&[(0, slot(1, S / 2, 2 * S, 3, 0))], 2 * S)
                .is_empty()
        );
        let out = st.advance(&[(0, slot(1, S / 2, 3 * S, 13, 0))], 3 * S);
        assert_eq!(out[0].counts.packets, 10);
        // Re-created after the last step: counted from zero.
        let out = st.advance(&[(0, slot(1, 3 * S + 1, 4 * S, 7, 0))], 4 * S);
        assert_eq!(out[0].counts.packets, 7);
    }

    #[test]
    fn a_source_back_from_a_pause_counts_its_new_window() {
        let mut st = Stepper::new();
        st.advance(&[(0, slot(1, 5, 9, 100, 0))], S);
        st.advance(&[(0, slot(1, 5, S + 9, 188, 0))], 2 * S);
        for t in 3..8 {
            assert!(
                st.advance(&[(0, slot(1, 5, S + 9, 188, 0))], t * S)
                    .is_empty()
            );
        }
        assert_eq!(st.tracked(), 0, "idle baselines are dropped");
        let mut back = slot(1, 5, 8 * S - 1, 200, 0);
        back.stats.window.start_ns = 7 * S + 300;
        back.stats.window.packets = 12;
        let out = st.advance(&[(0, back)], 8 * S);
        assert_eq!(out[0].counts.packets, 12);
    }

    #[test]
    fn a_coarse_clock_a_tick_behind_loses_nothing() {
        let mut st = Stepper::new();
        st.advance(&[(0, slot(1, 5, 9, 100, 0))], S);
        // Packets stamped 4 ms before our step time, read after it.
        let out = st.advance(&[(0, slot(1, 5, S - 4_000_000, 120, 0))], 2 * S);
        assert_eq!(out[0].counts.packets, 20);
    }

    #[test]
    fn sketches_count_only_windows_in_the_step() {
        let mut old = slot(1, 5, 9, 10, 0).stats;
        old.window.packets = 1;
        old.window.start_ns = 100;
        old.window.port_sketch = [0b111, 0, 0, 0];
        let mut cur = slot(1, 6, 9, 10, 0).stats;
        cur.window.packets = 1;
        cur.window.start_ns = 5_000;
        cur.window.port_sketch = [0b1000, 0, 0, 0];
        let mut a = Accumulated::default();
        a.add(&old, &[1; 9], 1_000);
        a.add(&cur, &[1; 9], 1_000);
        assert_eq!(a.counts().distinct_ports, 1);
    }
}
