//! Why the XDP program decided what it did: the index of `ES_COUNTERS`.

/// Verdict and reason of one packet. The discriminant indexes `ES_COUNTERS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Parsed, not listed, allowed by policy.
    Passed = 0,
    /// Source on the allowlist (exact or prefix).
    Allowlisted = 1,
    /// Source blocked by an exact entry.
    BlockedExact = 2,
    /// Source blocked by a prefix entry.
    BlockedCidr = 3,
    /// TCP/UDP destination port outside the port policy.
    PortPolicy = 4,
    /// Source over the rate of a throttle the agent set.
    Throttled = 5,
    /// New TCP connection over a destination's budget the agent set.
    DestBudget = 6,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NonIp = 7,
    /// A later IP fragment: no transport header to check.
    Fragment = 8,
    /// IP protocol without ports we inspect (GRE, ESP, SCTP, ...).
    OtherProtocol = 9,
    TruncatedEthernet = 10,
    TruncatedVlan = 11,
    TooManyVlans = 12,
    TruncatedIpv4 = 13,
    BadIpv4Header = 14,
    TruncatedIpv6 = 15,
    BadIpv6Header = 16,
    TruncatedIpv6Ext = 17,
    TooManyIpv6Ext = 18,
    TruncatedTcp = 19,
    BadTcpHeader = 20,
    TruncatedUdp = 21,
    TruncatedIcmp = 22,
    TruncatedIcmpv6 = 23,
}

/// Number of reasons, i.e. entries of `ES_COUNTERS`.
pub const REASON_COUNT: u32 = 24;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::Passed,
        Reason::Allowlisted,
        Reason::BlockedExact,
        Reason::BlockedCidr,
        Reason::PortPolicy,
        Reason::Throttled,
        Reason::DestBudget,
        Reason::NonIp,
        Reason::Fragment,
        Reason::OtherProtocol,
        Reason::TruncatedEthernet,
        Reason::TruncatedVlan,
        Reason::TooManyVlans,
        Reason::TruncatedIpv4,
        Reason::BadIpv4Header,
        Reason::TruncatedIpv6,
        Reason::BadIpv6Header,
        Reason::TruncatedIpv6Ext,
        Reason::TooManyIpv6Ext,
        Reason::TruncatedTcp,
        Reason::BadTcpHeader,
        Reason::TruncatedUdp,
        Reason::TruncatedIcmp,
        Reason::TruncatedIcmpv6,
    ];

    /// Whether packets with this reason are dropped.
    pub const fn drops(self) -> bool {
        matches!(
            self,
            Reason::BlockedExact
                | Reason::BlockedCidr
                | Reason::PortPolicy
                | Reason::Throttled
                | Reason::DestBudget
        )
    }

    /// Whether the reason is a parse failure (malformed or truncated packet).
    pub const fn is_malformed(self) -> bool {
        (self as u32) >= Reason::TruncatedEthernet as u32
    }

    /// Label used in metrics and `status`.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Passed => "passed",
            Reason::Allowlisted => "allowlisted",
            Reason::BlockedExact => "blocked_exact",
            Reason::BlockedCidr => "blocked_cidr",
            Reason::PortPolicy => "port_policy",
            Reason::Throttled => "throttled",
            Reason::DestBudget => "dst_budget",
            Reason::NonIp => "non_ip",
            Reason::Fragment => "fragment",
            Reason::OtherProtocol => "other_protocol",
            Reason::TruncatedEthernet => "truncated_ethernet",
            Reason::TruncatedVlan => "truncated_vlan",
            Reason::TooManyVlans => "too_many_vlans",
            Reason::TruncatedIpv4 => "truncated_ipv4",
            Reason::BadIpv4Header => "bad_ipv4_header",
            Reason::TruncatedIpv6 => "truncated_ipv6",
            Reason::BadIpv6Header => "bad_ipv6_header",
            Reason::TruncatedIpv6Ext => "truncated_ipv6_ext",
            Reason::TooManyIpv6Ext => "too_many_ipv6_ext",
            Reason::TruncatedTcp => "truncated_tcp",
            Reason::BadTcpHeader => "bad_tcp_header",
            Reason::TruncatedUdp => "truncated_udp",
            Reason::TruncatedIcmp => "truncated_icmp",
            Reason::TruncatedIcmpv6 => "truncated_icmpv6",
        }
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
                &Reason::DestBudget
            ]
        );
    }
}
