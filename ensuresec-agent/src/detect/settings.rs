//! Detection settings: `[detect]` (windows, trip wires, decisions) and one
//! `[[protect]]` block per protected prefix with its detectors' thresholds.
//! Every detector has defaults, so `[[protect]] prefix = "..."` alone turns
//! detection on for that prefix.

use std::time::Duration;

use ensuresec_common::{decisions::Detector, entry::Target, ports::PortRange};
use serde::Deserialize;

use crate::ml::settings::{MlSection, MlSettings};

/// What a detection does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Drop the source for an escalating TTL.
    Ban,
    /// Rate-limit the source (`throttle_pps`).
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
    fn with(mut self, o: &DetectorOverride) -> Self {
        self.per_source = o.per_source.unwrap_or(self.per_source);
        self.aggregate = o.aggregate.unwrap_or(self.aggregate);
        self.action = o.action.unwrap_or(self.action);
        self.aggregate_action = o.aggregate_action.unwrap_or(self.aggregate_action);
        self.throttle_pps = o.throttle_pps.unwrap_or(self.throttle_pps);
        self.dry_run = o.dry_run.or(self.dry_run);
        self
    }
}

const fn detector(per_source: u32, aggregate: u32, aggregate_action: Action) -> DetectorConfig {
    DetectorConfig {
        per_source,
        aggregate,
        action: Action::Ban,
        aggregate_action,
        throttle_pps: 100,
        dry_run: None,
    }
}

/// The detectors of one protected prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detectors {
    pub syn_flood: DetectorConfig,
    pub udp_flood: DetectorConfig,
    pub icmp_flood: DetectorConfig,
    pub ack_rst_flood: DetectorConfig,
    pub fragment_flood: DetectorConfig,
    pub reflection: DetectorConfig,
    pub synack_reflection: DetectorConfig,
    pub port_scan: DetectorConfig,
    pub host_sweep: DetectorConfig,
    pub half_open: DetectorConfig,
    /// The anomaly model's decisions (from `[ml]`, the same in every block).
    pub ml: DetectorConfig,
}

impl Default for Detectors {
    fn default() -> Self {
        Self {
            syn_flood: detector(200, 5_000, Action::Budget),
            udp_flood: detector(5_000, 100_000, Action::Budget),
            icmp_flood: detector(200, 5_000, Action::Budget),
            ack_rst_flood: detector(10_000, 200_000, Action::Alert),
            fragment_flood: detector(500, 10_000, Action::Alert),
            reflection: detector(100, 5_000, Action::Alert),
            synack_reflection: detector(100, 2_000, Action::Alert),
            port_scan: detector(20, 0, Action::Alert),
            host_sweep: detector(6, 0, Action::Alert),
            half_open: detector(100, 0, Action::Alert),
            ml: DetectorConfig {
                action: Action::Alert,
                ..detector(0, 0, Action::Alert)
            },
        }
    }
}

impl Detectors {
    pub fn get(&self, d: Detector) -> &DetectorConfig {
        match d {
            Detector::SynFlood => &self.syn_flood,
            Detector::UdpFlood => &self.udp_flood,
            Detector::IcmpFlood => &self.icmp_flood,
            Detector::AckRstFlood => &self.ack_rst_flood,
            Detector::FragmentFlood => &self.fragment_flood,
            Detector::Reflection => &self.reflection,
            Detector::SynAckReflection => &self.synack_reflection,
            Detector::PortScan => &self.port_scan,
            Detector::HostSweep => &self.host_sweep,
            Detector::HalfOpen => &self.half_open,
            Detector::Ml => &self.ml,
        }
    }

