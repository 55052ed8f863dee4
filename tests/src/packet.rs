//! Frames for BPF_PROG_TEST_RUN tables, built byte by byte so that tests can
//! also build the malformed ones no packet library would.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_LLDP: u16 = 0x88cc;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_PSH: u8 = 0x08;

/// Transport header and payload.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    IcmpEcho,
    Icmpv6Echo,
    /// Raw bytes under an arbitrary protocol number.
    Raw {
        proto: u8,
        bytes: Vec<u8>,
    },
}

impl L4 {
    pub fn proto(&self) -> u8 {
        match self {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::IcmpEcho => 1,
            L4::Icmpv6Echo => 58,
            L4::Raw { proto, .. } => *proto,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        match self {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut b = vec![0u8; 20];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[4..8].copy_from_slice(&1u32.to_be_bytes());
                b[12] = 5 << 4;
                b[13] = *flags;
                b[14..16].copy_from_slice(&64240u16.to_be_bytes());
                b
            }
            L4::Udp {
                sport,
                dport,
                payload,
            } => {
                let mut b = vec![0u8; 8];
                b[0..2].copy_from_slice(&sport.to_be_bytes());
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                b.extend(payload);
                b
            }
            L4::IcmpEcho => vec![8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'],
            L4::Icmpv6Echo => vec![128, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'],
            L4::Raw { bytes, .. } => bytes.clone(),
        }
    }
}

/// Ethernet header with optional VLAN tags (outer first): `(tpid, vid)`.
pub fn ethernet(tags: &[(u16, u16)], ethertype: u16) -> Vec<u8> {
    let mut b = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    for (tpid, vid) in tags {
        b.extend(tpid.to_be_bytes());
        b.extend(vid.to_be_bytes());
    }
    b.extend(ethertype.to_be_bytes());
    b
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 options and fragment fields.
#[derive(Clone, Debug, Default)]
pub struct V4Opts {
    /// Raw options, padded by the caller to a multiple of 4 bytes.
    pub options: Vec<u8>,
    /// The 16-bit flags + fragment offset field (0x2000 = MF).
    pub frag: u16,
    /// The identification field (fragments of one datagram share it);
    /// `None` is 0x1234.
    pub id: Option<u16>,
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, opts: &V4Opts, l4: &L4) -> Vec<u8> {
    let payload = l4.bytes();
    let ihl = 20 + opts.options.len();
    let mut h = vec![0u8; 20];
    h[0] = 0x40 | (ihl / 4) as u8;
    h[2..4].copy_from_slice(&((ihl + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&opts.id.unwrap_or(0x1234).to_be_bytes());
    h[6..8].copy_from_slice(&opts.frag.to_be_bytes());
    h[8] = 64;
    h[9] = l4.proto();
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h.extend(&opts.options);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend(payload);
    h
}

/// An IPv6 extension header: (type, body after the next-header byte). Bodies
/// are sized so that each header is a multiple of 8 bytes (4 for AH).
#[derive(Clone, Debug)]
pub struct Ext {
    pub kind: u8,
    pub bytes: Vec<u8>,
}

pub const EXT_HOPOPTS: u8 = 0;
pub const EXT_ROUTING: u8 = 43;
pub const EXT_FRAGMENT: u8 = 44;
pub const EXT_AH: u8 = 51;
pub const EXT_DSTOPTS: u8 = 60;

impl Ext {
    /// Hop-by-hop, destination options or routing header of `8 * units` bytes.
    pub fn options(kind: u8, units: u8) -> Self {
        let mut bytes = vec![0u8; 8 * units as usize];
        bytes[1] = units - 1;
        if kind == EXT_ROUTING {
            bytes[2] = 4; // segment routing type, no segments left
        } else {
            bytes[2] = 1; // PadN covering the rest
            bytes[3] = (8 * units as usize - 4) as u8;
        }
        Ext { kind, bytes }
    }

    /// Fragment header with an offset in 8-byte units and the M flag.
    pub fn fragment(offset_units: u16, more: bool) -> Self {
        let mut bytes = vec![0u8; 8];
        let field = (offset_units << 3) | more as u16;
        bytes[2..4].copy_from_slice(&field.to_be_bytes());
        bytes[4..8].copy_from_slice(&0xabcdu32.to_be_bytes());
        Ext {
            kind: EXT_FRAGMENT,
            bytes,
        }
    }

    /// Authentication header with 12 bytes of ICV (24 bytes in all).
    pub fn ah() -> Self {
        let mut bytes = vec![0u8; 24];
        bytes[1] = 4; // (24 / 4) - 2
        bytes[4..8].copy_from_slice(&0x100u32.to_be_bytes());
        Ext {
            kind: EXT_AH,
            bytes,
        }
    }
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, exts: &[Ext], l4: &L4) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(l4.proto(), |n| n.kind);
        let mut b = e.bytes.clone();
        b[0] = next;
        chain.extend(b);
    }
    chain.extend(l4.bytes());
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(chain.len() as u16).to_be_bytes());
    h[6] = exts.first().map_or(l4.proto(), |e| e.kind);
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend(chain);
    h
}

/// An IPv4 fragment from `src` to `dst`: flags and offset `frag`,
/// identification `id`.
pub fn ipv4_fragment(src: Ipv4Addr, dst: Ipv4Addr, frag: u16, id: u16, l4: &L4) -> Vec<u8> {
    let opts = V4Opts {
        frag,
        id: Some(id),
        ..Default::default()
    };
    frame(&[], ipv4(src, dst, &opts, l4))
}

/// A UDP datagram split in two: its first fragment (the UDP header and
/// `len` bytes of `fill`) and the layer-4 bytes of a later one.
pub fn udp_fragments(sport: u16, dport: u16, fill: u8, len: usize) -> (L4, L4) {
    let first = L4::Udp {
        sport,
        dport,
        payload: vec![fill; len],
    };
    let rest = L4::Raw {
        proto: 17,
        bytes: vec![fill; len],
    };
    (first, rest)
}

/// A small UDP packet (to port 53) from `src`: enough to ask the filter
/// what it does with a source.
pub fn udp_from(src: Ipv4Addr) -> Vec<u8> {
    let udp = L4::Udp {
        sport: 1,
        dport: 53,
        payload: vec![],
    };
    frame(
        &[],
        ipv4(src, Ipv4Addr::new(10, 0, 0, 1), &V4Opts::default(), &udp),
    )
}

/// A whole frame: Ethernet (with `tags`) around an IPv4 or IPv6 packet.
pub fn frame(tags: &[(u16, u16)], ip_packet: Vec<u8>) -> Vec<u8> {
    let ethertype = if ip_packet.first().map(|b| b >> 4) == Some(6) {
        ETH_P_IPV6
    } else {
        ETH_P_IPV4
    };
    let mut f = ethernet(tags, ethertype);
    f.extend(ip_packet);
    f
}

/// The source address the XDP program can trust in `frame`, by the same rules
/// (up to two VLAN tags, a complete fixed IP header with the right version).
pub fn reference_source(frame: &[u8]) -> Option<IpAddr> {
    let be16 = |o: usize| Some(u16::from_be_bytes([*frame.get(o)?, *frame.get(o + 1)?]));
    let mut ethertype = be16(12)?;
    let mut off = 14;
    let is_vlan = |t: u16| matches!(t, 0x8100 | 0x88a8 | 0x9100);
    for _ in 0..2 {
        if !is_vlan(ethertype) {
            break;
        }
        ethertype = be16(off + 2)?;
        off += 4;
    }
    match ethertype {
        ETH_P_IPV4 if frame.len() >= off + 20 && frame[off] >> 4 == 4 => {
            let b: [u8; 4] = frame[off + 12..off + 16].try_into().ok()?;
            Some(IpAddr::V4(b.into()))
        }
        ETH_P_IPV6 if frame.len() >= off + 40 && frame[off] >> 4 == 6 => {
            let b: [u8; 16] = frame[off + 8..off + 24].try_into().ok()?;
            Some(IpAddr::V6(b.into()))
        }
        _ => None,
    }
}
