//! A reference for the XDP filter, written apart from it for the fuzzer: what
//! a frame parses to (the source address the filter can trust, the reason
//! parsing stops, the ports) and the reason the filter gives it, from the
//! same rules as the README states them.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ensuresec_common::{entry::Target, reason::Reason};

/// Extension headers walked, and the furthest offset followed.
const MAX_IPV6_EXT: usize = 8;
const MAX_OFFSET: usize = 2048;

/// What a frame parses to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parse {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// The IP protocol of the transport (0 when parsing stopped before it).
    pub proto: u8,
    /// TCP or UDP ports, when read.
    pub ports: Option<(u16, u16)>,
    /// `Passed` when the whole frame parsed, else why it stopped.
    pub outcome: Reason,
    /// A fragment: (IP identification, first fragment).
    pub fragment: Option<(u32, bool)>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses a frame as the filter does.
pub fn parse(f: &[u8]) -> Parse {
    let p = Parse {
        src: None,
        dst: None,
        proto: 0,
        ports: None,
        outcome: Reason::Passed,
        fragment: None,
    };
    let stop = |mut p: Parse, r: Reason| {
        p.outcome = r;
        p
    };
    let Some(mut ethertype) = be16(f, 12) else {
        return stop(p, Reason::TruncatedEthernet);
    };
    let mut off = 14;
    let vlan = |t: u16| matches!(t, 0x8100 | 0x88a8 | 0x9100);
    for _ in 0..2 {
        if !vlan(ethertype) {
            break;
        }
        let Some(inner) = be16(f, off + 2) else {
            return stop(p, Reason::TruncatedVlan);
        };
        ethertype = inner;
        off += 4;
    }
    match ethertype {
        0x0800 => ipv4(f, off, p),
        0x86dd => ipv6(f, off, p),
        t if vlan(t) => stop(p, Reason::TooManyVlans),
        _ => stop(p, Reason::NonIp),
    }
}

fn ipv4(f: &[u8], off: usize, mut p: Parse) -> Parse {
    let Some(h) = f.get(off..off + 20) else {
        p.outcome = Reason::TruncatedIpv4;
        return p;
    };
    if h[0] >> 4 != 4 {
        p.outcome = Reason::BadIpv4Header;
        return p;
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    p.src = Some(IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])));
    p.dst = Some(IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])));
    p.proto = h[9];
    if frag & 0x3fff != 0 {
        p.fragment = Some((u16::from_be_bytes([h[4], h[5]]) as u32, frag & 0x1fff == 0));
    }
    let ihl = (h[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if ihl < 20 || total < ihl {
        p.outcome = Reason::BadIpv4Header;
        return p;
    }
    if off + ihl > f.len() {
        p.outcome = Reason::TruncatedIpv4;
        return p;
    }
    if frag & 0x1fff != 0 {
        p.outcome = Reason::Fragment;
        return p;
    }
    transport(f, off + ihl, off + total, false, p)
}

fn ipv6(f: &[u8], off: usize, mut p: Parse) -> Parse {
    let Some(h) = f.get(off..off + 40) else {
        p.outcome = Reason::TruncatedIpv6;
        return p;
    };
    if h[0] >> 4 != 6 {
        p.outcome = Reason::BadIpv6Header;
        return p;
    }
    let addr = |at: usize| {
        let b: [u8; 16] = h[at..at + 16].try_into().expect("16 bytes");
        IpAddr::V6(Ipv6Addr::from(b))
    };
    p.src = Some(addr(8));
    p.dst = Some(addr(24));
    let mut next = h[6];
    let end = off + 40 + u16::from_be_bytes([h[4], h[5]]) as usize;
    let mut at = off + 40;
    let is_ext = |n: u8| matches!(n, 0 | 43 | 60 | 51 | 44);
    for _ in 0..MAX_IPV6_EXT {
        if !is_ext(next) {
            p.proto = next;
            return transport(f, at, end, true, p);
        }
        let Some(e) = f.get(at..at + 4) else {
            p.outcome = Reason::TruncatedIpv6Ext;
            return p;
        };
        let len = match next {
            51 => (e[1] as usize + 2) * 4,
            44 => {
                let Some(id) = f.get(at + 4..at + 8) else {
                    p.outcome = Reason::TruncatedIpv6Ext;
                    return p;
                };
                let id = u32::from_be_bytes(id.try_into().expect("4 bytes"));
                let offset = u16::from_be_bytes([e[2], e[3]]) & 0xfff8;
                p.fragment = Some((id, offset == 0));
                if offset != 0 {
                    p.proto = e[0];
                    p.outcome = Reason::Fragment;
                    return p;
                }
                8
            }
            _ => (e[1] as usize + 1) * 8,
        };
        next = e[0];
        at += len;
        if at > MAX_OFFSET {
            p.outcome = Reason::TruncatedIpv6Ext;
            return p;
        }
    }
    if is_ext(next) {
        p.outcome = Reason::TooManyIpv6Ext;
        return p;
    }
    p.proto = next;
    transport(f, at, end, true, p)
}

fn transport(f: &[u8], at: usize, _end: usize, v6: bool, mut p: Parse) -> Parse {
    if at > MAX_OFFSET {
        p.outcome = Reason::TruncatedIpv6Ext;
        return p;
    }
    p.outcome = match p.proto {
        6 => match f.get(at..at + 20) {
            Some(h) if h[12] >> 4 < 5 => Reason::BadTcpHeader,
            Some(h) => {
                p.ports = Some((be16(h, 0).unwrap_or(0), be16(h, 2).unwrap_or(0)));
                Reason::Passed
            }
            None => Reason::TruncatedTcp,
        },
        17 => match f.get(at..at + 8) {
            Some(h) => {
                p.ports = Some((be16(h, 0).unwrap_or(0), be16(h, 2).unwrap_or(0)));
                Reason::Passed
            }
            None => Reason::TruncatedUdp,
        },
        1 if !v6 => match f.get(at..at + 8) {
            Some(_) => Reason::Passed,
            None => Reason::TruncatedIcmp,
        },
        58 if v6 => match f.get(at..at + 8) {
            Some(_) => Reason::Passed,
            None => Reason::TruncatedIcmpv6,
        },
        _ => Reason::OtherProtocol,
    };
    p
}

/// The lists and policy a reference verdict is given against.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// (target, allow): entries that block (`false`) or allow (`true`)
    /// forever.
    pub lists: Vec<(Target, bool)>,
    /// `Some((tcp, udp))` allowed destination ports when the policy is on.
    pub ports: Option<(Vec<u16>, Vec<u16>)>,
}

