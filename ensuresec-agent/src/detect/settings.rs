//! Detection settings: `[detect]` (windows, trip wires, decisions) and one
//! `[[protect]]` block per protected prefix with its detectors' thresholds.
//! Every detector has defaults, so `[[protect]] prefix = "..."` alone turns
//! detection on for that prefix.

use std::{collections::BTreeMap, time::Duration};

use ensuresec_common::{decisions::Detector, entry::Target, ports::PortRange};
use serde::Deserialize;

pub use super::detector::{Action, DetectorConfig, DetectorOverride, Detectors};
use crate::ml::settings::{MlSection, MlSettings};

/// One `[[protect]]` block: the prefix and `[protect.DETECTOR]` tables.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ProtectConfig {
    /// Destination addresses these detectors protect.
    pub prefix: String,
    /// Overrides by detector name; checked in `resolve`.
    #[serde(flatten)]
    pub overrides: BTreeMap<String, toml::Value>,
}

impl ProtectConfig {
    /// The defaults with this block's overrides applied; an unknown detector
    /// or field is an error that names it.
    pub fn resolve(&self) -> Result<Detectors, String> {
        let mut d = Detectors::default();
        for (name, value) in &self.overrides {
            let which = Detector::from_name(name)
                .filter(|d| Detector::THRESHOLD.contains(d))
                .ok_or_else(|| {
                    let known: Vec<&str> = Detector::THRESHOLD.iter().map(|d| d.name()).collect();
                    format!(
                        "protect {}: unknown key `{name}` (a detector: {}; the model is set in [ml])",
                        self.prefix,
                        known.join(", ")
                    )
                })?;
            let o: DetectorOverride = value
                .clone()
                .try_into()
                .map_err(|e| format!("protect {}: {name}: {e}", self.prefix))?;
            let resolved = d.get(which).with(&o);
            *d.get_mut(which) = resolved;
        }
        Ok(d)
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    /// Decide but enforce nothing (per detector: `dry_run` in its table).
    pub dry_run: bool,
    /// Counting window in the kernel.
    pub window: String,
    /// A source's longer count, for floods and scans too slow for the
    /// window (`slow_syn`, `slow_scan`, `service_scan`).
    pub horizon: String,
    /// Ban TTL of a source's first, second, ... ban; the last repeats.
    pub ban_ttls: Vec<String>,
    pub throttle_ttl: String,
    pub budget_ttl: String,
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
    /// Unsolicited answers (reflected UDP, unsolicited SYN-ACKs) per second
    /// to one destination that are an attack, however quiet its normal...
    pub unsolicited_floor: u32,
    /// ... when they come from at least this many distinct sources.
    pub unsolicited_min_sources: u32,
    /// A destination used to unwanted traffic (answers to a NATed network's
    /// connections, background scans of unserved ports) is held to this many
    /// times its own normal rate instead.
    pub baseline_factor: u32,
    /// Destination ports counted one by one; others count as port 0.
    pub tcp_ports: Vec<String>,
    pub udp_ports: Vec<String>,
    /// A ban on evidence that anyone can forge (floods, reflections, scans)
    /// drops or limits only that class of the source's packets, so that
    /// spoofing an address cannot cut off its owner. `false` bans the whole
    /// address, for networks that filter spoofed sources upstream.
    pub spoof_safe: bool,
}

impl Default for DetectSection {
    fn default() -> Self {
        Self {
            dry_run: false,
            window: "1s".into(),
            horizon: "5m".into(),
            ban_ttls: vec!["10m".into(), "1h".into(), "24h".into()],
            throttle_ttl: "10m".into(),
            budget_ttl: "5m".into(),
            trip_packets: 100,
            trip_ports: 10,
            trip_hosts: 4,
            trip_dst_packets: 2_000,
            min_sources: 16,
            unsolicited_floor: 20,
            unsolicited_min_sources: 4,
            baseline_factor: 10,
            tcp_ports: vec!["22".into(), "80".into(), "443".into()],
            udp_ports: vec!["53".into(), "443".into()],
            spoof_safe: true,
        }
    }
}

/// Detection after validation.
#[derive(Clone, Debug)]
pub struct DetectSettings {
    pub dry_run: bool,
    pub window: Duration,
    pub horizon: Duration,
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
        let horizon = ensuresec_common::ttl::parse_interval(&raw.horizon)
            .map_err(|e| format!("detect.horizon: {e}"))?;
        if horizon < window * 10 || horizon > Duration::from_secs(3600) {
            return Err(format!(
                "detect.horizon = {:?} must be within ten windows..1h",
                raw.horizon
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
            ("unsolicited_floor", raw.unsolicited_floor),
            ("unsolicited_min_sources", raw.unsolicited_min_sources),
            ("baseline_factor", raw.baseline_factor),
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
            let mut detectors = p.resolve()?;
            for m in ml.iter().flat_map(|ml| &ml.models) {
                *detectors.get_mut(m.subject.detector()) = m.decisions;
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
            horizon,
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
        assert_eq!(d.get(Detector::SynFlood).per_source, 200);
        assert_eq!(d.get(Detector::SynFlood).aggregate_action, Action::Budget);
        assert!(s.raw.spoof_safe);
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
        assert_eq!(d.get(Detector::PortScan).per_source, 5);
        assert!(!s.dry_run_for(d, Detector::PortScan));
        assert!(s.dry_run_for(d, Detector::SynFlood));
    }

    #[test]
    fn bad_settings_are_named() {
        for (section, protect, needle) in [
            ("[detect]\nwindow = \"5ms\"", "", "detect.window"),
            ("[detect]\nhorizon = \"5s\"", "", "detect.horizon"),
            ("[detect]\nhorizon = \"a while\"", "", "detect.horizon"),
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
