//! Deciding a per-source flood before its window fills. A count that must
//! fill a one-second window makes a flood at twice its threshold wait half a
//! second; the rate so far says the same in tens of milliseconds, when it
//! holds over enough of the window and well above the threshold.

use ensuresec_common::decisions::Detector;

/// How far into its window a source's counters are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub length_secs: f64,
    pub elapsed_secs: f64,
}

impl Span {
    /// A window seen whole: only full-window counts decide.
    pub const fn whole(length_secs: f64) -> Self {
        Self {
            length_secs,
            elapsed_secs: length_secs,
        }
    }
}

/// An early decision needs this many times the threshold's rate...
const EARLY_RATE: f64 = 1.25;

/// ... over at least this share of the window: a page load or a TCP window's
/// worth of packets arrives within a few milliseconds and says nothing about
/// the rate that follows.
const EARLY_MIN_SHARE: f64 = 0.05;

/// The share of the whole window's count an early decision needs at least,
/// per detector; `None` keeps the detector to full windows. Connection
/// attempts come in honest bursts (a browser or a load tester opening its
/// pool: 40 to 50 SYNs at once from one address), so an early SYN decision
/// needs half the window's count; packet floods have no such burst. Scans
/// count distinct things, and reflections are decided per destination.
fn early_floor(detector: Detector) -> Option<f64> {
    match detector {
        Detector::SynFlood => Some(0.5),
        Detector::UdpFlood
        | Detector::IcmpFlood
        | Detector::AckRstFlood
        | Detector::FragmentFlood => Some(0.0),
        _ => None,
    }
}

/// The count that decides `detector` at `rate` per second in `span`: the
/// whole window's count, or less while the window is young and the rate so
/// far is well above the threshold.
pub fn needed(detector: Detector, rate: u32, span: Span) -> u64 {
    let whole = (rate as f64 * span.length_secs).ceil().max(1.0);
    let Some(floor) = early_floor(detector) else {
        return whole as u64;
    };
    let secs = span
        .elapsed_secs
        .clamp(span.length_secs * EARLY_MIN_SHARE, span.length_secs);
    let early = (EARLY_RATE * rate as f64 * secs)
        .max(floor * whole)
        .ceil()
        .max(1.0);
    early.min(whole) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(elapsed_secs: f64) -> Span {
        Span {
            length_secs: 1.0,
            elapsed_secs,
        }
    }

    #[test]
    fn a_packet_flood_is_decided_within_a_twentieth_of_its_window() {
        // UDP at 5,000/s: 313 packets in the first twentieth of a second.
        assert_eq!(needed(Detector::UdpFlood, 5_000, at(0.01)), 313);
        assert_eq!(needed(Detector::UdpFlood, 5_000, at(0.05)), 313);
        assert_eq!(needed(Detector::UdpFlood, 5_000, at(0.4)), 2_500);
        // Never more than the whole window needs.
        assert_eq!(needed(Detector::UdpFlood, 5_000, at(0.9)), 5_000);
        assert_eq!(needed(Detector::UdpFlood, 5_000, Span::whole(1.0)), 5_000);
    }

    #[test]
    fn connection_attempts_need_half_the_window() {
        // A load tester's pool of 50 connections is not enough.
        assert_eq!(needed(Detector::SynFlood, 200, at(0.01)), 100);
        assert_eq!(needed(Detector::SynFlood, 200, at(0.5)), 125);
        assert_eq!(needed(Detector::SynFlood, 200, at(1.0)), 200);
    }

    #[test]
    fn scans_and_reflections_wait_for_the_window() {
        assert_eq!(needed(Detector::Reflection, 100, at(0.1)), 100);
        // The least span is a twentieth of the window, whatever its length.
        assert_eq!(
            needed(
                Detector::UdpFlood,
                5_000,
                Span {
                    length_secs: 2.0,
                    elapsed_secs: 0.05
                }
            ),
            625
        );
    }
}
