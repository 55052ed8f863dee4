//! Which side of each conversation a replay keeps.
//!
//! A capture taken at a client holds both sides of its connections. Aimed at
//! the storefront as it is, the server's answers would arrive there unasked:
//! a stream of unsolicited responses that no shop receives from a visitor.
//! So the storefront plays the answering side itself, and a replay sends
//! only what the side that opened each conversation sent. Conversations
//! whose opening the capture does not hold (reflected answers seen at their
//! victim, SYN-ACKs to a spoofed address, a stream caught halfway) keep every
//! frame, as before.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::aim::{ICMP, ICMPV6, TCP, UDP, locate};
use crate::packet::{TCP_ACK, TCP_SYN};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct End {
    addr: IpAddr,
    port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Conversation {
    proto: u8,
    low: End,
    high: End,
}

/// What one frame says about its conversation.
#[derive(Clone, Copy, Debug)]
struct Packet {
    conversation: Conversation,
    sender: End,
    receiver: End,
    /// A TCP SYN without ACK: its sender opened the connection.
    opens: bool,
    /// An ICMP error: it answers something its sender received.
    error: bool,
    /// Source, destination and identification of a fragment.
    fragment: Option<(IpAddr, IpAddr, u32)>,
    /// A fragment after the first: no ports; it goes where its first went.
    later: bool,
}

fn packet(frame: &[u8]) -> Option<Packet> {
    let at = locate(frame)?;
    let (sport, dport, opens, error) = match (at.proto, at.l4, at.ports(frame)) {
        (TCP, Some(l4), Some((s, d))) => {
            let flags = *frame.get(l4 + 13)?;
            (s, d, flags & (TCP_SYN | TCP_ACK) == TCP_SYN, false)
        }
        (UDP, _, Some((s, d))) => (s, d, false, false),
        // Destination unreachable, source quench, redirect, time exceeded,
        // parameter problem.
        (ICMP, Some(l4), _) => (
            0,
            0,
            false,
            matches!(frame.get(l4).copied(), Some(3 | 4 | 5 | 11 | 12)),
        ),
        // Unreachable, packet too big, time exceeded, parameter problem.
        (ICMPV6, Some(l4), _) => (0, 0, false, matches!(frame.get(l4).copied(), Some(1..=4))),
        _ => (0, 0, false, false),
    };
    let sender = End {
        addr: at.src,
        port: sport,
    };
    let receiver = End {
        addr: at.dst,
        port: dport,
    };
    Some(Packet {
        conversation: Conversation {
            proto: at.proto,
            low: sender.min(receiver),
            high: sender.max(receiver),
        },
        sender,
        receiver,
        opens,
        error,
        fragment: at.fragment.map(|id| (at.src, at.dst, id)),
        later: at.l4.is_none(),
    })
}

/// The end that opened each conversation whose opening the capture holds:
/// the sender of a TCP SYN; for other protocols, whichever end spoke first.
fn openers(packets: &[Option<Packet>]) -> HashMap<Conversation, End> {
    let mut openers = HashMap::new();
    for p in packets.iter().flatten().filter(|p| !p.later && !p.error) {
        if p.conversation.proto == TCP {
            if p.opens {
                openers.entry(p.conversation).or_insert(p.sender);
            }
        } else {
            openers.entry(p.conversation).or_insert(p.sender);
        }
    }
    openers
}

/// For each frame (Ethernet, or `None` where there is none), whether it
/// answers a conversation whose opening side the capture also holds, and so
/// is left out of a replay. An ICMP error answers when the capture holds
/// traffic towards its sender from its receiver; a later fragment goes with
/// its first fragment.
pub fn answers<'a>(frames: impl Iterator<Item = Option<&'a [u8]>>) -> Vec<bool> {
    let packets: Vec<Option<Packet>> = frames.map(|f| f.and_then(packet)).collect();
    let openers = openers(&packets);
    let towards: HashSet<(IpAddr, IpAddr)> = packets
        .iter()
        .flatten()
        .map(|p| (p.sender.addr, p.receiver.addr))
        .collect();
    let answer = |p: &Packet| {
        if p.error {
            return towards.contains(&(p.receiver.addr, p.sender.addr));
        }
        openers
            .get(&p.conversation)
            .is_some_and(|opener| *opener != p.sender)
    };
    let mut fragments: HashMap<(IpAddr, IpAddr, u32), bool> = HashMap::new();
    let mut out: Vec<bool> = packets
        .iter()
        .map(|p| match p {
            Some(p) if !p.later => {
                let a = answer(p);
                if let Some(id) = p.fragment {
                    fragments.insert(id, a);
                }
                a
            }
            _ => false,
        })
        .collect();
    for (o, p) in out.iter_mut().zip(&packets) {
        if let Some(p) = p.filter(|p| p.later) {
            *o = p.fragment.and_then(|id| fragments.get(&id)).copied() == Some(true);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::packet::*;

    fn v4(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
        let l4 = L4::Tcp {
            sport,
            dport,
            flags,
        };
        frame(&[], ipv4(v4(src), v4(dst), &V4Opts::default(), &l4))
    }

    fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        let l4 = L4::Udp {
            sport,
            dport,
            payload: vec![7; 32],
        };
        frame(&[], ipv4(v4(src), v4(dst), &V4Opts::default(), &l4))
    }

    fn run(frames: &[Vec<u8>]) -> Vec<bool> {
        answers(frames.iter().map(|f| Some(f.as_slice())))
    }

    const TCP_RST_FLAG: u8 = 0x04;
    const C: &str = "192.0.2.10";
    const S: &str = "198.51.100.80";

    #[test]
    fn a_client_capture_keeps_the_client_and_leaves_out_the_server() {
        let frames = [
            tcp(C, 51000, S, 80, TCP_SYN),
            tcp(S, 80, C, 51000, TCP_SYN | TCP_ACK),
            tcp(C, 51000, S, 80, TCP_ACK),
            tcp(C, 51000, S, 80, TCP_ACK | TCP_PSH),
            tcp(S, 80, C, 51000, TCP_ACK | TCP_PSH),
            udp(C, 40000, S, 53),
            udp(S, 53, C, 40000),
        ];
        assert_eq!(run(&frames), [false, true, false, false, true, false, true]);
    }

    #[test]
    fn reflected_answers_seen_at_their_victim_are_all_kept() {
        // Answers from service ports, SYN-ACKs to a spoofed address, and the
        // victim's own resets: no opening in the capture, nothing left out.
        let frames = [
            udp("203.0.113.1", 161, C, 40001),
            udp("203.0.113.2", 161, C, 40002),
            tcp("203.0.113.3", 443, C, 40003, TCP_SYN | TCP_ACK),
            tcp(C, 40003, "203.0.113.3", 443, TCP_RST_FLAG),
        ];
        assert_eq!(run(&frames), [false; 4]);
    }

    #[test]
    fn icmp_errors_answer_only_what_came_their_way() {
        let unreachable = |src: &str, dst: &str| {
            let mut bytes = vec![0; 36];
            bytes[..2].copy_from_slice(&[3, 3]);
            let l4 = L4::Raw { proto: 1, bytes };
            frame(&[], ipv4(v4(src), v4(dst), &V4Opts::default(), &l4))
        };
        let frames = [
            udp("203.0.113.1", 161, C, 40001),
            unreachable(C, "203.0.113.1"),
            unreachable("203.0.113.9", C),
        ];
        assert_eq!(run(&frames), [false, true, false]);
    }

    #[test]
    fn a_later_fragment_goes_with_its_first_and_non_ip_frames_stay() {
        let (first, later) = udp_fragments(53, 40000, 9, 1400);
        let frames = [
            udp(C, 40000, S, 53),
            ipv4_fragment(v4(S), v4(C), 0x2000, 77, &first),
            ipv4_fragment(v4(S), v4(C), 185, 77, &later),
            ethernet(&[], ETH_P_ARP),
        ];
        assert_eq!(run(&frames), [false, true, true, false]);
        assert_eq!(answers([None].into_iter()), [false]);
    }
}
