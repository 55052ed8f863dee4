//! Per-destination windows at three scales, unsolicited answers and the
//! destination filters, through BPF_PROG_TEST_RUN.

use std::net::Ipv4Addr;

use anyhow::Result;
use ensuresec_common::{
    features::{DestKey, EVENT_DEST_TRIP, Event, Scale, Throttle, UNSOLICITED_MIN, class},
    ports::{PortRange, bitmap},
    reason::Reason,
};
use ensuresec_tests::{
    kernel::{XDP_DROP, XDP_PASS},
    packet::*,
    xdp_harness::*,
};

#[test]
fn destination_trip_wire() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    let mut cfg = k.store.detect_config()?;
    cfg.trip_dst_packets = 25;
    k.store.write()?.set_detect_config(&cfg)?;
    // A spoofed flood: every packet from another source.
    for i in 0..40u32 {
        k.run(
            "ensuresec",
            &tcp(Ipv4Addr::from(0x0a01_0000 + i), 80, TCP_SYN),
        )?;
    }
    let all: Vec<Event> = events(&k)?
        .into_iter()
        .filter(|e| e.kind == EVENT_DEST_TRIP)
        .collect();
    let at = |scale: Scale| -> Vec<Event> {
        all.iter()
            .filter(|e| e.scale == scale as u8)
            .copied()
            .collect()
    };
    let trips = at(Scale::Window);
    assert_eq!(
        trips.len(),
        1,
        "25 packets trip; the next level, 50, is not reached"
    );
    assert_eq!((trips[0].port, trips[0].proto), (80, 6));
    // A tenth of a window trips at a tenth of the count, then each doubling
    // (a slow machine may start a new tenth in between: each starts over).
    let bursts = at(Scale::Burst);
    assert!(!bursts.is_empty());
    for e in &bursts {
        let p = e.window.packets;
        assert!(p >= 2 && (p / 2).is_power_of_two() && p % 2 == 0, "{p}");
    }
    assert!(
        at(Scale::Slow).is_empty(),
        "SYNs are no unsolicited answers"
    );
    assert_eq!(all.len(), trips.len() + bursts.len(), "{all:?}");
    assert!(
        trips[0].window.distinct_dsts > 20,
        "distinct sources: {:?}",
        trips[0].window
    );
    Ok(())
}

/// SYNs from many new sources to a port the host does not serve trip the
/// destination at every scale at 32, as unsolicited answers do, far below
/// the packet wires; the same SYNs to a served port do not.
#[test]
fn syns_to_unserved_ports_trip_at_every_scale() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    let mut cfg = k.store.detect_config()?;
    cfg.trip_dst_packets = 1_000_000;
    k.store.write()?.set_detect_config(&cfg)?;
    for (port, sources) in [(80, 0x0a02_0000u32), (30120, 0x0a03_0000)] {
        for i in 0..40u32 {
            k.run(
                "ensuresec",
                &tcp(Ipv4Addr::from(sources + i), port, TCP_SYN),
            )?;
        }
    }
    let all: Vec<Event> = events(&k)?
        .into_iter()
        .filter(|e| e.kind == EVENT_DEST_TRIP)
        .collect();
    let mut scales: Vec<u8> = all.iter().map(|e| e.scale).collect();
    scales.sort();
    assert_eq!(
        scales,
        [Scale::Window as u8, Scale::Burst as u8, Scale::Slow as u8],
        "{all:?}"
    );
    for e in &all {
        assert_eq!((e.port, e.proto), (0, 6), "the unserved ports, not 80");
        assert_eq!(e.window.syn, UNSOLICITED_MIN);
        assert_eq!(e.window.fresh, UNSOLICITED_MIN, "each source's first");
    }
    Ok(())
}

