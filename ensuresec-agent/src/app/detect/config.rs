//! The application detectors' settings: defaults, and `[storefront.DETECTOR]`
//! tables that override any field, as `[protect.DETECTOR]` does for the
//! network detectors.

use std::time::Duration;

use ensuresec_common::decisions::Detector;
use serde::Deserialize;

use crate::detect::detector::Action;

/// One application detector, resolved. What `per_source` and `distinct`
/// count is the detector's own (see the README's table).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppDetectorConfig {
    /// Events of one client in `window` that trip it; 0 turns it off.
    pub per_source: u32,
    /// Distinct accounts, cards or suspicious paths of one client in
    /// `window` that trip it; 0 turns that check off.
    pub distinct: u32,
    /// Storefront-wide: failures of all clients in `window` that make a
    /// wave (with several times the baseline, from several clients); 0 off.
    pub aggregate: u32,
    pub window: Duration,
    pub action: Action,
    pub throttle_pps: u32,
    pub dry_run: Option<bool>,
    /// Card testing: a payment at or below this amount counts as a probe.
    pub small_amount: f64,
}

/// What a `[storefront.DETECTOR]` table may set.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppDetectorOverride {
    pub per_source: Option<u32>,
    pub distinct: Option<u32>,
    pub aggregate: Option<u32>,
    pub window: Option<String>,
    pub action: Option<Action>,
    pub throttle_pps: Option<u32>,
    pub dry_run: Option<bool>,
    pub small_amount: Option<f64>,
}

impl AppDetectorConfig {
    pub fn with(mut self, o: &AppDetectorOverride) -> Result<Self, String> {
        self.per_source = o.per_source.unwrap_or(self.per_source);
        self.distinct = o.distinct.unwrap_or(self.distinct);
        self.aggregate = o.aggregate.unwrap_or(self.aggregate);
        if let Some(w) = &o.window {
            let window =
                ensuresec_common::ttl::parse_interval(w).map_err(|e| format!("window: {e}"))?;
            if window < Duration::from_secs(1) || window > Duration::from_secs(24 * 3600) {
                return Err(format!("window = {w:?} must be within 1s..24h"));
            }
            self.window = window;
        }
        self.action = o.action.unwrap_or(self.action);
        if self.action == Action::Budget {
            return Err(
                "`budget` limits a destination; an application detector acts on a client".into(),
            );
        }
        self.throttle_pps = o.throttle_pps.unwrap_or(self.throttle_pps);
        self.dry_run = o.dry_run.or(self.dry_run);
        if let Some(a) = o.small_amount {
            if !(a.is_finite() && a >= 0.0) {
                return Err(format!("small_amount = {a} must be a non-negative number"));
            }
            self.small_amount = a;
        }
        Ok(self)
    }

    pub fn window_secs(&self) -> f64 {
        self.window.as_secs_f64()
    }

    /// The thresholds while the storefront is under a wave of the same
    /// kind: a third of the usual count, half the distinct items.
    pub fn tightened(mut self) -> Self {
        self.per_source = (self.per_source / 3).max(3).min(self.per_source);
        self.distinct = (self.distinct / 2).max(3).min(self.distinct);
        self
    }
}

const fn app(
    per_source: u32,
    distinct: u32,
    aggregate: u32,
    window_secs: u64,
) -> AppDetectorConfig {
    AppDetectorConfig {
        per_source,
        distinct,
        aggregate,
        window: Duration::from_secs(window_secs),
        action: Action::Ban,
        throttle_pps: 20,
        dry_run: None,
        small_amount: 5.0,
    }
}

/// Defaults, in `Detector::APP` order.
const DEFAULTS: [AppDetectorConfig; 6] = [
    // http_flood: page requests in 10 s (an asset counts a tenth).
    app(300, 0, 0, 10),
    // credential_stuffing: failed logins, and distinct accounts failed;
    // storefront-wide, 50 failed logins in the window.
    app(10, 4, 50, 300),
    // account_takeover: a login that works after failures on this many
    // other accounts (a shopper may try two of their own addresses first).
    app(1, 3, 0, 900),
    // card_testing: declines, distinct cards, and payments of at most
    // `small_amount` (counted with declines); storefront-wide, 20 declines.
    app(5, 3, 20, 900),
    // scanner: client errors (4xx), and medium-confidence signature hits;
    // one high-confidence hit is enough.
    app(40, 3, 0, 60),
    // attack_tool: requests with an attack tool's user agent.
    app(1, 0, 0, 60),
];

/// Index of an application detector in per-detector tables.
pub(super) fn slot(d: Detector) -> usize {
    Detector::APP
        .iter()
        .position(|a| *a == d)
        .expect("an application detector")
}

/// One storefront's application detectors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppDetectors([AppDetectorConfig; 6]);

impl Default for AppDetectors {
    fn default() -> Self {
        Self(DEFAULTS)
    }
}

impl AppDetectors {
    pub fn get(&self, d: Detector) -> &AppDetectorConfig {
        &self.0[slot(d)]
    }

    pub fn set(&mut self, d: Detector, c: AppDetectorConfig) {
        self.0[slot(d)] = c;
    }

    /// The longest window: how long a quiet client is remembered.
    pub fn longest_window(&self) -> Duration {
        self.0.iter().map(|c| c.window).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_change_only_what_they_name_and_bad_values_are_named() {
        let base = *AppDetectors::default().get(Detector::CredentialStuffing);
        let o = AppDetectorOverride {
            per_source: Some(3),
            window: Some("2m".into()),
            ..Default::default()
        };
        let c = base.with(&o).unwrap();
        assert_eq!(
            (c.per_source, c.distinct, c.window),
            (3, 4, Duration::from_secs(120))
        );
        for (o, needle) in [
            (
                AppDetectorOverride {
                    window: Some("soon".into()),
                    ..Default::default()
                },
                "window",
            ),
            (
                AppDetectorOverride {
                    window: Some("100ms".into()),
                    ..Default::default()
                },
                "1s..24h",
            ),
            (
                AppDetectorOverride {
                    action: Some(Action::Budget),
                    ..Default::default()
                },
                "budget",
            ),
            (
                AppDetectorOverride {
                    small_amount: Some(-1.0),
                    ..Default::default()
                },
                "small_amount",
            ),
        ] {
            let err = base.with(&o).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        assert_eq!(
            AppDetectors::default().longest_window(),
            Duration::from_secs(900)
        );
    }
}
