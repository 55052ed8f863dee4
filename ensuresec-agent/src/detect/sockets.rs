//! Connections held open per remote address, from the kernel's socket tables
//! (`/proc/net/tcp`, `/proc/net/tcp6`): the slowloris signal, which XDP
//! cannot see because each connection is well-formed and slow.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ensuresec_common::entry::normalize_addr;

/// TCP states that hold a server's resources: established and half-open
/// (SYN received; with SYN cookies these do not appear).
const ESTABLISHED: u8 = 0x01;
const SYN_RECV: u8 = 0x03;

fn hex_v4(h: &str) -> Option<Ipv4Addr> {
    let n = u32::from_str_radix(h, 16).ok()?;
    // The kernel prints the address as a host-order u32 of network-order bytes.
    Some(Ipv4Addr::from(n.to_le_bytes()))
}

fn hex_v6(h: &str) -> Option<Ipv6Addr> {
    if h.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let word = u32::from_str_radix(&h[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

fn endpoint(field: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let addr = match addr.len() {
        8 => IpAddr::V4(hex_v4(addr)?),
        32 => IpAddr::V6(hex_v6(addr)?),
        _ => return None,
    };
    Some((normalize_addr(addr), port))
}

/// Connections per remote address in one socket table's text, counting only
/// those whose local address `keep` accepts.
pub fn count(table: &str, keep: impl Fn(IpAddr) -> bool, out: &mut HashMap<IpAddr, u32>) {
    for line in table.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(local), Some(remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(state) = u8::from_str_radix(state, 16) else {
            continue;
        };
        if state != ESTABLISHED && state != SYN_RECV {
            continue;
        }
        let (Some((local, _)), Some((remote, _))) = (endpoint(local), endpoint(remote)) else {
            continue;
        };
        if keep(local) {
            *out.entry(remote).or_default() += 1;
        }
    }
}

/// Connections per remote address to local addresses `keep` accepts.
pub fn connections(keep: impl Fn(IpAddr) -> bool) -> HashMap<IpAddr, u32> {
    let mut out = HashMap::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            count(&text, &keep, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 01004D0A:0050 06424D0A:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 01004D0A:0050 06424D0A:A1B3 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 01004D0A:0050 0A014D0A:C000 03 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 30 10 -1
   4: 01004D0A:0050 0A014D0A:C001 06 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:1F90 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn counts_established_and_half_open_per_remote() {
        let mut out = HashMap::new();
        let lab: ensuresec_common::entry::Target = "10.77.0.0/16".parse().unwrap();
        count(TCP, |a| lab.contains(a), &mut out);
        assert_eq!(out.get(&"10.77.66.6".parse().unwrap()), Some(&2));
        // SYN_RECV counts, TIME_WAIT (06) does not, loopback is not protected.
        assert_eq!(out.get(&"10.77.1.10".parse().unwrap()), Some(&1));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn parses_ipv6_and_mapped_addresses() {
        let v6 =
            "  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000600A8C0:9C40 01 0
   1: 000077FD000000000000000001000000:0050 000077FD000000000000000010000100:9C41 01 0
";
        let mut out = HashMap::new();
        count(v6, |_| true, &mut out);
        assert_eq!(
            out.get(&"192.168.0.6".parse().unwrap()),
            Some(&1),
            "{out:?}"
        );
        assert_eq!(out.get(&"fd77::1:10".parse().unwrap()), Some(&1), "{out:?}");
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let mut out = HashMap::new();
        count(
            "header\nnot a socket line\n 1: zz:zz yy:yy 01\n",
            |_| true,
            &mut out,
        );
        assert!(out.is_empty());
    }
}
