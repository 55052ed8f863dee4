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
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NonIp = 5,
    /// A later IP fragment: no transport header to check.
    Fragment = 6,
    /// IP protocol without ports we inspect (GRE, ESP, SCTP, ...).
    OtherProtocol = 7,
    TruncatedEthernet = 8,
    TruncatedVlan = 9,
    TooManyVlans = 10,
    TruncatedIpv4 = 11,
    BadIpv4Header = 12,
    TruncatedIpv6 = 13,
    BadIpv6Header = 14,
    TruncatedIpv6Ext = 15,
    TooManyIpv6Ext = 16,
    TruncatedTcp = 17,
    BadTcpHeader = 18,
    TruncatedUdp = 19,
    TruncatedIcmp = 20,
    TruncatedIcmpv6 = 21,
}

/// Number of reasons, i.e. entries of `ES_COUNTERS`.
pub const REASON_COUNT: u32 = 22;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::Passed,
        Reason::Allowlisted,
        Reason::BlockedExact,
        Reason::BlockedCidr,
        Reason::PortPolicy,
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
            Reason::BlockedExact | Reason::BlockedCidr | Reason::PortPolicy
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
    fn only_list_and_policy_reasons_drop() {
        let drops: Vec<_> = Reason::ALL.iter().filter(|r| r.drops()).collect();
        assert_eq!(
            drops,
            [
                &Reason::BlockedExact,
                &Reason::BlockedCidr,
                &Reason::PortPolicy
            ]
        );
    }
}
