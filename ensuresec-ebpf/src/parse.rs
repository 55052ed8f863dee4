//! Packet parsing: Ethernet (up to two VLAN tags), IPv4 with options and
//! fragments, IPv6 with a bounded walk over extension headers, then the first
//! bytes of TCP, UDP, ICMP and ICMPv6.
//!
//! Parsing never fails the program: a frame that cannot be parsed further ends
//! with a `Reason` saying why, and keeps whatever source address was already read.

use aya_ebpf::programs::XdpContext;
use ensuresec_common::reason::Reason;

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still sent by some switches.
const ETH_P_QINQ_LEGACY: u16 = 0x9100;
const MAX_VLAN_TAGS: usize = 2;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;

/// Extension headers walked before giving up (RFC 8200 expects few; attackers send many).
const MAX_IPV6_EXT: usize = 8;
/// Offsets beyond this are not followed; it also gives the verifier a bound.
const MAX_OFFSET: usize = 2048;

// Plain structs rather than enums with payloads: LLVM may leave the payload of
// an unused variant uninitialised or fill it with an unrelated register (a
// packet pointer), and the verifier rejects both.

/// Transport header fields the policy needs.
#[derive(Clone, Copy)]
pub struct Transport {
    pub kind: u8,
    pub dport: u16,
}

impl Transport {
    pub const NONE: u8 = 0;
    pub const TCP: u8 = 1;
    pub const UDP: u8 = 2;
    const fn none() -> Self {
        Transport {
            kind: Self::NONE,
            dport: 0,
        }
    }
}

/// Source address of the frame, as far as parsing got.
#[derive(Clone, Copy)]
pub struct Source {
    pub family: u8,
    /// IPv4: as read from the packet (network byte order in memory).
    pub v4: u32,
    pub v6: [u8; 16],
}

impl Source {
    pub const NONE: u8 = 0;
    pub const V4: u8 = 4;
    pub const V6: u8 = 6;
    const fn none() -> Self {
        Source {
            family: Self::NONE,
            v4: 0,
            v6: [0; 16],
        }
    }
    const fn v4(addr: u32) -> Self {
        Source {
            family: Self::V4,
            v4: addr,
            v6: [0; 16],
        }
    }
    const fn v6(addr: [u8; 16]) -> Self {
        Source {
            family: Self::V6,
            v4: 0,
            v6: addr,
        }
    }
}

/// What parsing learnt about a frame.
pub struct Parsed {
    pub source: Source,
    pub transport: Transport,
    /// `Passed` when the whole frame parsed; otherwise why parsing stopped.
    pub outcome: Reason,
}

impl Parsed {
    const fn stop(source: Source, outcome: Reason) -> Self {
        Parsed {
            source,
            transport: Transport::none(),
            outcome,
        }
    }
}

#[inline(always)]
fn load<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    // SAFETY: bounds checked against data_end just above; reads may be unaligned.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

