//! Aims a captured frame at the storefront: finds its IP packet and rewrites
//! the destination, fixing the checksums that cover it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{ETH_P_IPV4, ETH_P_IPV6};

/// IP protocol numbers.
pub(super) const ICMP: u8 = 1;
pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
pub(super) const ICMPV6: u8 = 58;

/// RFC 1624 incremental update of a one's-complement checksum for a change of
/// the 16-bit words `old` to `new`.
fn fix_checksum(sum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = (!sum) as u32;
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        acc += (!u16::from_be_bytes([o[0], o[1]])) as u32;
        acc += u16::from_be_bytes([n[0], n[1]]) as u32;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn patch_sum(frame: &mut [u8], at: usize, old: &[u8], new: &[u8], zero_means_none: bool) {
    let Some(field) = frame.get(at..at + 2) else {
        return;
    };
    let sum = u16::from_be_bytes([field[0], field[1]]);
    if zero_means_none && sum == 0 {
        return;
    }
    let mut fixed = fix_checksum(sum, old, new);
    if zero_means_none && fixed == 0 {
        fixed = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&fixed.to_be_bytes());
}

/// Offset of the transport checksum for `proto` at `l4`, and whether 0 means
/// "no checksum" (UDP over IPv4).
fn l4_checksum(proto: u8, l4: usize, v4: bool) -> Option<(usize, bool)> {
    match proto {
        TCP => Some((l4 + 16, false)),
        UDP => Some((l4 + 6, v4)),
        ICMPV6 => Some((l4 + 2, false)),
        _ => None,
    }
}

/// Where an IP packet sits in an Ethernet frame, and what it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// Offset of the IP header.
    pub ip: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport protocol, after any IPv6 extension headers.
    pub proto: u8,
    /// Offset of the transport header; `None` in a fragment after the first.
    pub l4: Option<usize>,
    /// The fragment identification, when the packet is a fragment.
    pub fragment: Option<u32>,
}

impl Located {
    /// The source and destination ports of a TCP or UDP packet that holds
    /// its transport header.
    pub fn ports(&self, frame: &[u8]) -> Option<(u16, u16)> {
        let l4 = self.l4.filter(|_| matches!(self.proto, TCP | UDP))?;
        let h = frame.get(l4..l4 + 4)?;
        Some((
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[2], h[3]]),
        ))
    }
}

/// Finds the IPv4 or IPv6 packet in an Ethernet frame, behind any number of
/// VLAN tags, and its transport header behind IPv6 extension headers.
pub fn locate(frame: &[u8]) -> Option<Located> {
    if frame.len() < 14 {
        return None;
    }
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) && frame.len() >= off + 6 {
        off += 4;
        ethertype = u16::from_be_bytes([frame[off], frame[off + 1]]);
    }
    let ip = off + 2;
    match ethertype {
        ETH_P_IPV4 if frame.len() >= ip + 20 && frame[ip] >> 4 == 4 => {
            let addr = |at: usize| {
                let octets: [u8; 4] = frame[at..at + 4].try_into().expect("4 bytes");
                IpAddr::V4(octets.into())
            };
            let ihl = (frame[ip] & 0x0f) as usize * 4;
            let flags_offset = u16::from_be_bytes([frame[ip + 6], frame[ip + 7]]);
            let (more, offset) = (flags_offset & 0x2000 != 0, flags_offset & 0x1fff);
            let id = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]) as u32;
            Some(Located {
                ip,
                src: addr(ip + 12),
                dst: addr(ip + 16),
                proto: frame[ip + 9],
                // Only the first fragment holds the transport header.
                l4: (offset == 0).then_some(ip + ihl),
                fragment: (more || offset != 0).then_some(id),
            })
        }
        ETH_P_IPV6 if frame.len() >= ip + 40 && frame[ip] >> 4 == 6 => {
            let addr = |at: usize| {
                let octets: [u8; 16] = frame[at..at + 16].try_into().expect("16 bytes");
                IpAddr::V6(octets.into())
            };
            let (mut next, mut at) = (frame[ip + 6], ip + 40);
            let (mut l4, mut fragment) = (true, None);
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 | 51 | 44 if frame.len() >= at + 8 => {
                        let len = match next {
                            44 => {
                                let id: [u8; 4] = frame[at + 4..at + 8].try_into().expect("4");
                                fragment = Some(u32::from_be_bytes(id));
                                // A later fragment: no transport header.
                                if u16::from_be_bytes([frame[at + 2], frame[at + 3]]) & 0xfff8 != 0
                                {
                                    l4 = false;
                                    next = frame[at];
                                    break;
                                }
                                8
                            }
                            51 => (frame[at + 1] as usize + 2) * 4,
                            _ => (frame[at + 1] as usize + 1) * 8,
                        };
                        next = frame[at];
                        at += len;
                    }
                    _ => break,
                }
            }
            Some(Located {
                ip,
                src: addr(ip + 8),
                dst: addr(ip + 24),
                proto: next,
                l4: l4.then_some(at),
                fragment,
            })
        }
        _ => None,
    }
}

/// What `aim` did to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aimed {
    pub source: Option<IpAddr>,
}

