//! What each detector's evidence is made of, and whether someone who merely
//! forges a source address can produce it. A flood of SYNs or reflected UDP
//! "from" a shopper's address may come from anyone; a source that holds
//! established connections has completed handshakes and is who it says.
//!
//! A spoof-safe response to forgeable evidence acts on the evidence's class
//! of packets only: classes no ordinary client sends to the storefront
//! (reflected UDP, unsolicited SYN-ACKs, probes of ports it does not serve,
//! pings) are dropped; classes clients do send (SYNs, UDP, ICMP, bare ACKs,
//! fragments) are held to a rate. The address's owner keeps browsing.

use ensuresec_common::{decisions::Detector, features::class};

/// What a spoof-safe response does with the evidence's class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// No client needs these packets: drop them all.
    Drop,
    /// Clients send these too: hold them to a rate.
    Limit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The classes of packets the detector counts (`features::class`).
    pub classes: u32,
    /// Whether a forged source address can produce the evidence.
    pub spoofable: bool,
    pub scope: Scope,
}

const fn forgeable(classes: u32, scope: Scope) -> Evidence {
    Evidence {
        classes,
        spoofable: true,
        scope,
    }
}

/// The evidence of each detector.
pub const fn of(d: Detector) -> Evidence {
    match d {
        Detector::SynFlood => forgeable(class::SYN, Scope::Limit),
        Detector::UdpFlood => forgeable(class::UDP, Scope::Limit),
        Detector::IcmpFlood => forgeable(class::ICMP, Scope::Limit),
        Detector::AckRstFlood => forgeable(class::ACK_RST, Scope::Limit),
        Detector::FragmentFlood => forgeable(class::FRAGMENT, Scope::Limit),
        Detector::Reflection => forgeable(class::UDP_SERVICE, Scope::Drop),
        Detector::SynAckReflection => forgeable(class::SYNACK, Scope::Drop),
        Detector::PortScan | Detector::SlowScan => forgeable(class::PROBE_UNTRACKED, Scope::Drop),
        // Connections that open and never complete, or open to try one
        // protocol after another: a forger can send both blind (its own
        // sequence numbers), so the answer holds new connections to a rate.
        Detector::SlowSyn | Detector::ServiceScan => forgeable(class::SYN, Scope::Limit),
        // A storefront's budget on new connections while under attack.
        Detector::Failsafe => forgeable(class::SYN, Scope::Limit),
        Detector::HostSweep => forgeable(class::PROBE_UNTRACKED | class::ICMP_ECHO, Scope::Drop),
        // The model reads every kind of packet a source sends.
        Detector::Ml => forgeable(class::ALL, Scope::Limit),
        // A destination's window: what every source sent it; only the
        // answers nobody asked for are ever filtered (see `engine::model`).
        Detector::MlAggregate => forgeable(class::UDP_SERVICE | class::SYNACK, Scope::Drop),
        // Established connections: the handshake proved the address. So
        // did every request, login and payment the application saw.
        Detector::HalfOpen
        | Detector::HttpFlood
        | Detector::CredentialStuffing
        | Detector::AccountTakeover
        | Detector::CardTesting
        | Detector::Scanner
        | Detector::AttackTool => Evidence {
            classes: class::ALL,
            spoofable: false,
            scope: Scope::Limit,
        },
    }
}

/// Names of the classes in `bits`, for listings and logs.
pub fn class_names(bits: u32) -> Vec<&'static str> {
    if bits == class::ALL {
        return vec!["all"];
    }
    [
        (class::SYN, "syn"),
        (class::SYNACK, "unsolicited_synack"),
        (class::ACK_RST, "bare_ack_rst"),
        (class::UDP, "udp"),
        (class::UDP_SERVICE, "reflected_udp"),
        (class::ICMP, "icmp"),
        (class::ICMP_ECHO, "icmp_echo"),
        (class::FRAGMENT, "fragment"),
        (class::PROBE_UNTRACKED, "probe_unserved_port"),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_established_connections_prove_a_source() {
        for d in Detector::ALL {
            let proven = d == Detector::HalfOpen || d.is_app();
            assert_eq!(of(d).spoofable, !proven, "{}", d.name());
            assert_ne!(of(d).classes, 0, "{}", d.name());
        }
    }

    #[test]
    fn classes_no_client_sends_are_dropped_the_rest_limited() {
        for d in [
            Detector::Reflection,
            Detector::SynAckReflection,
            Detector::PortScan,
        ] {
            assert_eq!(of(d).scope, Scope::Drop, "{}", d.name());
        }
        assert_eq!(of(Detector::SynFlood).scope, Scope::Limit);
        assert_eq!(class_names(class::SYN | class::ICMP), ["syn", "icmp"]);
        assert_eq!(class_names(class::ALL), ["all"]);
    }
}
