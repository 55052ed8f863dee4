//! Captures for `cargo xtask replay`: read pcap or pcapng (any of the common
//! link types), turn every frame into Ethernet, and aim it at the storefront
//! (destination MAC and IP rewritten, checksums fixed), whatever VLAN tags,
//! IPv6 extension headers or fragments it carries.

use std::{
    collections::HashSet,
    io::Read,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter},
    pcapng::{Block, PcapNgReader},
};

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub time: Duration,
    pub link: DataLink,
    pub data: Vec<u8>,
}

/// Reads a pcap or pcapng file (told apart by its magic number).
pub fn read(path: &Path) -> Result<Vec<Frame>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .read_to_end(&mut bytes)?;
    parse(&bytes).with_context(|| format!("reading {}", path.display()))
}

pub fn parse(bytes: &[u8]) -> Result<Vec<Frame>> {
    let magic = bytes.get(..4).context("shorter than any capture header")?;
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        return parse_pcapng(bytes);
    }
    let mut reader = PcapReader::new(bytes).context("not a pcap or pcapng file")?;
    let link = reader.header().datalink;
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p?;
        out.push(Frame {
            time: p.timestamp,
            link,
            data: p.data.into_owned(),
        });
    }
    Ok(out)
}

fn parse_pcapng(bytes: &[u8]) -> Result<Vec<Frame>> {
    let mut reader = PcapNgReader::new(bytes)?;
    let mut out = Vec::new();
    let mut last = Duration::ZERO;
    while let Some(block) = reader.next_block() {
        let block = block?;
        let (iface, time, data) = match block {
            Block::EnhancedPacket(p) => (p.interface_id, p.timestamp, p.data.into_owned()),
            Block::SimplePacket(p) => (0, last, p.data.into_owned()),
            _ => continue,
        };
        let link = reader
            .interfaces()
            .get(iface as usize)
            .map(|i| i.linktype)
            .context("packet on an undeclared interface")?;
        last = time;
        out.push(Frame { time, link, data });
    }
    Ok(out)
}

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

fn by_version(payload: &[u8]) -> Option<Vec<u8>> {
    match payload.first()? >> 4 {
        4 => Some(ethernet(ETH_P_IPV4, payload)),
        6 => Some(ethernet(ETH_P_IPV6, payload)),
        _ => None,
    }
}

/// The frame as Ethernet; `None` for link types that carry no IP we can find.
pub fn to_ethernet(f: &Frame) -> Option<Vec<u8>> {
    let d = &f.data;
    match f.link {
        DataLink::ETHERNET => Some(d.clone()),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => by_version(d),
        // 4-byte address family, in host (NULL) or network (LOOP) order.
        DataLink::NULL | DataLink::LOOP => by_version(d.get(4..)?),
        // Linux cooked capture: 16-byte header, protocol in bytes 14..16.
        DataLink::LINUX_SLL => {
            let proto = u16::from_be_bytes([*d.get(14)?, *d.get(15)?]);
            Some(ethernet(proto, d.get(16..)?))
        }
        // Version 2: 20-byte header, protocol first.
        DataLink::LINUX_SLL2 => {
            let proto = u16::from_be_bytes([*d.first()?, *d.get(1)?]);
            Some(ethernet(proto, d.get(20..)?))
        }
        _ => None,
    }
}

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
        6 => Some((l4 + 16, false)),
        17 => Some((l4 + 6, v4)),
        58 => Some((l4 + 2, false)),
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
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) && frame.len() >= off + 6 {
        off += 4;
        ethertype = u16::from_be_bytes([frame[off], frame[off + 1]]);
    }
    let ip = off + 2;
    match ethertype {
        ETH_P_IPV4 if frame.len() >= ip + 20 && frame[ip] >> 4 == 4 => {
            let src = Ipv4Addr::new(
                frame[ip + 12],
                frame[ip + 13],
                frame[ip + 14],
                frame[ip + 15],
            );
            let old: [u8; 4] = frame[ip + 16..ip + 20].try_into().expect("4 bytes");
            let new = v4.octets();
            frame[ip + 16..ip + 20].copy_from_slice(&new);
            patch_sum(frame, ip + 10, &old, &new, false);
            let ihl = (frame[ip] & 0x0f) as usize * 4;
            let offset = u16::from_be_bytes([frame[ip + 6], frame[ip + 7]]) & 0x1fff;
            // Only the first fragment holds the transport header.
            if offset == 0
                && let Some((at, zero)) = l4_checksum(frame[ip + 9], ip + ihl, true)
            {
                patch_sum(frame, at, &old, &new, zero);
            }
            Aimed {
                source: Some(IpAddr::V4(src)),
            }
        }
        ETH_P_IPV6 if frame.len() >= ip + 40 && frame[ip] >> 4 == 6 => {
            let src: [u8; 16] = frame[ip + 8..ip + 24].try_into().expect("16 bytes");
            let old: [u8; 16] = frame[ip + 24..ip + 40].try_into().expect("16 bytes");
            let new = v6.octets();
            frame[ip + 24..ip + 40].copy_from_slice(&new);
            // Walk extension headers to the transport header, if any.
            let (mut next, mut at) = (frame[ip + 6], ip + 40);
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 | 51 | 44 if frame.len() >= at + 8 => {
                        if next == 44
                            && u16::from_be_bytes([frame[at + 2], frame[at + 3]]) & 0xfff8 != 0
                        {
                            next = 59; // a later fragment: no transport header
                            break;
                        }
                        let len = match next {
                            44 => 8,
                            51 => (frame[at + 1] as usize + 2) * 4,
                            _ => (frame[at + 1] as usize + 1) * 8,
                        };
                        next = frame[at];
                        at += len;
                    }
                    _ => break,
                }
            }
            if let Some((sum_at, _)) = l4_checksum(next, at, false) {
                patch_sum(frame, sum_at, &old, &new, false);
            }
            Aimed {
                source: Some(IpAddr::V6(src.into())),
            }
        }
        _ => Aimed { source: None },
    }
}

