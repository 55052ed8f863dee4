//! Packet parsing: Ethernet (up to two VLAN tags), IPv4 with options and
//! fragments, IPv6 with a bounded walk over extension headers, then the first
//! bytes of TCP, UDP, ICMP and ICMPv6.
//!
//! Parsing never fails the program: a frame that cannot be parsed further ends
//! with a `Reason` saying why, and keeps whatever addresses were already read.

use aya_ebpf::programs::XdpContext;
use ensuresec_common::{
    features::{AddrKey, v4_key},
    reason::Reason,
};

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still sent by some switches.
const ETH_P_QINQ_LEGACY: u16 = 0x9100;
const MAX_VLAN_TAGS: usize = 2;

const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Extension headers walked before giving up (RFC 8200 expects few; attackers send many).
const MAX_IPV6_EXT: usize = 8;
/// Offsets beyond this are not followed; it also gives the verifier a bound.
const MAX_OFFSET: usize = 2048;

// Plain structs rather than enums with payloads: LLVM may leave the payload of
// an unused variant uninitialised or fill it with an unrelated register (a
// packet pointer), and the verifier rejects both.

/// Transport header fields the policy and the features need.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Transport {
    pub kind: u8,
    pub flags: u8,
    /// Non-zero when a TCP segment carries data.
    pub payload: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP: the sequence number, and the first four bytes of the data (0
    /// when it has fewer, or none): what protocol a connection opens with.
    pub seq: u32,
    pub head: u32,
}

impl Transport {
    pub const NONE: u8 = 0;
    pub const TCP: u8 = 1;
    pub const UDP: u8 = 2;
    /// ICMP or ICMPv6; `flags` holds the type.
    pub const ICMP: u8 = 3;
    const fn none() -> Self {
        Transport {
            kind: Self::NONE,
            flags: 0,
            payload: 0,
            sport: 0,
            dport: 0,
            seq: 0,
            head: 0,
        }
    }

    const fn icmp(kind: u8) -> Self {
        Transport {
            kind: Self::ICMP,
            flags: kind,
            payload: 0,
            sport: 0,
            dport: 0,
            seq: 0,
            head: 0,
        }
    }
}

/// The IP header fields, as far as parsing got.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ip {
    pub family: u8,
    /// IP protocol of the transport header (0 when not reached).
    pub proto: u8,
    /// Non-zero for any fragment, first or later.
    pub fragment: u8,
    /// IP identification of a fragment (IPv4: 16 bits; IPv6: the fragment
    /// header's 32 bits).
    pub frag_id: u32,
    /// IPv4 addresses as read from the packet (network byte order in memory).
    pub src_v4: u32,
    pub dst_v4: u32,
    pub src_v6: AddrKey,
    pub dst_v6: AddrKey,
}

impl Ip {
    pub const NONE: u8 = 0;
    pub const V4: u8 = 4;
    pub const V6: u8 = 6;
    const fn none() -> Self {
        Ip {
            family: Self::NONE,
            proto: 0,
            fragment: 0,
            frag_id: 0,
            src_v4: 0,
            dst_v4: 0,
            src_v6: AddrKey::ZERO,
            dst_v6: AddrKey::ZERO,
        }
    }

    /// The source as a feature/mitigation key (IPv4 as IPv4-mapped IPv6).
    #[inline(always)]
    pub fn src_key(&self) -> AddrKey {
        if self.family == Self::V4 {
            v4_key(self.src_v4)
        } else {
            self.src_v6
        }
    }

    /// The destination as a key, like `src_key`.
    #[inline(always)]
    pub fn dst_key(&self) -> AddrKey {
        if self.family == Self::V4 {
            v4_key(self.dst_v4)
        } else {
            self.dst_v6
        }
    }
}

