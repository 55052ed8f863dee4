//! Each destination's own normal rate of unwanted traffic (unsolicited UDP
//! and SYN-ACKs, SYNs to unserved ports; `DestKey::unwanted`), learnt once a
//! second from the kernel's windows. A storefront normally receives little:
//! background scans; a host that NATs containers receives their answers,
//! which no socket of its own asked for. Detection holds each destination
//! to a rate far above its own normal, never below a floor, never above the
//! detectors' global thresholds.
//!
//! Neither a second under a decision nor a second above the destination's
//! current threshold is learnt: an attack never teaches the baseline that it
//! is normal, not even in the seconds before it is decided. A new
//! destination starts from a normal of zero, not from its first second
//! (which may be the attack's first); the learnt normals live in the agent's
//! memory, so a restart learns them again.

use std::collections::HashMap;

use ensuresec_common::features::DestKey;

/// Weight of each new second: a time constant of about five minutes.
const ALPHA: f64 = 1.0 / 300.0;
/// Destinations remembered at most (the kernel's table holds as many).
pub const MAX_DESTINATIONS: usize = 1 << 12;

#[derive(Clone, Copy, Debug, Default)]
struct Learnt {
    /// Mean unsolicited answers per second.
    mean: f64,
    /// The upkeep round that last saw it, to forget destinations gone idle.
    round: u64,
}

#[derive(Debug, Default)]
pub struct Baselines {
    learnt: HashMap<DestKey, Learnt>,
    round: u64,
}

impl Baselines {
    /// Starts an upkeep round: destinations not observed in it are forgotten
    /// at the next `end_round`.
    pub fn begin_round(&mut self) {
        self.round += 1;
    }

    /// One second of `key`: `pps` unsolicited answers per second, learnt
    /// unless it is above `threshold(key, floor, factor)`.
    pub fn observe(&mut self, key: &DestKey, pps: f64, floor: f64, factor: f64) {
        if !self.learnt.contains_key(key) && self.learnt.len() >= MAX_DESTINATIONS {
            return;
        }
        let threshold = self.threshold(key, floor, factor);
        let l = self.learnt.entry(*key).or_default();
        l.round = self.round;
        if pps <= threshold {
            l.mean += ALPHA * (pps - l.mean);
        }
    }

    /// Forgets destinations idle for a minute of rounds.
    pub fn end_round(&mut self) {
        let round = self.round;
        self.learnt
            .retain(|_, l| round.saturating_sub(l.round) < 60);
    }

    /// The rate of unsolicited answers that is an attack at `key`:
    /// `factor` times its normal, at least `floor`.
    pub fn threshold(&self, key: &DestKey, floor: f64, factor: f64) -> f64 {
        let normal = self.learnt.get(key).map_or(0.0, |l| l.mean);
        (normal * factor).max(floor)
    }

    pub fn is_empty(&self) -> bool {
        self.learnt.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> DestKey {
        DestKey::new(ensuresec_common::features::AddrKey([1; 16]), port, 17)
    }

    #[test]
    fn a_quiet_destination_is_held_to_the_floor_a_busy_one_to_its_own_normal() {
        let mut b = Baselines::default();
        for _ in 0..600 {
            b.begin_round();
            b.observe(&key(0), 0.0, 20.0, 10.0);
            // A host whose normal grew slowly: 15/s, then 100/s.
            b.observe(&key(53), 15.0, 20.0, 10.0);
            b.end_round();
        }
        assert_eq!(b.threshold(&key(0), 20.0, 10.0), 20.0);
        let learnt = b.threshold(&key(53), 20.0, 10.0);
        assert!(learnt > 120.0 && learnt <= 150.0, "{learnt}");
        for _ in 0..1200 {
            b.begin_round();
            b.observe(&key(53), 100.0, 20.0, 10.0);
            b.end_round();
        }
        let learnt = b.threshold(&key(53), 20.0, 10.0);
        assert!(learnt > 900.0 && learnt <= 1000.0, "{learnt}");
        assert_eq!(b.threshold(&key(9), 20.0, 10.0), 20.0, "never seen");
    }

    #[test]
    fn an_attack_teaches_nothing_even_from_its_first_second_and_idle_destinations_go() {
        let mut b = Baselines::default();
        // The destination's first second is the attack's: 35/s for a minute.
        for _ in 0..60 {
            b.begin_round();
            b.observe(&key(0), 35.0, 20.0, 10.0);
            b.end_round();
        }
        assert_eq!(b.threshold(&key(0), 20.0, 10.0), 20.0);
        for _ in 0..60 {
            b.begin_round();
            b.end_round();
        }
        assert!(b.is_empty());
    }
}
