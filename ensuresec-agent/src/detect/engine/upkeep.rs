//! The engine's upkeep, once a second: the half-open detector from the
//! socket table, expired decisions lifted, gauges and the kernel's count of
//! lost events refreshed.

use std::collections::{HashMap, HashSet};

use ensuresec_common::{
    decisions::{Action as Recorded, Detector, SCOPE_DESTINATION},
    features::DestKey,
};

use super::Engine;
use crate::{
    clock,
    detect::{decide, outcome::Outcome, rules::Detection, sockets},
    error::{Error, Result},
    store::decisions::DecisionTarget,
};

impl Engine {
    /// One second of every destination's unsolicited answers, learnt unless
    /// a decision covers the destination (an attack is not normal).
    fn learn_baselines(&mut self, attacked: &HashSet<DestKey>) -> Result<()> {
        let (now, since) = (clock::mono_ns(), self.since());
        // Per destination: what detection holds to its own normal, and when
        // the earliest of its CPUs' current windows began.
        let mut seen: HashMap<DestKey, (u64, u64)> = HashMap::new();
        self.store.for_each_dest(|_, slot| {
            let w = &slot.stats.window;
            let e = seen.entry(slot.key).or_insert((0, now));
            // An old window is a quiet second: it counts as nothing.
            if w.start_ns >= since {
                e.0 += slot.key.unwanted(w) as u64;
                e.1 = e.1.min(w.start_ns);
            }
        })?;
        let secs = self.window_secs();
        let raw = &self.settings.raw;
        let (floor, factor) = (raw.unsolicited_floor as f64, raw.baseline_factor as f64);
        self.baselines.begin_round();
        for (key, (n, start)) in seen {
            if !attacked.contains(&key) {
                // A rate over the part of the window that has passed (a
                // tenth at least), not over the whole window.
                let elapsed = (now.saturating_sub(start) as f64 / 1e9).clamp(secs / 10.0, secs);
                self.baselines
                    .observe(&key, n as f64 / elapsed, floor, factor);
            }
        }
        self.baselines.end_round();
        Ok(())
    }

    /// Sources holding too many established connections to this host's
    /// listening ports (slowloris-style), from the kernel's socket table,
    /// each protected prefix with its own threshold.
    fn half_open(&mut self) -> Result<()> {
        let blocks: Vec<_> = self
            .settings
            .protect
            .iter()
            .filter(|(_, d)| d.get(Detector::HalfOpen).per_source > 0)
            .copied()
            .collect();
        if blocks.is_empty() {
            return Ok(());
        }
        let sockets = sockets::inbound_sockets()
            .map_err(|e| Error::io("reading the socket table (sock_diag)", e))?;
        let now = clock::mono_ns();
        for (prefix, detectors) in blocks {
            let threshold = detectors.get(Detector::HalfOpen).per_source;
            // A storefront address is in the first block that covers it.
            let mine = |local| {
                self.settings
                    .protect
                    .iter()
                    .find(|(t, _)| t.contains(local))
                    .is_some_and(|(t, _)| *t == prefix)
            };
            for (remote, n) in sockets::per_remote(&sockets, mine) {
                if n < threshold {
                    continue;
                }
                let detection = Detection {
                    detector: Detector::HalfOpen,
                    observed: n as u64,
                    threshold: threshold as u64,
                    extra: [0; 2],
                    storefront_id: 0,
                };
                let key = crate::store::decisions::addr_key(remote);
                // The attack began when the source was first seen, if still known.
                let first_seen = self
                    .store
                    .source_stats(&self.geometry, &key, 0)?
                    .map_or(now, |s| s.total.first_seen_ns.min(now));
                if let Err(e) = self.decide_source(&key, &detection, &detectors, first_seen, None) {
                    self.failed(&e, "deciding on a half-open flood");
                }
            }
        }
        Ok(())
    }

    /// Removes expired decisions (lifting their throttles and budgets) and
    /// refreshes the decision gauges and the kernel's dropped-event count.
    pub(super) fn maintain(&mut self) -> Result<()> {
        if let Err(e) = self.half_open() {
            self.failed(&e, "the half-open detector");
        }
        let now = clock::mono_ns();
        let mut active = [0i64; Recorded::COUNT + 1];
        let mut attacked = HashSet::new();
        for (key, record) in self.store.decisions()? {
            if key.scope == SCOPE_DESTINATION && record.expires_at_ns > now {
                attacked.insert(DestKey::new(key.addr, key.port, key.proto));
            }
            if record.expires_at_ns <= now {
                // One that cannot be lifted now is tried again next second;
                // the others are not held up by it.
                let lifted = self
                    .store
                    .write()
                    .and_then(|w| decide::lift(&w, &key, &record, decide::Lift::Expired));
                match lifted {
                    Ok(()) => self.outcomes.publish(Outcome::Expired {
                        target: DecisionTarget(key),
                        record,
                    }),
                    Err(e) => tracing::error!(error = %e, "lifting an expired decision"),
                }
            } else {
                active[(record.action as usize).min(Recorded::COUNT)] += 1;
            }
        }
        for action in Recorded::ALL {
            self.metrics
                .decisions_active
                .with_label_values(&[action.name()])
                .set(active[action as usize]);
        }
        if let Err(e) = self.learn_baselines(&attacked) {
            self.failed(&e, "learning the destinations' baselines");
        }
        let (dropped, _) = self.store.event_stats()?;
        if dropped > self.kernel_dropped {
            self.metrics.dropped.inc_by(dropped - self.kernel_dropped);
            self.kernel_dropped = dropped;
        }
        Ok(())
    }
}