#[inline(always)]
fn load_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    load::<u16>(ctx, offset).map(u16::from_be)
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
    let Some(mut proto) = load_be16(ctx, 12) else {
        return Parsed::stop(Source::none(), Reason::TruncatedEthernet);
    };
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(proto, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_LEGACY) {
            break;
        }
        let Some(inner) = load_be16(ctx, offset + 2) else {
            return Parsed::stop(Source::none(), Reason::TruncatedVlan);
        };
        proto = inner;
        offset += 4;
    }
    match proto {
        ETH_P_IPV4 => parse_ipv4(ctx, offset),
        ETH_P_IPV6 => parse_ipv6(ctx, offset),
        ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_LEGACY => {
            Parsed::stop(Source::none(), Reason::TooManyVlans)
        }
        _ => Parsed::stop(Source::none(), Reason::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, offset: usize) -> Parsed {
    // The fixed header holds the source; it is needed before anything else.
    let Some(h) = load::<[u8; 20]>(ctx, offset) else {
        return Parsed::stop(Source::none(), Reason::TruncatedIpv4);
    };
    if h[0] >> 4 != 4 {
        return Parsed::stop(Source::none(), Reason::BadIpv4Header);
    }
    let source = Source::v4(u32::from_ne_bytes([h[12], h[13], h[14], h[15]]));
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total_len = u16::from_be_bytes([h[2], h[3]]) as usize;
    if ihl < 20 || total_len < ihl {
        return Parsed::stop(source, Reason::BadIpv4Header);
    }
    if ctx.data() + offset + ihl > ctx.data_end() {
        return Parsed::stop(source, Reason::TruncatedIpv4);
    }
    if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return Parsed::stop(source, Reason::Fragment);
    }
    parse_transport(ctx, source, h[9], offset + ihl, false)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, offset: usize) -> Parsed {
    let Some(h) = load::<[u8; 40]>(ctx, offset) else {
        return Parsed::stop(Source::none(), Reason::TruncatedIpv6);
    };
    if h[0] >> 4 != 6 {
        return Parsed::stop(Source::none(), Reason::BadIpv6Header);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let source = Source::v6(src);
    let mut next = h[6];
    let mut offset = offset + 40;
    for _ in 0..MAX_IPV6_EXT {
        if !matches!(
            next,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
        ) {
            return parse_transport(ctx, source, next, offset, true);
        }
        // Every extension header starts with (next header, length); the fragment
        // header has its offset in the next two bytes. Reading at least two bytes
        // also keeps LLVM from turning the bounds check into `ptr >= end`, which
        // the verifier does not accept as proof for a variable offset.
        let Some([following, len, frag_hi, frag_lo]) = load::<[u8; 4]>(ctx, offset) else {
            return Parsed::stop(source, Reason::TruncatedIpv6Ext);
        };
        let header_len = match next {
            IPPROTO_AH => (len as usize + 2) * 4,
            IPPROTO_FRAGMENT => {
                if u16::from_be_bytes([frag_hi, frag_lo]) & 0xfff8 != 0 {
                    return Parsed::stop(source, Reason::Fragment);
                }
                8
            }
            _ => (len as usize + 1) * 8,
        };
        next = following;
        offset += header_len;
        if offset > MAX_OFFSET {
            return Parsed::stop(source, Reason::TruncatedIpv6Ext);
        }
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Parsed::stop(source, Reason::TooManyIpv6Ext)
        }
        _ => parse_transport(ctx, source, next, offset, true),
    }
}

#[inline(always)]
fn parse_transport(ctx: &XdpContext, source: Source, proto: u8, offset: usize, v6: bool) -> Parsed {
    if offset > MAX_OFFSET {
        return Parsed::stop(source, Reason::TruncatedIpv6Ext);
    }
    let (transport, outcome) = match proto {
        IPPROTO_TCP => match (load_be16(ctx, offset + 2), load::<u8>(ctx, offset + 12)) {
            (Some(dport), Some(data_off)) if load::<[u8; 20]>(ctx, offset).is_some() => {
                if data_off >> 4 < 5 {
                    (Transport::none(), Reason::BadTcpHeader)
                } else {
                    (
                        Transport {
                            kind: Transport::TCP,
                            dport,
                        },
                        Reason::Passed,
                    )
                }
            }
            _ => (Transport::none(), Reason::TruncatedTcp),
        },
        IPPROTO_UDP => match (load_be16(ctx, offset + 2), load::<[u8; 8]>(ctx, offset)) {
            (Some(dport), Some(_)) => (
                Transport {
                    kind: Transport::UDP,
                    dport,
                },
                Reason::Passed,
            ),
            _ => (Transport::none(), Reason::TruncatedUdp),
        },
        IPPROTO_ICMP if !v6 => match load::<[u8; 8]>(ctx, offset) {
            Some(_) => (Transport::none(), Reason::Passed),
            None => (Transport::none(), Reason::TruncatedIcmp),
        },
        IPPROTO_ICMPV6 if v6 => match load::<[u8; 8]>(ctx, offset) {
            Some(_) => (Transport::none(), Reason::Passed),
            None => (Transport::none(), Reason::TruncatedIcmpv6),
        },
        _ => (Transport::none(), Reason::OtherProtocol),
    };
    Parsed {
        source,
        transport,
        outcome,
    }
}
