//! Captures for `cargo xtask replay`: read pcap or pcapng (any of the common
//! link types), turn every frame into Ethernet, keep the side of each
//! conversation that opened it (`sides`), and aim it at the storefront
//! (`aim`: destination MAC and IP rewritten, checksums fixed), whatever VLAN
//! tags, IPv6 extension headers or fragments it carries.

pub mod access_log;
mod aim;
pub mod http;
mod sides;

pub use aim::{Aimed, Located, aim, locate};

use crate::packet::{ETH_P_IPV4, ETH_P_IPV6};
pub use sides::answers;

use std::{
    collections::HashSet,
    io::Read,
    net::{Ipv4Addr, Ipv6Addr},
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

/// What `prepare` wrote.
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    pub packets: usize,
    pub sources: usize,
    /// Frames of link types with no IP we know how to find.
    pub skipped: usize,
    /// Frames left out because they answer a conversation whose opening
    /// side the capture also holds: the storefront answers for itself.
    pub answers: usize,
    /// The capture time of the first frame written: the replay's start.
    pub start: Duration,
    /// The HTTP requests the capture holds (both sides read), for the
    /// access log a server at the storefront would write.
    pub requests: Vec<http::Request>,
}

/// Reads `input`, aims every frame that opens or continues a conversation
/// at the storefront (leaving out the other side's answers, see `sides`) and
/// writes an Ethernet pcap (with the original timing) for tcpreplay.
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
    let ethernet: Vec<Option<Vec<u8>>> = frames.iter().map(to_ethernet).collect();
    let answers = answers(ethernet.iter().map(|e| e.as_deref()));
    let timed = frames
        .iter()
        .zip(&ethernet)
        .filter_map(|(f, e)| Some((f.time, e.as_deref()?)));
    let mut out = Prepared {
        requests: http::requests(timed),
        ..Prepared::default()
    };
    for ((f, eth), answer) in frames.iter().zip(ethernet).zip(answers) {
        let Some(mut eth) = eth else {
            out.skipped += 1;
            continue;
        };
        if answer {
            out.answers += 1;
            continue;
        }
        if let Some(src) = aim(&mut eth, mac, v4, v6).source {
            sources.insert(src);
        }
        writer.write_packet(&PcapPacket::new(f.time, eth.len() as u32, &eth))?;
        if out.packets == 0 {
            out.start = f.time;
        }
        out.packets += 1;
    }
    out.sources = sources.len();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::*;

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
