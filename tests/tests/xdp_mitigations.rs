//! Throttles and budgets in the kernel: rates, classes, and packets whose
//! ports cannot be read, through BPF_PROG_TEST_RUN.

use std::net::Ipv4Addr;

use anyhow::Result;
use ensuresec_common::{
    features::{DestKey, Throttle, class},
    ports::{PortRange, bitmap},
    reason::Reason,
};
use ensuresec_tests::{
    kernel::{XDP_DROP, XDP_PASS},
    packet::*,
    xdp_harness::*,
};

#[test]
fn throttles_and_budgets_drop_over_their_rate() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    k.store.write()?.set_throttle(
        &key(SRC),
        &Throttle {
            rate_pps: 1,
            burst: 3,
            expires_at_ns: 0,
            limit_classes: class::ALL,
            drop_classes: 0,
        },
    )?;
    let verdicts: Vec<u32> = (0..6)
        .map(|_| k.run("ensuresec", &tcp(SRC, 443, TCP_ACK)).unwrap())
        .collect();
    assert_eq!(
        verdicts,
        [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP, XDP_DROP]
    );
    assert!(k.counters()?[Reason::Throttled as usize].packets >= 3);
    assert!(k.store.write()?.remove_throttle(&key(SRC))?);
    assert_eq!(k.run("ensuresec", &tcp(SRC, 443, TCP_ACK))?, XDP_PASS);

    let web = DestKey::new(key(DST), 80, 6);
    k.store.write()?.set_budget(
        &web,
        &Throttle {
            rate_pps: 1,
            burst: 2,
            expires_at_ns: 0,
            limit_classes: class::ALL,
            drop_classes: 0,
        },
    )?;
    let syns: Vec<u32> = (0..4u32)
        .map(|i| {
            k.run(
                "ensuresec",
                &tcp(Ipv4Addr::from(0x0a02_0000 + i), 80, TCP_SYN),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(syns, [XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP]);
    // Established traffic and other ports are not limited.
    assert_eq!(k.run("ensuresec", &tcp(SRC, 80, TCP_ACK))?, XDP_PASS);
    assert_eq!(k.run("ensuresec", &tcp(SRC, 443, TCP_SYN))?, XDP_PASS);
    assert!(k.counters()?[Reason::DestBudget as usize].packets >= 2);
    Ok(())
}

/// A UDP budget counts packets whose ports cannot be read (under port 0): a
/// flood of later fragments whose first fragment never came is limited, and
/// a fragmented datagram whose first fragment fit counts once.
#[test]
fn budgets_count_packets_whose_ports_cannot_be_read() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    let udp_any = DestKey::new(key(DST), 0, 17);
    k.store.write()?.set_budget(
        &udp_any,
        &Throttle {
            rate_pps: 1,
            burst: 1,
            expires_at_ns: 0,
            limit_classes: class::ALL,
            drop_classes: 0,
        },
    )?;
    let fragment =
        |src: Ipv4Addr, frag: u16, id: u16, l4: &L4| ipv4_fragment(src, DST, frag, id, l4);
    let (first, rest) = udp_fragments(5000, 9999, 1, 32);
    // The datagram's first fragment takes the one token; its rest passes
    // with it.
    assert_eq!(
        k.run("ensuresec", &fragment(SRC, 0x2000, 77, &first))?,
        XDP_PASS
    );
    assert_eq!(k.run("ensuresec", &fragment(SRC, 5, 77, &rest))?, XDP_PASS);
    assert_eq!(k.run("ensuresec", &fragment(SRC, 9, 77, &rest))?, XDP_PASS);
    // Later fragments of datagrams that never had a first fragment here.
    let orphans: Vec<u32> = (0..3u16)
        .map(|i| k.run("ensuresec", &fragment(SRC, 100, i, &rest)).unwrap())
        .collect();
    assert_eq!(orphans, [XDP_DROP; 3]);
    assert!(k.counters()?[Reason::DestBudget as usize].packets >= 3);
    Ok(())
}

/// A mitigation scoped to classes of a source's packets acts on those only:
/// reflected UDP "from" a shopper's address is dropped, SYNs are held to the
/// rate, the shopper's own browsing (ACKs, data) goes through.
#[test]
fn throttles_act_on_their_classes_only() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    // The host serves UDP 443 (QUIC).
    let tcp_ports: Vec<PortRange> = vec!["80".parse()?, "443".parse()?];
    k.store
        .write()?
        .set_tracked_ports(&bitmap(&tcp_ports), &bitmap(&["443".parse()?]))?;
    k.store.write()?.set_throttle(
        &key(SRC),
        &Throttle {
            rate_pps: 1,
            burst: 2,
            expires_at_ns: 0,
            limit_classes: class::SYN,
            drop_classes: class::UDP_SERVICE,
        },
    )?;
    // Reflected UDP (from port 53 to an ephemeral port nothing listens on).
    for _ in 0..3 {
        assert_eq!(k.run("ensuresec", &udp_datagram(SRC, 53, 40000))?, XDP_DROP);
    }
    // UDP from a client port to a served port is a request: another class.
    assert_eq!(k.run("ensuresec", &udp_datagram(SRC, 5353, 443))?, XDP_PASS);
    let syns: Vec<u32> = (0..4)
        .map(|_| k.run("ensuresec", &tcp(SRC, 443, TCP_SYN)).unwrap())
        .collect();
    assert_eq!(syns, [XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP]);
    for _ in 0..5 {
        assert_eq!(k.run("ensuresec", &tcp(SRC, 443, TCP_ACK))?, XDP_PASS);
    }
    // Fragmented answers go the way of their first fragment: the reflected
    // one is dropped whole, an ordinary one passes whole.
    let (reflected, rest) = udp_fragments(53, 40000, 0, 64);
    let (ordinary, _) = udp_fragments(5353, 443, 0, 64);
    for (first, id, want) in [(&reflected, 7, XDP_DROP), (&ordinary, 8, XDP_PASS)] {
        assert_eq!(
            k.run("ensuresec", &ipv4_fragment(SRC, DST, 0x2000, id, first))?,
            want
        );
        assert_eq!(
            k.run("ensuresec", &ipv4_fragment(SRC, DST, 9, id, &rest))?,
            want
        );
    }
    Ok(())
}