    fn get_mut(&mut self, d: Detector) -> &mut DetectorConfig {
        match d {
            Detector::SynFlood => &mut self.syn_flood,
            Detector::UdpFlood => &mut self.udp_flood,
            Detector::IcmpFlood => &mut self.icmp_flood,
            Detector::AckRstFlood => &mut self.ack_rst_flood,
            Detector::FragmentFlood => &mut self.fragment_flood,
            Detector::Reflection => &mut self.reflection,
            Detector::SynAckReflection => &mut self.synack_reflection,
            Detector::PortScan => &mut self.port_scan,
            Detector::HostSweep => &mut self.host_sweep,
            Detector::HalfOpen => &mut self.half_open,
            Detector::Ml => &mut self.ml,
        }
    }
}

/// One `[[protect]]` block.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProtectConfig {
    /// Destination addresses these detectors protect.
    pub prefix: String,
    pub syn_flood: Option<DetectorOverride>,
    pub udp_flood: Option<DetectorOverride>,
    pub icmp_flood: Option<DetectorOverride>,
    pub ack_rst_flood: Option<DetectorOverride>,
    pub fragment_flood: Option<DetectorOverride>,
    pub reflection: Option<DetectorOverride>,
    pub synack_reflection: Option<DetectorOverride>,
    pub port_scan: Option<DetectorOverride>,
    pub host_sweep: Option<DetectorOverride>,
    pub half_open: Option<DetectorOverride>,
}

impl ProtectConfig {
    fn override_for(&self, d: Detector) -> Option<&DetectorOverride> {
        match d {
            Detector::SynFlood => self.syn_flood.as_ref(),
            Detector::UdpFlood => self.udp_flood.as_ref(),
            Detector::IcmpFlood => self.icmp_flood.as_ref(),
            Detector::AckRstFlood => self.ack_rst_flood.as_ref(),
            Detector::FragmentFlood => self.fragment_flood.as_ref(),
            Detector::Reflection => self.reflection.as_ref(),
            Detector::SynAckReflection => self.synack_reflection.as_ref(),
            Detector::PortScan => self.port_scan.as_ref(),
            Detector::HostSweep => self.host_sweep.as_ref(),
            Detector::HalfOpen => self.half_open.as_ref(),
            // Set from `[ml]` for every block.
            Detector::Ml => None,
        }
    }

