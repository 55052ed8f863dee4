//! What kind of attack an incident is, from the detectors that saw it.

use std::{fmt, str::FromStr};

use ensuresec_common::decisions::Detector;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Packet floods and reflection, whatever the protocol.
    Flood,
    /// Port and host scans, probes for files and exploits, attack tools.
    Scan,
    /// Login guessing on many accounts, and takeovers that followed.
    CredentialStuffing,
    CardTesting,
    HttpFlood,
    /// What only the anomaly models saw.
    Anomaly,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 6] = [
        IncidentKind::Flood,
        IncidentKind::Scan,
        IncidentKind::CredentialStuffing,
        IncidentKind::CardTesting,
        IncidentKind::HttpFlood,
        IncidentKind::Anomaly,
    ];

    /// The kind of incident a detector's decisions belong to; none for the
    /// decisions an incident itself causes (a fail-safe budget).
    pub fn of(detector: Detector) -> Option<Self> {
        use Detector::*;
        Some(match detector {
            SynFlood | UdpFlood | IcmpFlood | AckRstFlood | FragmentFlood | Reflection
            | SynAckReflection | HalfOpen | SlowSyn => IncidentKind::Flood,
            PortScan | HostSweep | SlowScan | ServiceScan | Scanner | AttackTool => {
                IncidentKind::Scan
            }
            CredentialStuffing | AccountTakeover => IncidentKind::CredentialStuffing,
            CardTesting => IncidentKind::CardTesting,
            HttpFlood => IncidentKind::HttpFlood,
            Ml | MlAggregate => IncidentKind::Anomaly,
            Failsafe => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            IncidentKind::Flood => "flood",
            IncidentKind::Scan => "scan",
            IncidentKind::CredentialStuffing => "credential_stuffing",
            IncidentKind::CardTesting => "card_testing",
            IncidentKind::HttpFlood => "http_flood",
            IncidentKind::Anomaly => "anomaly",
        }
    }

    /// How bad it is for the shop: harm to its customers first.
    pub fn severity(self) -> &'static str {
        match self {
            IncidentKind::CredentialStuffing | IncidentKind::CardTesting => "critical",
            IncidentKind::Flood | IncidentKind::HttpFlood => "major",
            IncidentKind::Scan | IncidentKind::Anomaly => "minor",
        }
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IncidentKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IncidentKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("`{s}` is not an incident kind"))
    }
}