/// UDP nobody asked for is unsolicited from whatever port it comes: what
/// reaches a port nobody listens on, and what comes from a service port
/// (below 1024, or a known amplifier's) without answering a socket. A reply
/// to a connected socket is nothing; a request to a listener is a request.
#[test]
fn udp_nobody_asked_for_is_unsolicited_from_any_port() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    // Sockets of this process on loopback (BPF_PROG_TEST_RUN looks sockets
    // up in this network namespace).
    let listener = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let connected = std::net::UdpSocket::bind("127.0.0.1:0")?;
    connected.connect("127.0.0.2:47808")?;
    let peer: Ipv4Addr = "127.0.0.2".parse()?;
    let udp = |sport: u16, dport: u16| {
        let l4 = L4::Udp {
            sport,
            dport,
            payload: vec![0; 400],
        };
        frame(
            &[],
            ipv4(peer, "127.0.0.1".parse().unwrap(), &V4Opts::default(), &l4),
        )
    };
    admit(&k, peer)?;
    let cfg = k.store.detect_config()?;
    let mut last = (0, 0);
    let mut check = |sport: u16, dport: u16, unsolicited: u64, why: &str| -> Result<()> {
        k.run("ensuresec", &udp(sport, dport))?;
        let s = k.store.source_stats(&cfg, &key(peer), 0)?.expect("tracked");
        assert_eq!(s.total.packets, last.0 + 1, "{why}: the packet arrived");
        assert_eq!(s.total.udp_reflect, last.1 + unsolicited, "{why}");
        last = (s.total.packets, s.total.udp_reflect);
        Ok(())
    };
    let (to_listener, to_connected) = (
        listener.local_addr()?.port(),
        connected.local_addr()?.port(),
    );
    check(
        47808,
        40000,
        1,
        "BACnet's port, to a port nobody listens on",
    )?;
    check(30120, 40001, 1, "a port nobody ever named")?;
    check(47808, to_connected, 0, "the answer our socket asked for")?;
    check(47808, to_listener, 0, "a request to a listener")?;
    check(
        161,
        to_listener,
        0,
        "from a service port, to a client socket of ours (a resolver's)",
    )?;
    check(
        161,
        to_connected,
        1,
        "from a service port our socket never asked",
    )?;
    // Once the listener's port is a service the host serves, what comes to
    // it from a service port is a reflection aimed at that service.
    let served: Vec<PortRange> = vec![format!("{to_listener}").parse()?];
    let tcp: Vec<PortRange> = vec!["80".parse()?, "443".parse()?];
    k.store
        .write()?
        .set_tracked_ports(&bitmap(&tcp), &bitmap(&served))?;
    check(161, to_listener, 1, "from a service port, to a served port")?;
    check(40123, to_listener, 0, "a request to a served port")?;
    Ok(())
}

/// A destination filter (a budget with drop classes) drops the answers
/// nobody asked for and nothing else: shoppers' requests, their browsing
/// and UDP to served ports pass.
#[test]
fn destination_filters_drop_only_what_nobody_asked_for() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    let tcp_ports: Vec<PortRange> = vec!["80".parse()?, "443".parse()?];
    k.store
        .write()?
        .set_tracked_ports(&bitmap(&tcp_ports), &bitmap(&["443".parse()?]))?;
    for (proto, classes) in [(17, class::UDP_SERVICE), (6, class::SYNACK)] {
        k.store.write()?.set_budget(
            &DestKey::new(key(DST), 0, proto),
            &Throttle {
                rate_pps: 0,
                burst: 0,
                expires_at_ns: 0,
                limit_classes: 0,
                drop_classes: classes,
            },
        )?;
    }
    for i in 0..50u32 {
        let reflector = Ipv4Addr::from(0x0b00_0000 + i);
        assert_eq!(
            k.run("ensuresec", &udp_datagram(reflector, 47808, 30120))?,
            XDP_DROP
        );
        assert_eq!(
            k.run(
                "ensuresec",
                &tcp_from(reflector, 80, 40000 + i as u16, TCP_SYN | TCP_ACK)
            )?,
            XDP_DROP
        );
    }
    assert_eq!(
        k.run("ensuresec", &udp_datagram(SRC, 50000, 443))?,
        XDP_PASS,
        "QUIC"
    );
    for flags in [TCP_SYN, TCP_ACK] {
        assert_eq!(k.run("ensuresec", &tcp(SRC, 443, flags))?, XDP_PASS);
    }
    assert!(k.counters()?[Reason::DestBudget as usize].packets >= 100);
    Ok(())
}