/// Rewrites an Ethernet frame in place to reach the storefront: destination
/// MAC, destination IPv4 or IPv6 address (behind up to any number of VLAN
/// tags), and the checksums that cover them. Non-IP frames keep only the MAC.
pub fn aim(frame: &mut [u8], mac: [u8; 6], v4: Ipv4Addr, v6: Ipv6Addr) -> Aimed {
    if frame.len() < 14 {
        return Aimed { source: None };
    }
    frame[..6].copy_from_slice(&mac);
    // A bridge drops frames from a zero or multicast source MAC (cooked and
    // raw captures have none): give those a locally administered one.
    if frame[6] & 1 == 1 || frame[6..12] == [0; 6] {
        frame[6..12].copy_from_slice(&[0x02, 0x65, 0x73, 0, 0, 1]);
    }
    let Some(at) = locate(frame) else {
        return Aimed { source: None };
    };
    let ip = at.ip;
    match at.dst {
        IpAddr::V4(old) => {
            let (old, new) = (old.octets(), v4.octets());
            frame[ip + 16..ip + 20].copy_from_slice(&new);
            patch_sum(frame, ip + 10, &old, &new, false);
            if let Some((sum_at, zero)) = at.l4.and_then(|l4| l4_checksum(at.proto, l4, true)) {
                patch_sum(frame, sum_at, &old, &new, zero);
            }
        }
        IpAddr::V6(old) => {
            let (old, new) = (old.octets(), v6.octets());
            frame[ip + 24..ip + 40].copy_from_slice(&new);
            if let Some((sum_at, _)) = at.l4.and_then(|l4| l4_checksum(at.proto, l4, false)) {
                patch_sum(frame, sum_at, &old, &new, false);
            }
        }
    }
    Aimed {
        source: Some(at.src),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn sf() -> (Ipv4Addr, Ipv6Addr) {
        ("10.77.0.1".parse().unwrap(), "fd77::1".parse().unwrap())
    }

    /// Verifies a full IPv4 header checksum.
    fn ip_ok(h: &[u8]) -> bool {
        let sum: u32 = h
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        (folded + (folded >> 16)) as u16 == 0xffff
    }

    #[test]
    fn aims_ipv4_behind_two_vlan_tags_and_keeps_checksums_valid() {
        let tcp = L4::Tcp {
            sport: 1,
            dport: 80,
            flags: TCP_SYN,
        };
        let ip = ipv4(
            "192.0.2.9".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            &V4Opts::default(),
            &tcp,
        );
        let mut f = frame(&[(ETH_P_8021AD, 5), (ETH_P_8021Q, 7)], ip);
        let a = aim(&mut f, MAC, sf().0, sf().1);
        assert_eq!(a.source, Some("192.0.2.9".parse().unwrap()));
        assert_eq!(&f[..6], &MAC);
        assert_eq!(f[6] & 1, 0, "unicast source MAC");
        let ip = &f[22..42];
        assert_eq!(&ip[16..20], &[10, 77, 0, 1]);
        assert!(ip_ok(ip), "IPv4 header checksum");
    }

    #[test]
    fn later_fragments_and_ipv6_are_aimed_too() {
        let udp = L4::Udp {
            sport: 1,
            dport: 53,
            payload: vec![1; 40],
        };
        let later = V4Opts {
            frag: 100,
            ..Default::default()
        };
        let mut f = frame(
            &[],
            ipv4(
                "192.0.2.9".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
                &later,
                &udp,
            ),
        );
        aim(&mut f, MAC, sf().0, sf().1);
        assert_eq!(&f[30..34], &[10, 77, 0, 1]);
        assert!(ip_ok(&f[14..34]));
        let mut f6 = frame(
            &[],
            ipv6(
                "2001:db8::9".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
                &[Ext::options(EXT_HOPOPTS, 1)],
                &udp,
            ),
        );
        let a = aim(&mut f6, MAC, sf().0, sf().1);
        assert_eq!(a.source, Some("2001:db8::9".parse().unwrap()));
        assert_eq!(&f6[38..54], &sf().1.octets());
    }

    #[test]
    fn incremental_checksum_matches_a_full_recomputation() {
        let tcp = L4::Tcp {
            sport: 4000,
            dport: 80,
            flags: TCP_SYN,
        };
        let mut f = frame(
            &[],
            ipv4(
                "192.0.2.9".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
                &V4Opts::default(),
                &tcp,
            ),
        );
        // Give the TCP header a correct checksum first, then aim it.
        let tcp_sum = |f: &[u8]| {
            let mut pseudo = f[26..34].to_vec();
            pseudo.extend([0, 6, 0, 20]);
            pseudo.extend(&f[34..54]);
            let sum: u32 = pseudo
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
                .sum();
            let folded = (sum & 0xffff) + (sum >> 16);
            !((folded + (folded >> 16)) as u16)
        };
        let s = tcp_sum(&f);
        f[50..52].copy_from_slice(&s.to_be_bytes());
        assert_eq!(tcp_sum(&f), 0);
        aim(&mut f, MAC, sf().0, sf().1);
        assert_eq!(tcp_sum(&f), 0, "TCP checksum still valid after the rewrite");
    }
}