/// What parsing learnt about a frame. `repr(C)` and `Copy` because the filter
/// hands it to the detection program through a per-CPU map.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Parsed {
    pub ip: Ip,
    pub transport: Transport,
    /// `Passed` when the whole frame parsed; otherwise why parsing stopped.
    pub outcome: Reason,
}

impl Parsed {
    /// A later fragment: no transport header of its own.
    #[inline(always)]
    pub fn is_later_fragment(&self) -> bool {
        self.outcome == Reason::Fragment
    }

    /// The first fragment of a datagram (it carries the transport header).
    #[inline(always)]
    pub fn is_first_fragment(&self) -> bool {
        self.ip.fragment != 0 && self.outcome != Reason::Fragment
    }

    /// TCP or UDP by the IP header, whether or not its header could be read.
    #[inline(always)]
    pub fn has_ports(&self) -> bool {
        self.ip.proto == IPPROTO_TCP || self.ip.proto == IPPROTO_UDP
    }

    const fn stop(ip: Ip, outcome: Reason) -> Self {
        Parsed {
            ip,
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
        return Parsed::stop(Ip::none(), Reason::TruncatedEthernet);
    };
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(proto, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_LEGACY) {
            break;
        }
        let Some(inner) = load_be16(ctx, offset + 2) else {
            return Parsed::stop(Ip::none(), Reason::TruncatedVlan);
        };
        proto = inner;
        offset += 4;
    }
    match proto {
        ETH_P_IPV4 => parse_ipv4(ctx, offset),
        ETH_P_IPV6 => parse_ipv6(ctx, offset),
        ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_LEGACY => {
            Parsed::stop(Ip::none(), Reason::TooManyVlans)
        }
        _ => Parsed::stop(Ip::none(), Reason::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, offset: usize) -> Parsed {
    // The fixed header holds the addresses; it is needed before anything else.
    let Some(h) = load::<[u8; 20]>(ctx, offset) else {
        return Parsed::stop(Ip::none(), Reason::TruncatedIpv4);
    };
    if h[0] >> 4 != 4 {
        return Parsed::stop(Ip::none(), Reason::BadIpv4Header);
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let mut ip = Ip::none();
    ip.family = Ip::V4;
    ip.proto = h[9];
    ip.fragment = (frag & 0x3fff != 0) as u8;
    ip.frag_id = u16::from_be_bytes([h[4], h[5]]) as u32;
    ip.src_v4 = u32::from_ne_bytes([h[12], h[13], h[14], h[15]]);
    ip.dst_v4 = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total_len = u16::from_be_bytes([h[2], h[3]]) as usize;
    if ihl < 20 || total_len < ihl {
        return Parsed::stop(ip, Reason::BadIpv4Header);
    }
    if ctx.data() + offset + ihl > ctx.data_end() {
        return Parsed::stop(ip, Reason::TruncatedIpv4);
    }
    if frag & 0x1fff != 0 {
        return Parsed::stop(ip, Reason::Fragment);
    }
    parse_transport(ctx, ip, offset + ihl, offset + total_len)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, offset: usize) -> Parsed {
    let Some(h) = load::<[u8; 40]>(ctx, offset) else {
        return Parsed::stop(Ip::none(), Reason::TruncatedIpv6);
    };
    if h[0] >> 4 != 6 {
        return Parsed::stop(Ip::none(), Reason::BadIpv6Header);
    }
    let mut ip = Ip::none();
    ip.family = Ip::V6;
    ip.src_v6.0.copy_from_slice(&h[8..24]);
    ip.dst_v6.0.copy_from_slice(&h[24..40]);
    let mut next = h[6];
    let ip_end = offset + 40 + u16::from_be_bytes([h[4], h[5]]) as usize;
    let mut offset = offset + 40;
    for _ in 0..MAX_IPV6_EXT {
        if !matches!(
            next,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
        ) {
            ip.proto = next;
            return parse_transport(ctx, ip, offset, ip_end);
        }
        // Every extension header starts with (next header, length); the fragment
        // header has its offset in the next two bytes. Reading at least two bytes
        // also keeps LLVM from turning the bounds check into `ptr >= end`, which
        // the verifier does not accept as proof for a variable offset.
        let Some([following, len, frag_hi, frag_lo]) = load::<[u8; 4]>(ctx, offset) else {
            return Parsed::stop(ip, Reason::TruncatedIpv6Ext);
        };
        let header_len = match next {
            IPPROTO_AH => (len as usize + 2) * 4,
            IPPROTO_FRAGMENT => {
                let Some(id) = load::<[u8; 4]>(ctx, offset + 4) else {
                    return Parsed::stop(ip, Reason::TruncatedIpv6Ext);
                };
                ip.fragment = 1;
                ip.frag_id = u32::from_be_bytes(id);
                if u16::from_be_bytes([frag_hi, frag_lo]) & 0xfff8 != 0 {
                    ip.proto = following;
                    return Parsed::stop(ip, Reason::Fragment);
                }
                8
            }
            _ => (len as usize + 1) * 8,
        };
        next = following;
        offset += header_len;
        if offset > MAX_OFFSET {
            return Parsed::stop(ip, Reason::TruncatedIpv6Ext);
        }
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Parsed::stop(ip, Reason::TooManyIpv6Ext)
        }
        _ => {
            ip.proto = next;
            parse_transport(ctx, ip, offset, ip_end)
        }
    }
}

/// `ip_end` is where the IP header says the packet ends (the frame may be
/// padded); it tells whether a TCP segment carries data.
#[inline(always)]
fn parse_transport(ctx: &XdpContext, ip: Ip, offset: usize, ip_end: usize) -> Parsed {
    if offset > MAX_OFFSET {
        return Parsed::stop(ip, Reason::TruncatedIpv6Ext);
    }
    let v6 = ip.family == Ip::V6;
    let (transport, outcome) = match ip.proto {
        IPPROTO_TCP => match load::<[u8; 20]>(ctx, offset) {
            Some(h) if h[12] >> 4 < 5 => (Transport::none(), Reason::BadTcpHeader),
            Some(h) => {
                let data = offset + (h[12] >> 4) as usize * 4;
                let payload = ip_end > data;
                let head = if payload && ip_end >= data + 4 {
                    load::<u32>(ctx, data).map_or(0, u32::from_be)
                } else {
                    0
                };
                (
                    Transport {
                        kind: Transport::TCP,
                        flags: h[13],
                        payload: payload as u8,
                        sport: u16::from_be_bytes([h[0], h[1]]),
                        dport: u16::from_be_bytes([h[2], h[3]]),
                        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        head,
                    },
                    Reason::Passed,
                )
            }
            None => (Transport::none(), Reason::TruncatedTcp),
        },
        IPPROTO_UDP => match load::<[u8; 8]>(ctx, offset) {
            Some(h) => (
                Transport {
                    kind: Transport::UDP,
                    flags: 0,
                    payload: 0,
                    sport: u16::from_be_bytes([h[0], h[1]]),
                    dport: u16::from_be_bytes([h[2], h[3]]),
                    seq: 0,
                    head: 0,
                },
                Reason::Passed,
            ),
            None => (Transport::none(), Reason::TruncatedUdp),
        },
        IPPROTO_ICMP if !v6 => match load::<[u8; 8]>(ctx, offset) {
            Some(h) => (Transport::icmp(h[0]), Reason::Passed),
            None => (Transport::none(), Reason::TruncatedIcmp),
        },
        IPPROTO_ICMPV6 if v6 => match load::<[u8; 8]>(ctx, offset) {
            Some(h) => (Transport::icmp(h[0]), Reason::Passed),
            None => (Transport::none(), Reason::TruncatedIcmpv6),
        },
        _ => (Transport::none(), Reason::OtherProtocol),
    };
    Parsed {
        ip,
        transport,
        outcome,
    }
}
