//! The agent's automatic decisions as stored in pinned maps, so that the CLI
//! can list and lift them with the agent down and a restarted agent knows them.

use crate::features::AddrKey;

crate::named_enum! {
    /// What a detector found.
    pub enum Detector {
        SynFlood = 1 => "syn_flood",
        UdpFlood = 2 => "udp_flood",
        IcmpFlood = 3 => "icmp_flood",
        AckRstFlood = 4 => "ack_rst_flood",
        FragmentFlood = 5 => "fragment_flood",
        /// UDP from amplifier source ports (DNS, NTP, memcached, ...).
        Reflection = 6 => "reflection",
        /// SYN-ACKs nobody asked for: our address spoofed in someone's SYN flood.
        SynAckReflection = 7 => "synack_reflection",
        PortScan = 8 => "port_scan",
        HostSweep = 9 => "host_sweep",
        /// Many established TCP connections from one source (slowloris-style).
        HalfOpen = 10 => "half_open",
        /// The anomaly model: a source's step scored above the model's threshold.
        Ml = 11 => "ml",
        /// Application level (access logs, shop events): requests per client.
        HttpFlood = 12 => "http_flood",
        /// Failed logins, or logins on many accounts, from one client.
        CredentialStuffing = 13 => "credential_stuffing",
        /// A login that worked after failures on other accounts.
        AccountTakeover = 14 => "account_takeover",
        /// Declined or small payments, or many cards, from one client.
        CardTesting = 15 => "card_testing",
        /// Probes for files and exploits, bursts of client errors.
        Scanner = 16 => "scanner",
        /// Requests with an attack tool's user agent.
        AttackTool = 17 => "attack_tool",
        /// Connection attempts that never complete, counted over the
        /// horizon (minutes): a flood too slow for any window.
        SlowSyn = 18 => "slow_syn",
        /// Distinct ports probed over the horizon: a scan too slow for a window.
        SlowScan = 19 => "slow_scan",
        /// Distinct openings of conversation (the first bytes a connection
        /// sends) over the horizon: a service scan of one port, which tries
        /// one protocol after another.
        ServiceScan = 20 => "service_scan",
        /// The aggregate anomaly model: a destination's window, what all of
        /// its sources together sent, scored above the model's threshold.
        MlAggregate = 21 => "ml_aggregate",
        /// A storefront's fail-safe profile while it is under attack: a
        /// budget on its new connections (no detection of its own).
        Failsafe = 22 => "failsafe",
    }
}

impl Detector {
    /// The threshold detectors (the anomaly models are configured apart).
    pub const THRESHOLD: [Detector; 13] = [
        Detector::SynFlood,
        Detector::UdpFlood,
        Detector::IcmpFlood,
        Detector::AckRstFlood,
        Detector::FragmentFlood,
        Detector::Reflection,
        Detector::SynAckReflection,
        Detector::PortScan,
        Detector::HostSweep,
        Detector::HalfOpen,
        Detector::SlowSyn,
        Detector::SlowScan,
        Detector::ServiceScan,
    ];

    /// The detectors that count a source over the horizon (minutes) rather
    /// than a window.
    pub const HORIZON: [Detector; 3] =
        [Detector::SlowSyn, Detector::SlowScan, Detector::ServiceScan];

    /// The application-level detectors (logs and shop events).
    pub const APP: [Detector; 6] = [
        Detector::HttpFlood,
        Detector::CredentialStuffing,
        Detector::AccountTakeover,
        Detector::CardTesting,
        Detector::Scanner,
        Detector::AttackTool,
    ];

    pub fn is_app(self) -> bool {
        Self::APP.contains(&self)
    }

    /// Index into per-detector tables.
    pub const fn index(self) -> usize {
        self as usize - 1
    }
}

crate::named_enum! {
    /// What a decision does.
    pub enum Action {
        /// Every packet of the source dropped.
        Ban = 1 => "ban",
        /// The source's packets of some classes dropped or held to a rate.
        Throttle = 2 => "throttle",
        /// New connections, UDP or ICMP to a destination held to a rate.
        Budget = 3 => "budget",
        /// Recorded, not enforced (dry run or `alert` action).
        Alert = 4 => "alert",
    }
}

pub const SCOPE_SOURCE: u8 = 1;
pub const SCOPE_DESTINATION: u8 = 2;
/// A source network: `addr` is the network's first address and `port` its
/// prefix length (an IPv6 client's /64, a distributed attack's /24).
pub const SCOPE_PREFIX: u8 = 3;
/// A storefront as a whole (a wave from many clients): the first four bytes
/// of `addr` hold the storefront's name id in `ES_REASONS` (little endian).
pub const SCOPE_STOREFRONT: u8 = 4;

/// A decision applies to a source address, or to a destination (address,
/// protocol, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    pub addr: AddrKey,
    pub port: u16,
    pub proto: u8,
    pub scope: u8,
    /// Explicit: a hash map compares keys' padding too.
    pub _pad: u32,
}

impl DecisionKey {
    pub const fn new(addr: AddrKey, port: u16, proto: u8, scope: u8) -> Self {
        DecisionKey {
            addr,
            port,
            proto,
            scope,
            _pad: 0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionRecord {
    /// A `Detector` id.
    pub detector: u32,
    /// An `Action` id.
    pub action: u32,
    /// Which ban of this source this is (1 for the first), for escalation.
    pub strikes: u32,
    /// Rate of a throttle or budget (packets or connections per second).
    pub rate: u32,
    /// For a throttle: the classes of the source's packets held to `rate`
    /// and the classes dropped (`features::class`).
    pub limit_classes: u32,
    pub drop_classes: u32,
    /// Wall-clock seconds at the decision (display).
    pub created_secs: u64,
    /// Monotonic ns: when the attack's first packet was seen, when the
    /// decision reached the kernel, and when it ends.
    pub first_seen_ns: u64,
    pub decided_ns: u64,
    pub expires_at_ns: u64,
    /// The numbers that tripped the detector: observed rate or count, the
    /// threshold, and two detector-specific values.
    pub evidence: [u64; 4],
    /// Index into `ES_REASONS` of the storefront an application detection
    /// was made for; 0 for none.
    pub storefront_id: u32,
    pub _pad: u32,
}

/// Strikes of a source that was banned before (`ES_OFFENDERS`, LRU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offender {
    pub strikes: u32,
    pub _pad: u32,
    pub last_secs: u64,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::DecisionKey {}
    unsafe impl aya::Pod for super::DecisionRecord {}
    unsafe impl aya::Pod for super::Offender {}
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn detector_ids_round_trip_and_names_are_unique() {
        let mut names: Vec<_> = Detector::ALL.iter().map(|d| d.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Detector::ALL.len());
        for (i, d) in Detector::ALL.into_iter().enumerate() {
            assert_eq!(Detector::from_id(d as u32), Some(d));
            assert_eq!(d.index(), i);
            assert_eq!(Detector::from_name(d.name()), Some(d));
        }
        assert_eq!(Detector::from_id(0), None);
        assert_eq!(Detector::from_id(11), Some(Detector::Ml));
        assert!(!Detector::THRESHOLD.contains(&Detector::Ml));
        assert_eq!(Action::from_name("throttle"), Some(Action::Throttle));
    }
}
