//! Watching a scenario from outside the system under test: each log's lines
//! stamped as they appear, and probes from the attacker's host.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Result;
use ensuresec_tests::{
    cutoff::{LineClock, Prober, Stamps},
    shop::{PORT, ShopLab, is_from},
    wait::eventually,
};

/// One probe every 8 ms: fine enough against a 50 ms target. The probes
/// connect and close without a request, so no log line comes of them.
const PROBE_EVERY: Duration = Duration::from_millis(8);
/// A probe unanswered this long counts as dropped.
const PROBE_TIMEOUT: Duration = Duration::from_millis(50);
/// Cut off means unanswered this long without a break (a single slow
/// answer under load is not a cut).
const CUT_HOLDS: Duration = Duration::from_millis(300);

pub struct Watch {
    clocks: Vec<(PathBuf, LineClock)>,
    prober: Option<Prober>,
}

/// What was seen: when the attacker was cut off, and each log's stamps.
pub struct Seen {
    pub cut_at: Option<Instant>,
    stamps: Vec<(PathBuf, Stamps)>,
}

impl Watch {
    /// Starts watching the shop's logs, and probing from the attacker's
    /// host when it is the one attacking.
    pub fn start(shop: &ShopLab, attacked: bool) -> Self {
        let clocks = [
            &shop.access_log,
            &shop.combined_log,
            &shop.error_log,
            &shop.events_log,
        ]
        .into_iter()
        .map(|p| (p.clone(), LineClock::follow(p)))
        .collect();
        let server = SocketAddr::new(shop.lab.storefront.v4.into(), PORT);
        let prober = attacked.then(|| {
            Prober::start(
                &shop.lab.attacker.ns.name,
                server,
                PROBE_EVERY,
                PROBE_TIMEOUT,
            )
        });
        Self { clocks, prober }
    }

    /// Waits for the attacker to be cut off for good (when it was decided),
    /// then stops watching.
    pub fn finish(self, decided: bool) -> Result<Seen> {
        let cut_at = match self.prober {
            Some(p) => {
                if decided {
                    let _ = eventually(Duration::from_secs(5), "the attacker cut off", || {
                        Ok(p.cut_at().filter(|at| at.elapsed() >= CUT_HOLDS))
                    });
                }
                p.finish()?.cut_at.filter(|at| at.elapsed() >= CUT_HOLDS)
            }
            None => None,
        };
        let stamps = self
            .clocks
            .into_iter()
            .map(|(p, c)| (p, c.finish()))
            .collect();
        Ok(Seen { cut_at, stamps })
    }
}

impl Seen {
    /// When the line starting at `offset` of `log` appeared.
    pub fn written(&self, log: &Path, offset: u64) -> Option<Instant> {
        self.stamps.iter().find(|(p, _)| p == log)?.1.at(offset)
    }

    /// From a line's appearance to the cut-off, in ms.
    pub fn line_to_cut(&self, written: Option<Instant>) -> Option<f64> {
        let (written, cut) = (written?, self.cut_at?);
        match cut.checked_duration_since(written) {
            Some(d) => Some(d.as_secs_f64() * 1e3),
            None => {
                eprintln!("cut off before the deciding line was written: not counted");
                None
            }
        }
    }

    /// Requests from `client` in the access log `log` (vhost_combined: the
    /// client is the second field) that appeared after `written`.
    pub fn requests_after(&self, log: &Path, client: &str, written: Instant) -> Result<u64> {
        let text = std::fs::read_to_string(log)?;
        let mut offset = 0u64;
        let mut after = 0;
        for line in text.split_inclusive('\n') {
            if is_from(line, client) && self.written(log, offset).is_some_and(|at| at > written) {
                after += 1;
            }
            offset += line.len() as u64;
        }
        Ok(after)
    }
}
