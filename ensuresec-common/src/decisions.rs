//! The agent's automatic decisions as stored in pinned maps, so that the CLI
//! can list and lift them with the agent down and a restarted agent knows them.

use crate::features::AddrKey;

/// What a detector found.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    SynFlood = 1,
    UdpFlood = 2,
    IcmpFlood = 3,
    AckRstFlood = 4,
    FragmentFlood = 5,
    /// UDP from amplifier source ports (DNS, NTP, memcached, ...).
    Reflection = 6,
    /// SYN-ACKs nobody asked for: our address spoofed in someone's SYN flood.
    SynAckReflection = 7,
    PortScan = 8,
    HostSweep = 9,
    /// Many half-open TCP connections from one source (slowloris-style).
    HalfOpen = 10,
    /// The anomaly model: a source's step scored above the model's threshold.
    Ml = 11,
}

impl Detector {
    /// The threshold detectors (the anomaly model, `Ml`, is configured apart).
    pub const ALL: [Detector; 10] = [
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
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Detector::SynFlood => "syn_flood",
            Detector::UdpFlood => "udp_flood",
            Detector::IcmpFlood => "icmp_flood",
            Detector::AckRstFlood => "ack_rst_flood",
            Detector::FragmentFlood => "fragment_flood",
            Detector::Reflection => "reflection",
            Detector::SynAckReflection => "synack_reflection",
            Detector::PortScan => "port_scan",
            Detector::HostSweep => "host_sweep",
            Detector::HalfOpen => "half_open",
            Detector::Ml => "ml",
        }
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Detector::Ml])
            .find(|d| *d as u32 == id)
    }
}

pub const ACTION_BAN: u32 = 1;
pub const ACTION_THROTTLE: u32 = 2;
/// A new-connection budget on a destination (aggregate SYN floods).
pub const ACTION_BUDGET: u32 = 3;
/// Recorded, not enforced (dry run or `alert` action).
pub const ACTION_ALERT: u32 = 4;

pub const SCOPE_SOURCE: u8 = 1;
pub const SCOPE_DESTINATION: u8 = 2;

/// A decision applies to a source address, or to a destination (address,
/// protocol, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    pub addr: AddrKey,
    pub port: u16,
    pub proto: u8,
    pub scope: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecisionRecord {
    pub detector: u32,
    pub action: u32,
    /// Which ban of this source this is (1 for the first), for escalation.
    pub strikes: u32,
    /// Rate of a throttle or budget (packets or connections per second).
    pub rate: u32,
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
        for d in Detector::ALL {
            assert_eq!(Detector::from_id(d as u32), Some(d));
        }
        assert_eq!(Detector::from_id(0), None);
        assert_eq!(Detector::from_id(11), Some(Detector::Ml));
    }
}
