//! The classes of a packet: what it is to the counters (a SYN, a reply, an
//! unsolicited answer, a probe), with the socket lookup that tells replies.

use super::*;

/// A probe to any port (TCP without ACK, UDP not from a service port, ICMP
/// echo or timestamp request); internal to the feature counts.
pub(super) const PROBE: u32 = 1 << 31;

/// ICMP and ICMPv6 requests that probe for a host: echo, timestamp.
#[inline(always)]
fn is_icmp_probe(p: &Parsed) -> bool {
    let kind = p.transport.flags;
    if p.ip.proto == IPPROTO_ICMP {
        kind == 8 || kind == 13
    } else {
        kind == 128
    }
}

/// The classes of a packet (`ensuresec_common::features::class`). The
/// socket lookup that tells a reply runs only for SYN-ACKs and for UDP that
/// is not a request to a served port from a client port.
#[inline(always)]
pub fn classes(ctx: &XdpContext, p: &Parsed) -> u32 {
    let t = &p.transport;
    let f = t.flags;
    let mut c = 0;
    if p.ip.fragment != 0 {
        c |= class::FRAGMENT;
    }
    let served = tracked_port(p) != 0;
    let untracked = |c: u32| {
        if served {
            c
        } else {
            c | class::PROBE_UNTRACKED
        }
    };
    match t.kind {
        Transport::TCP => {
            if f & (TCP_SYN | TCP_ACK) == TCP_SYN {
                c |= class::SYN;
            }
            if f & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK && !replies::answers_a_socket(ctx, p) {
                c |= class::SYNACK;
            }
            if t.payload == 0 && f & (TCP_SYN | TCP_FIN) == 0 && f & (TCP_ACK | TCP_RST) != 0 {
                c |= class::ACK_RST;
            }
            if f & TCP_ACK == 0 {
                c = untracked(c | PROBE);
            }
        }
        Transport::UDP => c |= udp_classes(ctx, p, served),
        Transport::ICMP => {
            c |= class::ICMP;
            if is_icmp_probe(p) {
                c |= class::ICMP_ECHO | PROBE;
            }
        }
        _ if p.ip.proto == IPPROTO_ICMP || p.ip.proto == IPPROTO_ICMPV6 => c |= class::ICMP,
        _ => {}
    }
    c
}

/// UDP: a reply to this host is nothing; from a service port (the prior: below
/// 1024 or a known amplifier's) it is unsolicited unless one of the host's
/// own client sockets listens where it lands; from a client port it is a
/// request (a probe when it reaches a port the host does not serve), and
/// also unsolicited when nobody listens where it lands: a reflected answer
/// from whatever port the abused service uses.
#[inline(always)]
fn udp_classes(ctx: &XdpContext, p: &Parsed, served: bool) -> u32 {
    let sport = p.transport.sport;
    let prior = sport < 1024 || is_reflector_port(sport);
    if !prior && served {
        // A request to a service of this host (DNS, QUIC): no lookup needed.
        return class::UDP | PROBE;
    }
    let found = replies::lookup(ctx, p);
    if found == replies::REPLY {
        return 0;
    }
    let mut c = class::UDP;
    // A socket of this host's own on a port it does not serve (a resolver's
    // or an NTP client's unconnected socket) asked for what comes from a
    // service port; on a served port, or where nobody listens, nobody did.
    if found == replies::NOBODY || (prior && served) {
        c |= class::UDP_SERVICE;
    }
    if !prior {
        c |= PROBE;
        if !served {
            c |= class::PROBE_UNTRACKED;
        }
    }
    c
}
