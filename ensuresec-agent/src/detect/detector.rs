//! One detector's settings, and the table of them a protected prefix has:
//! indexed by `Detector`, so that adding a detector means adding a row of
//! defaults, not a field in five places.

use ensuresec_common::decisions::Detector;
use serde::Deserialize;

/// What a detection does, as the config says it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Drop the source for an escalating TTL. For evidence that can be
    /// spoofed, a spoof-safe ban drops or limits only the evidence's class
    /// of packets (see `evidence`).
    Ban,
    /// Rate-limit the source's packets of the evidence's class (`throttle_pps`).
    Throttle,
    /// Limit the destination (new connections, UDP or ICMP per second).
    Budget,
    /// Record only (`alert_only` is accepted too).
    #[serde(alias = "alert_only")]
    Alert,
}

/// One detector's thresholds, resolved. Rates are per second; scans count
/// distinct ports or hosts in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Per-source threshold; `0` disables the per-source check.
    pub per_source: u32,
    /// Threshold on all traffic to one destination; `0` disables it.
    pub aggregate: u32,
    pub action: Action,
    pub aggregate_action: Action,
    /// Rate a `throttle` allows.
    pub throttle_pps: u32,
    /// Overrides `[detect] dry_run` for this detector.
    pub dry_run: Option<bool>,
}

/// What a `[protect.DETECTOR]` table may change; the rest keeps its default.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DetectorOverride {
    pub per_source: Option<u32>,
    pub aggregate: Option<u32>,
    pub action: Option<Action>,
    pub aggregate_action: Option<Action>,
    pub throttle_pps: Option<u32>,
    pub dry_run: Option<bool>,
}

impl DetectorConfig {
    pub fn with(mut self, o: &DetectorOverride) -> Self {
        self.per_source = o.per_source.unwrap_or(self.per_source);
        self.aggregate = o.aggregate.unwrap_or(self.aggregate);
        self.action = o.action.unwrap_or(self.action);
        self.aggregate_action = o.aggregate_action.unwrap_or(self.aggregate_action);
        self.throttle_pps = o.throttle_pps.unwrap_or(self.throttle_pps);
        self.dry_run = o.dry_run.or(self.dry_run);
        self
    }
}

const fn detector(
    per_source: u32,
    aggregate: u32,
    action: Action,
    aggregate_action: Action,
) -> DetectorConfig {
    DetectorConfig {
        per_source,
        aggregate,
        action,
        aggregate_action,
        throttle_pps: 100,
        dry_run: None,
    }
}

/// The defaults, in `Detector` order.
const DEFAULTS: [DetectorConfig; Detector::COUNT] = [
    // syn_flood
    detector(200, 5_000, Action::Ban, Action::Budget),
    // udp_flood
    detector(5_000, 100_000, Action::Ban, Action::Budget),
    // icmp_flood
    detector(200, 5_000, Action::Ban, Action::Budget),
    // ack_rst_flood
    detector(10_000, 200_000, Action::Ban, Action::Alert),
    // fragment_flood
    detector(500, 10_000, Action::Ban, Action::Alert),
    // reflection and synack_reflection: at a destination, a filter of the
    // answers nobody asked for (see `plan`).
    detector(100, 5_000, Action::Ban, Action::Budget),
    detector(100, 2_000, Action::Ban, Action::Budget),
    // port_scan
    detector(20, 0, Action::Ban, Action::Alert),
    // host_sweep
    detector(6, 0, Action::Ban, Action::Alert),
    // half_open: established connections can be counted wrong when a CDN or
    // NAT edge holds many, so it alerts unless the operator says ban.
    detector(100, 0, Action::Alert, Action::Alert),
    // ml: from `[ml]`, the same in every block.
    detector(0, 0, Action::Alert, Action::Alert),
    // The application detectors are set per storefront (`app::detect::config`):
    // http_flood, credential_stuffing, account_takeover, card_testing,
    // scanner, attack_tool.
    detector(0, 0, Action::Alert, Action::Alert),
    detector(0, 0, Action::Alert, Action::Alert),
    detector(0, 0, Action::Alert, Action::Alert),
    detector(0, 0, Action::Alert, Action::Alert),
    detector(0, 0, Action::Alert, Action::Alert),
    detector(0, 0, Action::Alert, Action::Alert),
    // Over the horizon, counts per source. slow_syn: SYNs that never
    // complete; a monitor retrying a closed port looks the same, so it
    // alerts unless the operator says ban.
    slow(30, Action::Alert),
    // slow_scan: distinct ports, as port_scan's window counts them.
    detector(20, 0, Action::Ban, Action::Alert),
    // service_scan: distinct openings (protocols tried on a connection).
    slow(12, Action::Ban),
    // ml_aggregate: from `[ml]`, the same in every block.
    detector(0, 0, Action::Alert, Action::Alert),
    // failsafe: no threshold; a storefront's `[storefront.failsafe]`.
    detector(0, 0, Action::Alert, Action::Alert),
];

/// A horizon detector whose spoof-safe answer holds the source's new
/// connections to ten a second: a page load's six at once pass, a service
/// scan's dozens in a second (and any faster flood) do not.
const fn slow(per_source: u32, action: Action) -> DetectorConfig {
    let mut c = detector(per_source, 0, action, Action::Alert);
    c.throttle_pps = 10;
    c
}

/// The detectors of one protected prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detectors([DetectorConfig; Detector::COUNT]);

impl Default for Detectors {
    fn default() -> Self {
        Self(DEFAULTS)
    }
}

impl Detectors {
    pub fn get(&self, d: Detector) -> &DetectorConfig {
        &self.0[d.index()]
    }

    pub fn get_mut(&mut self, d: Detector) -> &mut DetectorConfig {
        &mut self.0[d.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_in_detector_order() {
        let d = Detectors::default();
        assert_eq!(d.get(Detector::SynFlood).per_source, 200);
        assert_eq!(d.get(Detector::PortScan).per_source, 20);
        assert_eq!(d.get(Detector::HalfOpen).action, Action::Alert);
        assert_eq!(d.get(Detector::Ml).per_source, 0);
        assert_eq!(d.get(Detector::AttackTool).per_source, 0);
        assert_eq!(d.get(Detector::SlowSyn).action, Action::Alert);
        assert_eq!(d.get(Detector::ServiceScan).per_source, 12);
    }
}
