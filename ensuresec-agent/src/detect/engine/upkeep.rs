//! The engine's upkeep, once a second: the half-open detector from the
//! socket table, expired decisions lifted, gauges and the kernel's count of
//! lost events refreshed.

use ensuresec_common::decisions::{Action as Recorded, Detector};

use super::Engine;
use crate::{
    clock,
    detect::{decide, rules::Detection, sockets},
    error::{Error, Result},
};

impl Engine {
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
                if let Err(e) = self.decide_source(&key, &detection, &detectors, first_seen) {
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
        for (key, record) in self.store.decisions()? {
            if record.expires_at_ns <= now {
                // One that cannot be lifted now is tried again next second;
                // the others are not held up by it.
                let lifted = self
                    .store
                    .write()
                    .and_then(|w| decide::lift(&w, &key, &record, decide::Lift::Expired));
                if let Err(e) = lifted {
                    tracing::error!(error = %e, "lifting an expired decision");
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
        let (dropped, _) = self.store.event_stats()?;
        if dropped > self.kernel_dropped {
            self.metrics.dropped.inc_by(dropped - self.kernel_dropped);
            self.kernel_dropped = dropped;
        }
        Ok(())
    }
}
