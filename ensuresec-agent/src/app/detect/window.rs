//! Counting over a sliding window in constant memory: the count of the
//! current fixed window plus the previous one's, weighted by how much of it
//! still overlaps the sliding window. Exact for steady rates, never more
//! than one window's count off, and two numbers per counter.

use crate::app::pseudonym::Pseudonym;

#[derive(Clone, Copy, Debug, Default)]
pub struct Counter {
    /// Start of the current fixed window (seconds).
    start: f64,
    current: u32,
    previous: u32,
}

impl Counter {
    fn roll(&mut self, now: f64, window: f64) {
        if now < self.start {
            // Time went back (a skewed or out-of-order line): count it in the
            // current window.
            return;
        }
        let passed = ((now - self.start) / window).floor();
        if passed >= 2.0 {
            self.previous = 0;
            self.current = 0;
            self.start = now - (now - self.start) % window;
        } else if passed >= 1.0 {
            self.previous = self.current;
            self.current = 0;
            self.start += window;
        }
    }

    pub fn add(&mut self, now: f64, window: f64, n: u32) -> u64 {
        if self.current == 0 && self.previous == 0 {
            self.start = now;
        }
        self.roll(now, window);
        self.current = self.current.saturating_add(n);
        self.value(now, window)
    }

    /// The estimate of events in the window ending at `now`.
    pub fn value(&self, now: f64, window: f64) -> u64 {
        let elapsed = (now - self.start).clamp(0.0, window);
        let overlap = 1.0 - elapsed / window;
        (self.current as f64 + self.previous as f64 * overlap).round() as u64
    }
}

/// Distinct pseudonyms seen in the window, up to `CAP` of them (more than
/// any threshold needs): a list, since it is short and usually empty.
#[derive(Clone, Debug, Default)]
pub struct Distinct {
    seen: Vec<(Pseudonym, f64)>,
}

const CAP: usize = 64;

impl Distinct {
    /// Records `item` at `now`, forgetting items older than `keep`; returns
    /// how many distinct items the last `window` holds.
    pub fn add(&mut self, item: Pseudonym, now: f64, keep: f64, window: f64) -> u64 {
        self.seen.retain(|(_, t)| now - t < keep);
        if let Some(slot) = self.seen.iter_mut().find(|(p, _)| *p == item) {
            slot.1 = slot.1.max(now);
        } else if self.seen.len() < CAP {
            self.seen.push((item, now));
        }
        self.count_other_than(None, now, window)
    }

    /// Items seen in the last `window`, `except` one.
    pub fn count_other_than(&self, except: Option<Pseudonym>, now: f64, window: f64) -> u64 {
        self.seen
            .iter()
            .filter(|(p, t)| Some(*p) != except && now - t < window)
            .count() as u64
    }

    pub fn items(&self) -> impl Iterator<Item = Pseudonym> + '_ {
        self.seen.iter().map(|(p, _)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_reads_as_itself() {
        let mut c = Counter::default();
        let mut last = 0;
        // 10 per second for 30 s, window 10 s.
        for i in 0..300 {
            last = c.add(i as f64 / 10.0, 10.0, 1);
        }
        assert!((95..=105).contains(&last), "{last}");
        // Long quiet: back to nothing.
        assert_eq!(c.add(100.0, 10.0, 1), 1);
        // Out of order by a second: still counted.
        assert_eq!(c.add(99.0, 10.0, 1), 2);
    }

    #[test]
    fn distinct_items_age_out() {
        let mut d = Distinct::default();
        let p = |n: u8| Pseudonym([n; 16]);
        assert_eq!(d.add(p(1), 0.0, 600.0, 60.0), 1);
        assert_eq!(d.add(p(1), 1.0, 600.0, 60.0), 1);
        assert_eq!(d.add(p(2), 2.0, 600.0, 60.0), 2);
        assert_eq!(d.count_other_than(Some(p(2)), 3.0, 60.0), 1);
        assert_eq!(
            d.add(p(3), 61.5, 600.0, 60.0),
            2,
            "the first is out of the window"
        );
        assert_eq!(d.count_other_than(None, 61.5, 600.0), 3, "but still kept");
        for n in 0..200 {
            d.add(p(n), 62.0, 600.0, 60.0);
        }
        assert_eq!(d.add(p(250), 62.0, 600.0, 600.0), CAP as u64);
    }
}