/// The state the filter keeps across packets: datagrams whose first
/// fragment passed.
#[derive(Default)]
pub struct Memory {
    first_fragments: HashSet<(IpAddr, IpAddr, u32, u8)>,
}

impl Memory {
    pub fn clear(&mut self) {
        self.first_fragments.clear();
    }
}

/// The reason the filter gives a frame (no throttles or budgets in force).
pub fn verdict(f: &[u8], policy: &Policy, memory: &mut Memory) -> Reason {
    let p = parse(f);
    if let Some(src) = p.src {
        let covering: Vec<bool> = policy
            .lists
            .iter()
            .filter(|(t, _)| t.contains(src))
            .map(|(_, allow)| *allow)
            .collect();
        if covering.contains(&true) {
            return Reason::Allowlisted;
        }
        if !covering.is_empty() {
            let exact = policy
                .lists
                .iter()
                .any(|(t, allow)| !allow && !t.is_prefix() && t.contains(src));
            return if exact {
                Reason::BlockedExact
            } else {
                Reason::BlockedCidr
            };
        }
    }
    let Some((tcp, udp)) = &policy.ports else {
        return p.outcome;
    };
    let key = |p: &Parse, id: u32| (p.src.expect("an IP"), p.dst.expect("an IP"), id, p.proto);
    let reason = match p.outcome {
        Reason::Fragment => {
            let (id, _) = p.fragment.expect("a fragment");
            if !matches!(p.proto, 6 | 17) || memory.first_fragments.contains(&key(&p, id)) {
                Reason::Fragment
            } else {
                Reason::OrphanFragment
            }
        }
        r if r.hides_port() => Reason::PortUnreadable,
        Reason::Passed => match (p.proto, p.ports) {
            (6, Some((_, d))) if !tcp.contains(&d) => Reason::PortPolicy,
            (17, Some((_, d))) if !udp.contains(&d) => Reason::PortPolicy,
            _ => Reason::Passed,
        },
        r => r,
    };
    if reason == Reason::Passed
        && let Some((id, true)) = p.fragment
    {
        memory.first_fragments.insert(key(&p, id));
    }
    reason
}