/// What `prepare` wrote.
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    pub packets: usize,
    pub sources: usize,
    /// Frames of link types with no IP we know how to find.
    pub skipped: usize,
}

/// Reads `input`, aims every frame at the storefront and writes an Ethernet
/// pcap (with the original timing) for tcpreplay.
pub fn prepare(
    input: &Path,
    output: &Path,
    mac: [u8; 6],
    v4: Ipv4Addr,
    v6: Ipv6Addr,
) -> Result<Prepared> {
    let frames = read(input)?;
    if frames.is_empty() {
        bail!("{} holds no packets", input.display());
    }
    let file = std::fs::File::create(output)?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        snaplen: 262_144,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(std::io::BufWriter::new(file), header)?;
    let mut sources = HashSet::new();
    let mut out = Prepared::default();
    for f in &frames {
        let Some(mut eth) = to_ethernet(f) else {
            out.skipped += 1;
            continue;
        };
        if let Some(src) = aim(&mut eth, mac, v4, v6).source {
            sources.insert(src);
        }
        writer.write_packet(&PcapPacket::new(f.time, eth.len() as u32, &eth))?;
        out.packets += 1;
    }
    out.sources = sources.len();
    Ok(out)
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

    #[test]
    fn cooked_and_raw_captures_become_ethernet() {
        let udp = L4::Udp {
            sport: 1,
            dport: 53,
            payload: vec![],
        };
        let ip = ipv4(
            "192.0.2.9".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            &V4Opts::default(),
            &udp,
        );
        let mut sll = vec![0u8; 14];
        sll.extend(0x0800u16.to_be_bytes());
        sll.extend(&ip);
        let f = Frame {
            time: Duration::ZERO,
            link: DataLink::LINUX_SLL,
            data: sll,
        };
        assert_eq!(to_ethernet(&f).unwrap()[14..], ip[..]);
        let raw = Frame {
            time: Duration::ZERO,
            link: DataLink::RAW,
            data: ip.clone(),
        };
        assert_eq!(
            u16::from_be_bytes([
                to_ethernet(&raw).unwrap()[12],
                to_ethernet(&raw).unwrap()[13]
            ]),
            0x0800
        );
        let other = Frame {
            time: Duration::ZERO,
            link: DataLink::IEEE802_11,
            data: ip,
        };
        assert!(to_ethernet(&other).is_none());
    }

    #[test]
    fn garbage_is_an_error_that_says_so() {
        let e = parse(b"not a capture at all").unwrap_err();
        assert!(format!("{e:#}").contains("not a pcap"), "{e:#}");
    }
}