    /// The defaults with this block's overrides applied.
    pub fn resolve(&self) -> Detectors {
        let mut d = Detectors::default();
        for which in Detector::ALL {
            if let Some(o) = self.override_for(which) {
                let resolved = d.get(which).with(o);
                *d.get_mut(which) = resolved;
            }
        }
        d
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    /// Decide but enforce nothing (per detector: `dry_run` in its table).
    pub dry_run: bool,
    /// Counting window in the kernel.
    pub window: String,
    /// Ban TTL of a source's first, second, ... ban; the last repeats.
    pub ban_ttls: Vec<String>,
    pub throttle_ttl: String,
    pub budget_ttl: String,
    /// Sample one packet header in this many for the ring buffer (0: none).
    pub sample_every: u32,
    /// Kernel trip wires (per CPU, per window): packets of a source (doubling
    /// after each trip), distinct destination ports and hosts of a source,
    /// packets to a destination.
    pub trip_packets: u32,
    pub trip_ports: u32,
    pub trip_hosts: u32,
    pub trip_dst_packets: u32,
    /// Aggregate measures need at least this many distinct sources (out of
    /// 128 sketch bits) in the window: a spoofed or distributed attack.
    pub min_sources: u32,
    /// Destination ports counted one by one; others count as port 0.
    pub tcp_ports: Vec<String>,
    pub udp_ports: Vec<String>,
}

impl Default for DetectSection {
    fn default() -> Self {
        Self {
            dry_run: false,
            window: "1s".into(),
            ban_ttls: vec!["10m".into(), "1h".into(), "24h".into()],
            throttle_ttl: "10m".into(),
            budget_ttl: "5m".into(),
            sample_every: 0,
            trip_packets: 100,
            trip_ports: 10,
            trip_hosts: 4,
            trip_dst_packets: 2_000,
            min_sources: 16,
            tcp_ports: vec!["22".into(), "80".into(), "443".into()],
            udp_ports: vec!["53".into(), "443".into()],
        }
    }
}

/// Detection after validation.
#[derive(Clone, Debug)]
pub struct DetectSettings {
    pub dry_run: bool,
    pub window: Duration,
    pub ban_ttls: Vec<Duration>,
    pub throttle_ttl: Duration,
    pub budget_ttl: Duration,
    pub raw: DetectSection,
    pub protect: Vec<(Target, Detectors)>,
    pub tcp_ports: Vec<PortRange>,
    pub udp_ports: Vec<PortRange>,
    /// The anomaly model, when `[ml] model` is set.
    pub ml: Option<MlSettings>,
}

impl DetectSettings {
    /// Validates; errors name the key.
    pub fn validate(
        raw: &DetectSection,
        protect: &[ProtectConfig],
        ml: &MlSection,
    ) -> Result<Self, String> {
        let ml = ml.validate()?;
        let duration = |key: &str, text: &str| -> Result<Duration, String> {
            ensuresec_common::ttl::parse_ttl(text).map_err(|e| format!("detect.{key}: {e}"))
        };
        let window = ensuresec_common::ttl::parse_interval(&raw.window)
            .map_err(|e| format!("detect.window: {e}"))?;
        if window < Duration::from_millis(100) || window > Duration::from_secs(60) {
            return Err(format!(
                "detect.window = {:?} must be within 100ms..60s",
                raw.window
            ));
        }
        if raw.ban_ttls.is_empty() {
            return Err("detect.ban_ttls needs at least one TTL".into());
        }
        let ban_ttls = raw
            .ban_ttls
            .iter()
            .map(|t| duration("ban_ttls", t))
            .collect::<Result<Vec<_>, _>>()?;
        for (key, value) in [
            ("trip_packets", raw.trip_packets),
            ("trip_ports", raw.trip_ports),
            ("trip_hosts", raw.trip_hosts),
            ("trip_dst_packets", raw.trip_dst_packets),
        ] {
            if value == 0 {
                return Err(format!("detect.{key} must be at least 1"));
            }
        }
        let ports = |key: &str, list: &[String]| {
            list.iter()
                .map(|p| {
                    p.parse::<PortRange>()
                        .map_err(|e| format!("detect.{key}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut blocks = Vec::new();
        for p in protect {
            let target: Target = p
                .prefix
                .parse()
                .map_err(|e| format!("protect.prefix: {e}"))?;
            let mut detectors = p.resolve();
            if let Some(ml) = &ml {
                detectors.ml = ml.decisions;
            }
            for d in Detector::ALL {
                let c = detectors.get(d);
                if c.aggregate_action == Action::Throttle || c.action == Action::Budget {
                    return Err(format!(
                        "protect {}: {}: `throttle` is a per-source action and `budget` an aggregate one",
                        p.prefix,
                        d.name()
                    ));
                }
            }
            blocks.push((target, detectors));
        }
        Ok(Self {
            dry_run: raw.dry_run,
            window,
            ban_ttls,
            throttle_ttl: duration("throttle_ttl", &raw.throttle_ttl)?,
            budget_ttl: duration("budget_ttl", &raw.budget_ttl)?,
            raw: raw.clone(),
            protect: blocks,
            tcp_ports: ports("tcp_ports", &raw.tcp_ports)?,
            udp_ports: ports("udp_ports", &raw.udp_ports)?,
            ml,
        })
    }

    /// The detectors protecting `dst`, if any block covers it.
    pub fn detectors_for(&self, dst: std::net::IpAddr) -> Option<&Detectors> {
        self.protect
            .iter()
            .find(|(t, _)| t.contains(dst))
            .map(|(_, d)| d)
    }

    /// The TTL of a source's `strikes`-th ban (1-based).
    pub fn ban_ttl(&self, strikes: u32) -> Duration {
        let i = (strikes.max(1) as usize - 1).min(self.ban_ttls.len() - 1);
        self.ban_ttls[i]
    }

    /// Whether detector `d` of `detectors` only records.
    pub fn dry_run_for(&self, detectors: &Detectors, d: Detector) -> bool {
        detectors.get(d).dry_run.unwrap_or(self.dry_run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(section: &str, protect: &str) -> Result<DetectSettings, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wrap {
            #[serde(default)]
            detect: DetectSection,
            #[serde(default)]
            protect: Vec<ProtectConfig>,
        }
        let w: Wrap =
            toml::from_str(&format!("{section}\n{protect}")).map_err(|e| e.to_string())?;
        DetectSettings::validate(&w.detect, &w.protect, &Default::default())
    }

    #[test]
    fn defaults_cover_every_detector() {
        let s = validate("", "[[protect]]\nprefix = \"10.0.0.0/24\"").unwrap();
        let d = s.detectors_for("10.0.0.7".parse().unwrap()).unwrap();
        assert_eq!(d.syn_flood.per_source, 200);
        assert_eq!(d.syn_flood.aggregate_action, Action::Budget);
        assert!(s.detectors_for("10.0.1.7".parse().unwrap()).is_none());
    }

    #[test]
    fn windows_may_be_fractions_of_a_second() {
        let s = validate("[detect]\nwindow = \"100ms\"", "").unwrap();
        assert_eq!(s.window, Duration::from_millis(100));
        let e = validate("[detect]\nwindow = \"50ms\"", "").unwrap_err();
        assert!(e.contains("100ms..60s"), "{e}");
    }

    #[test]
    fn ban_ttls_escalate_and_stay_at_the_last() {
        let s = validate("[detect]\nban_ttls = [\"10m\", \"1h\"]", "").unwrap();
        assert_eq!(s.ban_ttl(1), Duration::from_secs(600));
        assert_eq!(s.ban_ttl(2), Duration::from_secs(3600));
        assert_eq!(s.ban_ttl(9), Duration::from_secs(3600));
    }

    #[test]
    fn per_detector_overrides() {
        let s = validate(
            "[detect]\ndry_run = true",
            "[[protect]]\nprefix = \"10.0.0.0/24\"\n[protect.port_scan]\nper_source = 5\ndry_run = false\naction = \"throttle\"",
        )
        .unwrap();
        let d = s.detectors_for("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(d.port_scan.per_source, 5);
        assert!(!s.dry_run_for(d, Detector::PortScan));
        assert!(s.dry_run_for(d, Detector::SynFlood));
    }

    #[test]
    fn bad_settings_are_named() {
        for (section, protect, needle) in [
            ("[detect]\nwindow = \"5ms\"", "", "detect.window"),
            ("[detect]\nban_ttls = []", "", "ban_ttls"),
            ("[detect]\nban_ttls = [\"soon\"]", "", "soon"),
            ("[detect]\ntrip_ports = 0", "", "trip_ports"),
            ("[detect]\nbogus = 1", "", "bogus"),
            ("", "[[protect]]\nprefix = \"10.0.0.1/8\"", "host bits"),
            (
                "",
                "[[protect]]\nprefix = \"10.0.0.0/8\"\n[protect.syn_flood]\nlimit = 3",
                "limit",
            ),
            (
                "",
                "[[protect]]\nprefix = \"10.0.0.0/8\"\n[protect.syn_floods]\nper_source = 3",
                "syn_floods",
            ),
            (
                "",
                "[[protect]]\nprefix = \"10.0.0.0/8\"\n[protect.udp_flood]\naction = \"budget\"",
                "per-source",
            ),
            (
                "",
                "[[protect]]\nprefix = \"10.0.0.0/8\"\n[protect.udp_flood]\naction = \"nuke\"",
                "nuke",
            ),
        ] {
            let err = validate(section, protect).unwrap_err();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }
}
