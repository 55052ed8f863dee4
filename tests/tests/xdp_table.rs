//! BPF_PROG_TEST_RUN tables: every packet class with its verdict and counter,
//! every truncation of every class, and random frames and mutations.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ensuresec_agent::edit::Op;
use ensuresec_common::{
    maps::Counter,
    ports::{PortRange, bitmap},
    reason::Reason,
};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
};
use proptest::{
    prelude::*,
    test_runner::{TestCaseError, TestRunner},
};

const CLEAN4: &str = "203.0.113.10";
const EXACT4: &str = "192.0.2.66";
const CIDR4: &str = "198.51.100.0/24";
const IN_CIDR4: &str = "198.51.100.77";
const ALLOWED_IN_CIDR4: &str = "198.51.100.7";
const EXPIRED4: &str = "192.0.2.99";
const CLEAN6: &str = "2001:db8:1::10";
const EXACT6: &str = "2001:db8::66";
const CIDR6: &str = "2001:db8:bad::/48";
const IN_CIDR6: &str = "2001:db8:bad:1::1";
const DST4: &str = "10.0.0.1";
const DST6: &str = "2001:db8:ffff::1";

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn tcp(dport: u16) -> L4 {
    L4::Tcp {
        sport: 40000,
        dport,
        flags: TCP_SYN,
    }
}
fn udp(dport: u16) -> L4 {
    L4::Udp {
        sport: 5353,
        dport,
        payload: b"hello".to_vec(),
    }
}

fn p4(src: &str, l4: L4) -> Vec<u8> {
    frame(&[], ipv4(v4(src), v4(DST4), &V4Opts::default(), &l4))
}
fn p6(src: &str, exts: &[Ext], l4: L4) -> Vec<u8> {
    frame(&[], ipv6(v6(src), v6(DST6), exts, &l4))
}

/// The lists every table runs against.
fn kernel_with_lists() -> Kernel {
    let k = Kernel::small().expect("load the XDP object");
    k.block(EXACT4).unwrap();
    k.block(CIDR4).unwrap();
    k.allow(ALLOWED_IN_CIDR4).unwrap();
    k.block(EXACT6).unwrap();
    k.block(CIDR6).unwrap();
    // Expired one nanosecond after boot: present in the map, never enforced.
    k.edit(
        EXPIRED4,
        Op::Block {
            expires_at_ns: 1,
            reason_id: 0,
            now_secs: 0,
        },
    )
    .unwrap();
    k
}

fn blocked(src: IpAddr) -> bool {
    let s = src.to_string();
    let in_cidr4 = matches!(src, IpAddr::V4(a) if a.octets()[..3] == [198, 51, 100]);
    let in_cidr6 = matches!(src, IpAddr::V6(a) if a.segments()[..3] == [0x2001, 0xdb8, 0xbad]);
    s != ALLOWED_IN_CIDR4 && (s == EXACT4 || s == EXACT6 || in_cidr4 || in_cidr6)
}

/// One run: the verdict, and which counter moved (exactly one must, by one).
fn run_counted(k: &Kernel, f: &[u8]) -> (u32, Reason) {
    let before = k.counters().unwrap();
    let verdict = k.run("ensuresec", f).unwrap();
    let after = k.counters().unwrap();
    let moved: Vec<(Reason, &Counter, &Counter)> = Reason::ALL
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| b != a)
        .map(|(r, (b, a))| (*r, b, a))
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "exactly one counter moves per packet: {moved:?}"
    );
    let (reason, b, a) = moved[0];
    assert_eq!(a.packets - b.packets, 1);
    assert_eq!(
        a.bytes - b.bytes,
        f.len() as u64,
        "bytes counted for {reason:?}"
    );
    (verdict, reason)
}

