//! Whether a packet answers a socket of this host, reaches a listener, or
//! reaches nobody: the kernel's own socket lookup, asked only for packets
//! that would otherwise count as evidence (SYN-ACKs, and UDP that is not a
//! request to a served port). Replies to connections the host opened (a pool
//! to a payment API, queries to a resolver) are never evidence of a scan, a
//! reflection or a flood; UDP that reaches nobody was asked for by nobody.

use aya_ebpf::{
    bindings::{
        BPF_F_CURRENT_NETNS, BPF_TCP_LISTEN, bpf_sock_tuple,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2,
    },
    helpers::generated::{bpf_sk_lookup_tcp, bpf_sk_lookup_udp, bpf_sk_release},
    programs::XdpContext,
};

use ensuresec_common::features::AddrKey;

use crate::parse::{Ip, Parsed, Transport};

/// What a packet's socket lookup found.
pub const NOBODY: u32 = 0;
/// A listening TCP socket, or a UDP socket with no peer: a service.
pub const LISTENER: u32 = 1;
/// A connected socket: the packet answers something this host sent.
pub const REPLY: u32 = 2;

/// Whether the packet answers a connected socket of this host.
#[inline(always)]
pub fn answers_a_socket(ctx: &XdpContext, p: &Parsed) -> bool {
    lookup(ctx, p) == REPLY
}

/// `NOBODY`, `LISTENER` or `REPLY`. A subprogram of its own: the tuple would
/// not fit in the caller's frame.
#[inline(never)]
pub fn lookup(ctx: &XdpContext, p: &Parsed) -> u32 {
    let t = &p.transport;
    // SAFETY: zeroes are a valid tuple.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = if p.ip.family == Ip::V4 {
        tuple.__bindgen_anon_1.ipv4 = bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
            saddr: p.ip.src_v4,
            daddr: p.ip.dst_v4,
            sport: t.sport.to_be(),
            dport: t.dport.to_be(),
        };
        core::mem::size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>()
    } else {
        let words = |a: &AddrKey| {
            let a = &a.0;
            let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        };
        tuple.__bindgen_anon_1.ipv6 = bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2 {
            saddr: words(&p.ip.src_v6),
            daddr: words(&p.ip.dst_v6),
            sport: t.sport.to_be(),
            dport: t.dport.to_be(),
        };
        core::mem::size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2>()
    };
    let tcp = t.kind == Transport::TCP;
    let netns = BPF_F_CURRENT_NETNS as u64;
    // SAFETY: the context is this program's; the tuple is ours; the socket
    // the lookup returns is released before returning.
    unsafe {
        let sk = if tcp {
            bpf_sk_lookup_tcp(ctx.ctx as *mut _, &mut tuple, size as u32, netns, 0)
        } else {
            bpf_sk_lookup_udp(ctx.ctx as *mut _, &mut tuple, size as u32, netns, 0)
        };
        if sk.is_null() {
            return NOBODY;
        }
        // A listener answers nothing; a connected UDP socket has a peer.
        let answers = if tcp {
            (*sk).state != BPF_TCP_LISTEN
        } else {
            (*sk).dst_port != 0
        };
        bpf_sk_release(sk as *mut _);
        if answers { REPLY } else { LISTENER }
    }
}
