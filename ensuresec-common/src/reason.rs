//! Why the XDP program decided what it did: the index of `ES_COUNTERS`.

crate::named_enum! {
    /// Verdict and reason of one packet. The discriminant indexes `ES_COUNTERS`.
    pub enum Reason {
        /// Parsed, not listed, allowed by policy.
        Passed = 0 => "passed",
        /// Source on the allowlist (exact or prefix).
        Allowlisted = 1 => "allowlisted",
        /// Source blocked by an exact entry.
        BlockedExact = 2 => "blocked_exact",
        /// Source blocked by a prefix entry.
        BlockedCidr = 3 => "blocked_cidr",
        /// TCP/UDP destination port outside the port policy.
        PortPolicy = 4 => "port_policy",
        /// Source over the rate of a throttle the agent set.
        Throttled = 5 => "throttled",
        /// New TCP connection over a destination's budget the agent set.
        DestBudget = 6 => "dst_budget",
        /// Not IPv4 or IPv6 (ARP, LLDP, ...).
        NonIp = 7 => "non_ip",
        /// A later IP fragment: no transport header of its own; it passes
        /// when its first fragment passed, or when no policy needs its ports.
        Fragment = 8 => "fragment",
        /// IP protocol without ports we inspect (GRE, ESP, SCTP, ...).
        OtherProtocol = 9 => "other_protocol",
        TruncatedEthernet = 10 => "truncated_ethernet",
        TruncatedVlan = 11 => "truncated_vlan",
        TooManyVlans = 12 => "too_many_vlans",
        TruncatedIpv4 = 13 => "truncated_ipv4",
        BadIpv4Header = 14 => "bad_ipv4_header",
        TruncatedIpv6 = 15 => "truncated_ipv6",
        BadIpv6Header = 16 => "bad_ipv6_header",
        TruncatedIpv6Ext = 17 => "truncated_ipv6_ext",
        TooManyIpv6Ext = 18 => "too_many_ipv6_ext",
        TruncatedTcp = 19 => "truncated_tcp",
        BadTcpHeader = 20 => "bad_tcp_header",
        TruncatedUdp = 21 => "truncated_udp",
        TruncatedIcmp = 22 => "truncated_icmp",
        TruncatedIcmpv6 = 23 => "truncated_icmpv6",
        /// Port policy on, and the destination port cannot be read (a
        /// truncated transport header, too many IPv6 extension headers).
        PortUnreadable = 24 => "port_unreadable",
        /// Port policy on, and a later fragment whose first fragment did not
        /// pass (or never came).
        OrphanFragment = 25 => "orphan_fragment",
    }
}

/// Number of reasons, i.e. entries of `ES_COUNTERS`.
pub const REASON_COUNT: u32 = Reason::COUNT as u32;

impl Reason {
    /// Whether packets with this reason are dropped.
    pub const fn drops(self) -> bool {
        matches!(
            self,
            Reason::BlockedExact
                | Reason::BlockedCidr
                | Reason::PortPolicy
                | Reason::Throttled
                | Reason::DestBudget
                | Reason::PortUnreadable
                | Reason::OrphanFragment
        )
    }

    /// Whether the reason is a parse failure (malformed or truncated packet).
    pub const fn is_malformed(self) -> bool {
        matches!(
            self,
            Reason::TruncatedEthernet
                | Reason::TruncatedVlan
                | Reason::TooManyVlans
                | Reason::TruncatedIpv4
                | Reason::BadIpv4Header
                | Reason::TruncatedIpv6
                | Reason::BadIpv6Header
                | Reason::TruncatedIpv6Ext
                | Reason::TooManyIpv6Ext
                | Reason::TruncatedTcp
                | Reason::BadTcpHeader
                | Reason::TruncatedUdp
                | Reason::TruncatedIcmp
                | Reason::TruncatedIcmpv6
        )
    }

    /// Whether the reason says the destination port could not be read, so
    /// that a port policy cannot vouch for the packet.
    pub const fn hides_port(self) -> bool {
        matches!(
            self,
            Reason::TruncatedTcp
                | Reason::TruncatedUdp
                | Reason::TooManyIpv6Ext
                | Reason::TruncatedIpv6Ext
        )
    }

    /// Label of the verdict.
    pub const fn verdict(self) -> &'static str {
        if self.drops() { "drop" } else { "pass" }
    }
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn all_is_indexed_by_discriminant() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REASON_COUNT as usize);
    }

    #[test]
    fn only_list_policy_and_mitigation_reasons_drop() {
        let drops: Vec<_> = Reason::ALL.iter().filter(|r| r.drops()).collect();
        assert_eq!(
            drops,
            [
                &Reason::BlockedExact,
                &Reason::BlockedCidr,
                &Reason::PortPolicy,
                &Reason::Throttled,
                &Reason::DestBudget,
                &Reason::PortUnreadable,
                &Reason::OrphanFragment,
            ]
        );
    }
}