fn cases() -> Vec<(&'static str, Vec<u8>, Reason)> {
    use Reason::*;
    let mut arp = ethernet(&[], ETH_P_ARP);
    arp.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend([0u8; 20]);
    let mut lldp = ethernet(&[], ETH_P_LLDP);
    lldp.extend([0x02, 0x07, 0x04, 0, 0, 0, 0, 0, 1]);
    let opts = V4Opts {
        options: vec![1, 1, 1, 0, 0x94, 4, 0, 0, 7, 7, 4, 10, 0, 0, 1, 0],
        ..Default::default()
    };
    let first_frag = V4Opts {
        frag: 0x2000,
        ..Default::default()
    };
    let later_frag = V4Opts {
        frag: 0x2000 | 185,
        ..Default::default()
    };
    let mut bad_version = p4(CLEAN4, tcp(80));
    bad_version[14] = 0x65;
    let mut short_ihl = p4(CLEAN4, tcp(80));
    short_ihl[14] = 0x43;
    let mut short_total = p4(CLEAN4, tcp(80));
    short_total[16..18].copy_from_slice(&12u16.to_be_bytes());
    let mut blocked_short_ihl = p4(EXACT4, tcp(80));
    blocked_short_ihl[14] = 0x43;
    let mut bad_doff = p4(CLEAN4, tcp(80));
    bad_doff[14 + 20 + 12] = 3 << 4;
    let mut bad_v6 = p6(CLEAN6, &[], tcp(80));
    bad_v6[14] = 0x40;
    let nine_exts: Vec<Ext> = (0..9).map(|_| Ext::options(EXT_DSTOPTS, 1)).collect();
    let three_tags = frame(
        &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2), (ETH_P_8021Q, 3)],
        ipv4(v4(CLEAN4), v4(DST4), &V4Opts::default(), &tcp(80)),
    );
    let esp = L4::Raw {
        proto: 50,
        bytes: vec![0, 0, 1, 0, 0, 0, 0, 1, 0xde, 0xad],
    };
    let gre = L4::Raw {
        proto: 47,
        bytes: vec![0, 0, 0x08, 0],
    };
    let opt4 = |src: &str, o: &V4Opts, l4: L4| frame(&[], ipv4(v4(src), v4(DST4), o, &l4));
    vec![
        ("ipv4 tcp", p4(CLEAN4, tcp(443)), Passed),
        ("ipv4 udp", p4(CLEAN4, udp(53)), Passed),
        ("ipv4 icmp", p4(CLEAN4, L4::IcmpEcho), Passed),
        ("ipv4 with options", opt4(CLEAN4, &opts, tcp(80)), Passed),
        (
            "ipv4 first fragment",
            opt4(CLEAN4, &first_frag, udp(53)),
            Passed,
        ),
        (
            "ipv4 later fragment",
            opt4(CLEAN4, &later_frag, udp(53)),
            Fragment,
        ),
        (
            "ipv4 later fragment, blocked",
            opt4(EXACT4, &later_frag, udp(53)),
            BlockedExact,
        ),
        ("ipv4 esp", p4(CLEAN4, esp.clone()), OtherProtocol),
        ("ipv4 gre", p4(CLEAN4, gre), OtherProtocol),
        ("ipv4 blocked exact", p4(EXACT4, tcp(80)), BlockedExact),
        ("ipv4 blocked prefix", p4(IN_CIDR4, udp(123)), BlockedCidr),
        (
            "ipv4 allow beats prefix block",
            p4(ALLOWED_IN_CIDR4, tcp(80)),
            Allowlisted,
        ),
        ("ipv4 expired block", p4(EXPIRED4, tcp(80)), Passed),
        ("ipv4 bad version", bad_version, BadIpv4Header),
        ("ipv4 ihl below 5", short_ihl, BadIpv4Header),
        ("ipv4 ihl below 5, blocked", blocked_short_ihl, BlockedExact),
        ("ipv4 total length below ihl", short_total, BadIpv4Header),
        ("tcp data offset below 5", bad_doff, BadTcpHeader),
        ("ipv6 tcp", p6(CLEAN6, &[], tcp(443)), Passed),
        ("ipv6 udp", p6(CLEAN6, &[], udp(53)), Passed),
        ("ipv6 icmpv6", p6(CLEAN6, &[], L4::Icmpv6Echo), Passed),
        (
            "ipv6 extension chain",
            p6(
                CLEAN6,
                &[
                    Ext::options(EXT_HOPOPTS, 1),
                    Ext::options(EXT_DSTOPTS, 2),
                    Ext::options(EXT_ROUTING, 1),
                    Ext::ah(),
                ],
                tcp(80),
            ),
            Passed,
        ),
        (
            "ipv6 first fragment",
            p6(CLEAN6, &[Ext::fragment(0, true)], udp(53)),
            Passed,
        ),
        (
            "ipv6 later fragment",
            p6(CLEAN6, &[Ext::fragment(100, false)], udp(53)),
            Fragment,
        ),
        (
            "ipv6 later fragment, blocked",
            p6(IN_CIDR6, &[Ext::fragment(100, false)], udp(53)),
            BlockedCidr,
        ),
        ("ipv6 esp", p6(CLEAN6, &[], esp), OtherProtocol),
        (
            "ipv6 nine extension headers",
            p6(CLEAN6, &nine_exts, tcp(80)),
            TooManyIpv6Ext,
        ),
        ("ipv6 blocked exact", p6(EXACT6, &[], tcp(80)), BlockedExact),
        (
            "ipv6 blocked prefix",
            p6(IN_CIDR6, &[], tcp(80)),
            BlockedCidr,
        ),
        ("ipv6 bad version", bad_v6, BadIpv6Header),
        (
            "802.1q ipv4",
            frame(
                &[(ETH_P_8021Q, 10)],
                ipv4(v4(CLEAN4), v4(DST4), &V4Opts::default(), &tcp(80)),
            ),
            Passed,
        ),
        (
            "qinq ipv6 blocked",
            frame(
                &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 10)],
                ipv6(v6(EXACT6), v6(DST6), &[], &tcp(80)),
            ),
            BlockedExact,
        ),
        ("three vlan tags", three_tags, TooManyVlans),
        ("arp", arp, NonIp),
        ("lldp", lldp, NonIp),
    ]
}

