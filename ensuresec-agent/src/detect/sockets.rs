//! Established connections per remote address to this host's listening
//! ports, from the kernel's socket table through netlink `sock_diag` (the
//! interface `ss` uses): the slowloris signal, which XDP cannot see because
//! each connection is well-formed and slow. The kernel filters by state; a
//! dump of 100,000 sockets is binary records, not 15 MB of text to parse.
//! Connections this host opened (to a payment API, a database) are outbound
//! and never counted: their local port is not a listening one.

use std::{
    collections::{HashMap, HashSet},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use ensuresec_common::entry::normalize_addr;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;

/// One socket as `sock_diag` reports it: (local, remote) address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
}

/// `struct inet_diag_req_v2` after the netlink header.
fn request(family: u8, states: u32) -> Vec<u8> {
    let mut body = vec![0u8; 56];
    body[0] = family;
    body[1] = libc::IPPROTO_TCP as u8;
    body[4..8].copy_from_slice(&states.to_ne_bytes());
    let len = 16 + body.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend((len as u32).to_ne_bytes());
    msg.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend(1u32.to_ne_bytes()); // sequence
    msg.extend(0u32.to_ne_bytes()); // port id: the kernel's
    msg.extend(body);
    msg
}

/// Parses one `struct inet_diag_msg`.
fn parse_msg(b: &[u8]) -> Option<Socket> {
    if b.len() < 72 {
        return None;
    }
    let family = b[0];
    let sport = u16::from_be_bytes([b[4], b[5]]);
    let dport = u16::from_be_bytes([b[6], b[7]]);
    let addr = |at: usize| -> Option<IpAddr> {
        let bytes: [u8; 16] = b[at..at + 16].try_into().ok()?;
        Some(match family as i32 {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
            libc::AF_INET6 => normalize_addr(IpAddr::V6(Ipv6Addr::from(bytes))),
            _ => return None,
        })
    };
    Some(Socket {
        local: (addr(8)?, sport),
        remote: (addr(24)?, dport),
    })
}

/// Splits a netlink reply into messages; `None` at the end of the dump.
fn parse_reply(buf: &[u8], out: &mut Vec<Socket>) -> io::Result<bool> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
        if len < 16 || at + len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated sock_diag message",
            ));
        }
        match kind {
            NLMSG_DONE => return Ok(false),
            NLMSG_ERROR => {
                let errno = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                return Err(io::Error::from_raw_os_error(-errno));
            }
            _ => out.extend(parse_msg(&buf[at + 16..at + len])),
        }
        at += len.next_multiple_of(4);
    }
    Ok(true)
}

/// Every TCP socket of `family` in one of `states` (a bitmask of TCP states).
fn dump(family: u8, states: u32) -> io::Result<Vec<Socket>> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let msg = request(family, states);
    // SAFETY: sending our buffer on our socket (to the kernel: no address).
    let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receiving into our buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 || !parse_reply(&buf[..n as usize], &mut out)? {
            return Ok(out);
        }
    }
}

/// The established connections among `sockets` that are inbound: their
/// local port is one of `listening`.
pub fn inbound(sockets: Vec<Socket>, listening: &HashSet<u16>) -> Vec<Socket> {
    sockets
        .into_iter()
        .filter(|s| listening.contains(&s.local.1))
        .collect()
}

/// Connections per remote address among `sockets`, to local addresses
/// `keep` accepts.
pub fn per_remote(sockets: &[Socket], keep: impl Fn(IpAddr) -> bool) -> HashMap<IpAddr, u32> {
    let mut out = HashMap::new();
    for s in sockets.iter().filter(|s| keep(s.local.0)) {
        *out.entry(s.remote.0).or_default() += 1;
    }
    out
}

/// Every established inbound TCP connection of this network namespace.
pub fn inbound_sockets() -> io::Result<Vec<Socket>> {
    let mut listening = HashSet::new();
    let mut established = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        listening.extend(dump(family, 1 << TCP_LISTEN)?.iter().map(|s| s.local.1));
        established.extend(dump(family, 1 << TCP_ESTABLISHED)?);
    }
    Ok(inbound(established, &listening))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(local: &str, lport: u16, remote: &str, rport: u16) -> Socket {
        Socket {
            local: (local.parse().unwrap(), lport),
            remote: (remote.parse().unwrap(), rport),
        }
    }

    #[test]
    fn counts_inbound_connections_to_listening_ports_only() {
        let sockets = [
            s("10.77.0.1", 80, "10.77.66.6", 40000),
            s("10.77.0.1", 80, "10.77.66.6", 40001),
            // The host's own pool to an upstream: local port ephemeral.
            s("10.77.0.1", 51000, "10.77.5.5", 443),
            s("10.77.0.1", 51001, "10.77.5.5", 443),
            // Loopback is not protected.
            s("127.0.0.1", 80, "127.0.0.1", 50000),
        ];
        let listening: HashSet<u16> = [80].into();
        let lab: ensuresec_common::entry::Target = "10.77.0.0/16".parse().unwrap();
        let got = per_remote(&inbound(sockets.to_vec(), &listening), |a| lab.contains(a));
        assert_eq!(got.get(&"10.77.66.6".parse().unwrap()), Some(&2));
        assert_eq!(got.len(), 1, "{got:?}");
    }

    #[test]
    fn parses_the_kernels_records() {
        // An inet_diag_msg for 10.0.0.1:80 <- 10.0.0.2:40000, IPv4.
        let mut b = vec![0u8; 72];
        b[0] = libc::AF_INET as u8;
        b[4..6].copy_from_slice(&80u16.to_be_bytes());
        b[6..8].copy_from_slice(&40000u16.to_be_bytes());
        b[8..12].copy_from_slice(&[10, 0, 0, 1]);
        b[24..28].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(parse_msg(&b), Some(s("10.0.0.1", 80, "10.0.0.2", 40000)));
        assert_eq!(parse_msg(&b[..40]), None, "short records are skipped");
    }

    #[test]
    fn reads_this_hosts_socket_table() {
        // A listener and a connection to it, on loopback, in this process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _server = listener.accept().unwrap();
        let counts = per_remote(&inbound_sockets().unwrap(), |a| a.is_loopback());
        assert!(
            counts
                .get(&"127.0.0.1".parse().unwrap())
                .copied()
                .unwrap_or(0)
                >= 1,
            "{counts:?}"
        );
    }
}