#[test]
fn every_packet_class_gets_its_verdict_and_counter() {
    let k = kernel_with_lists();
    for (name, f, want) in cases() {
        let (verdict, reason) = run_counted(&k, &f);
        assert_eq!(reason, want, "{name}: reason");
        let want_verdict = if want.drops() { XDP_DROP } else { XDP_PASS };
        assert_eq!(verdict, want_verdict, "{name}: verdict");
    }
}

#[test]
fn every_truncation_passes_unless_the_parsed_source_is_blocked() {
    let k = kernel_with_lists();
    for (name, f, _) in cases() {
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
        for len in 14..f.len() {
            let cut = &f[..len];
            let (verdict, reason) = run_counted(&k, cut);
            let src = reference_source(cut);
            let should_drop = src.is_some_and(blocked);
            assert_eq!(
                verdict == XDP_DROP,
                should_drop,
                "{name} cut at {len}: verdict {verdict}, reason {reason:?}, source {src:?}"
            );
            assert!(
                verdict == XDP_PASS || verdict == XDP_DROP,
                "{name} cut at {len}"
            );
        }
    }
}

#[test]
fn port_policy_drops_only_unlisted_ports() {
    let k = kernel_with_lists();
    let tcp_ports: Vec<PortRange> = ["22", "80", "443"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let udp_ports: Vec<PortRange> = ["53", "32768-60999"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    k.store
        .write()
        .unwrap()
        .set_port_policy(true, &bitmap(&tcp_ports), &bitmap(&udp_ports))
        .unwrap();
    let table = [
        (p4(CLEAN4, tcp(443)), Reason::Passed),
        (p4(CLEAN4, tcp(8080)), Reason::PortPolicy),
        (p4(CLEAN4, udp(53)), Reason::Passed),
        (p4(CLEAN4, udp(40000)), Reason::Passed),
        (p4(CLEAN4, udp(161)), Reason::PortPolicy),
        (
            p6(CLEAN6, &[Ext::options(EXT_HOPOPTS, 1)], tcp(22)),
            Reason::Passed,
        ),
        (p6(CLEAN6, &[], tcp(23)), Reason::PortPolicy),
        // Policy applies to TCP and UDP only; ICMP and allowlisted sources pass.
        (p4(CLEAN4, L4::IcmpEcho), Reason::Passed),
        (p4(ALLOWED_IN_CIDR4, tcp(8080)), Reason::Allowlisted),
        // A later fragment has no ports to check, and its first fragment
        // never passed here.
        (
            frame(
                &[],
                ipv4(
                    v4(CLEAN4),
                    v4(DST4),
                    &V4Opts {
                        frag: 100,
                        ..Default::default()
                    },
                    &udp(161),
                ),
            ),
            Reason::OrphanFragment,
        ),
    ];
    for (f, want) in table {
        assert_eq!(run_counted(&k, &f).1, want);
    }
    // Switching the policy off again passes everything it dropped.
    k.store
        .write()
        .unwrap()
        .set_port_policy(false, &bitmap(&tcp_ports), &bitmap(&udp_ports))
        .unwrap();
    assert_eq!(run_counted(&k, &p4(CLEAN4, tcp(8080))).1, Reason::Passed);
}

fn base_frames() -> Vec<Vec<u8>> {
    cases().into_iter().map(|(_, f, _)| f).collect()
}

fn check_random(k: &Kernel, f: &[u8]) -> Result<(), TestCaseError> {
    let verdict = k.run("ensuresec", f).unwrap();
    let should_drop = reference_source(f).is_some_and(blocked);
    prop_assert!(verdict == XDP_PASS || verdict == XDP_DROP);
    prop_assert_eq!(verdict == XDP_DROP, should_drop, "{:02x?}", f);
    Ok(())
}

#[test]
fn random_frames_never_abort_and_drop_only_blocked_sources() {
    let k = kernel_with_lists();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(400));
    runner
        .run(&proptest::collection::vec(any::<u8>(), 14..300), |bytes| {
            check_random(&k, &bytes)
        })
        .unwrap();
}

#[test]
fn mutated_frames_never_abort_and_drop_only_blocked_sources() {
    let k = kernel_with_lists();
    let frames = base_frames();
    let strategy = (
        0..frames.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    );
    let mut runner = TestRunner::new(ProptestConfig::with_cases(1000));
    runner
        .run(&strategy, |(which, flips)| {
            let mut f = frames[which].clone();
            for (at, value) in flips {
                let i = at.index(f.len());
                f[i] = value;
            }
            check_random(&k, &f)
        })
        .unwrap();
}

/// With the port policy on, a packet whose destination port cannot be read
/// cannot be let through on the port's say-so: a first fragment too short
/// for its TCP header, a later fragment whose first fragment never passed,
/// a TCP or UDP header behind more IPv6 extension headers than are walked.
/// Later fragments of a datagram whose first fragment passed go through.
#[test]
fn port_policy_drops_what_it_cannot_read() {
    let k = kernel_with_lists();
    let tcp_ports: Vec<PortRange> = ["80"].iter().map(|s| s.parse().unwrap()).collect();
    let udp_ports: Vec<PortRange> = ["53"].iter().map(|s| s.parse().unwrap()).collect();
    k.store
        .write()
        .unwrap()
        .set_port_policy(true, &bitmap(&tcp_ports), &bitmap(&udp_ports))
        .unwrap();
    let v4_frag = |frag: u16, id: u16, l4: &L4| ipv4_fragment(v4(CLEAN4), v4(DST4), frag, id, l4);
    // A SYN to a closed port split so that the first fragment holds 8 bytes
    // of TCP (hping3 -S -f): no port to check.
    let tiny = L4::Raw {
        proto: 6,
        bytes: {
            let mut b = tcp(23).bytes();
            b.truncate(8);
            b
        },
    };
    let nine: Vec<Ext> = (0..9).map(|_| Ext::options(EXT_DSTOPTS, 1)).collect();
    let (dns_first, rest) = udp_fragments(5353, 53, 7, 64);
    let dropped = [
        (
            "truncated TCP first fragment",
            v4_frag(0x2000, 1, &tiny),
            Reason::PortUnreadable,
        ),
        (
            "SYN behind 9 IPv6 extension headers",
            p6(CLEAN6, &nine, tcp(23)),
            Reason::PortUnreadable,
        ),
        (
            "later fragment without its first",
            v4_frag(8, 2, &rest),
            Reason::OrphanFragment,
        ),
        (
            "IPv6 later fragment without its first",
            p6(CLEAN6, &[Ext::fragment(8, false)], rest.clone()),
            Reason::OrphanFragment,
        ),
    ];
    for (what, f, reason) in &dropped {
        assert_eq!(run_counted(&k, f), (XDP_DROP, *reason), "{what}");
    }
    // A DNS answer in two fragments to an allowed port: both pass.
    assert_eq!(
        k.run("ensuresec", &v4_frag(0x2000, 3, &dns_first)).unwrap(),
        XDP_PASS
    );
    assert_eq!(
        run_counted(&k, &v4_frag(9, 3, &rest)),
        (XDP_PASS, Reason::Fragment)
    );
    assert_eq!(
        k.run(
            "ensuresec",
            &p6(CLEAN6, &[Ext::fragment(0, true)], dns_first.clone())
        )
        .unwrap(),
        XDP_PASS
    );
    assert_eq!(
        k.run(
            "ensuresec",
            &p6(CLEAN6, &[Ext::fragment(9, false)], rest.clone())
        )
        .unwrap(),
        XDP_PASS
    );
    // A first fragment to a closed port is dropped, and so is the rest of it.
    let closed = L4::Udp {
        sport: 5353,
        dport: 161,
        payload: vec![7; 64],
    };
    assert_eq!(
        k.run("ensuresec", &v4_frag(0x2000, 4, &closed)).unwrap(),
        XDP_DROP
    );
    assert_eq!(k.run("ensuresec", &v4_frag(9, 4, &rest)).unwrap(), XDP_DROP);
}

/// The maps the XDP object pins are the contract's, each of its kind and
/// layout, and no other.
#[test]
fn the_pinned_maps_are_the_contract() {
    let k = Kernel::small().unwrap();
    ensuresec_agent::store::check_pinned_layout(&k.pins.pins).unwrap();
    let mut pinned: Vec<String> = std::fs::read_dir(k.pins.pins.maps())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pinned.sort();
    let mut contract: Vec<String> = ensuresec_common::contract::PINNED_MAPS
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    contract.sort();
    assert_eq!(pinned, contract);
}
