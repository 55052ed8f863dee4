//! Feature extraction, trip-wire events, throttles and budgets, through
//! BPF_PROG_TEST_RUN (each run is on one CPU; the store sums CPUs).

use std::net::Ipv4Addr;

use anyhow::Result;
use ensuresec_common::{
    features::{
        DestKey, DetectConfig, EVENT_DEST_TRIP, EVENT_SOURCE_TRIP, Event, Scale, Throttle,
        UNSOLICITED_MIN, class, v4_key,
    },
    ports::{PortRange, bitmap},
    reason::Reason,
};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
};

const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn key(a: Ipv4Addr) -> [u8; 16] {
    v4_key(u32::from_ne_bytes(a.octets()))
}

fn tcp(src: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport: 40000,
        dport,
        flags,
    };
    frame(&[], ipv4(src, DST, &V4Opts::default(), &l4))
}

fn detecting(trip_packets: u32, trip_ports: u32) -> Result<Kernel> {
    let k = Kernel::small()?;
    k.store.write()?.set_detect_config(&DetectConfig {
        enabled: 1,
        window_ns: 60_000_000_000,
        trip_packets,
        trip_ports,
        trip_dsts: 1000,
        trip_dst_packets: 1000,
        cpus: 1,
        ..DetectConfig::default()
    })?;
    let tracked: Vec<PortRange> = vec!["80".parse()?, "443".parse()?];
    k.store
        .write()?
        .set_tracked_ports(&bitmap(&tracked), &bitmap(&[]))?;
    Ok(k)
}

fn events(k: &Kernel) -> Result<Vec<Event>> {
    let mut ring = k.store.events()?;
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), std::mem::size_of::<Event>());
        // SAFETY: the kernel wrote an `Event` of this size.
        out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) });
    }
    Ok(out)
}

#[test]
fn counts_per_source_and_destination() -> Result<()> {
    let k = detecting(1000, 1000)?;
    for _ in 0..10 {
        assert_eq!(k.run("ensuresec", &tcp(SRC, 80, TCP_SYN))?, XDP_PASS);
    }
    for _ in 0..3 {
        k.run("ensuresec", &tcp(SRC, 80, TCP_ACK))?;
    }
    let udp = L4::Udp {
        sport: 123,
        dport: 5555,
        payload: vec![0; 40],
    };
    k.run(
        "ensuresec",
        &frame(&[], ipv4(SRC, DST, &V4Opts::default(), &udp)),
    )?;

    let s = k
        .store
        .source_stats(&k.store.detect_config()?, &key(SRC), 0)?
        .expect("source tracked");
    assert_eq!(
        (s.total.packets, s.total.syn, s.total.ack_only, s.total.udp),
        (14, 10, 3, 1)
    );
    assert_eq!(
        (s.window.packets, s.window.syn, s.window.ack_rst),
        (14, 10, 3)
    );
    assert_eq!(s.window.udp_reflect, 1, "UDP from NTP's port");
    assert_eq!((s.total.ack_rst, s.total.udp_reflect), (3, 1));
    assert!(s.window.distinct_ports >= 1 && s.window.distinct_ports <= 2);

    // Steps for the anomaly model: the first read sets baselines, the next
    // one yields exactly what was sent in between.
    let mut stepper = ensuresec_agent::ml::steps::Stepper::new();
    let window_ns = 60_000_000_000;
    assert!(
        stepper
            .step(&k.store, ensuresec_agent::clock::mono_ns(), window_ns)?
            .is_empty()
    );
    for _ in 0..5 {
        k.run("ensuresec", &tcp(SRC, 443, TCP_SYN))?;
    }
    let steps = stepper.step(&k.store, ensuresec_agent::clock::mono_ns(), window_ns)?;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].source, key(SRC));
    assert_eq!((steps[0].counts.packets, steps[0].counts.syn), (5, 5));
    assert_eq!(
        steps[0].counts.bytes,
        5 * tcp(SRC, 443, TCP_SYN).len() as u64
    );
    assert!(
        (1..=3).contains(&steps[0].counts.distinct_ports),
        "80, 443 and 5555 in the window"
    );

    let web = DestKey {
        addr: key(DST),
        port: 80,
        proto: 6,
        _pad: 0,
    };
    let d = k
        .store
        .dest_stats(&k.store.detect_config()?, &web, Scale::Window, 0)?
        .expect("destination tracked");
    assert_eq!((d.total.packets, d.total.new_conns), (13, 10));
    // An untracked UDP port is folded into port 0.
    let other = DestKey {
        port: 0,
        proto: 17,
        ..web
    };
    assert_eq!(
        k.store
            .dest_stats(&k.store.detect_config()?, &other, Scale::Window, 0)?
            .map(|d| d.total.packets),
        Some(1)
    );

    // Blocked sources are dropped before any feature is counted.
    k.block("203.0.113.66")?;
    assert_eq!(
        k.run("ensuresec", &tcp("203.0.113.66".parse()?, 80, TCP_SYN))?,
        XDP_DROP
    );
    assert!(
        k.store
            .source_stats(&k.store.detect_config()?, &key("203.0.113.66".parse()?), 0)?
            .is_none()
    );
    Ok(())
}

#[test]
fn trip_wires_send_one_event_per_window() -> Result<()> {
    let k = detecting(5, 20)?;
    for _ in 0..12 {
        k.run("ensuresec", &tcp(SRC, 443, TCP_SYN))?;
    }
    let got = events(&k)?;
    let trips: Vec<&Event> = got.iter().filter(|e| e.kind == EVENT_SOURCE_TRIP).collect();
    assert_eq!(
        trips.len(),
        2,
        "trips at 5 and 10 packets, then 20 is not reached"
    );
    assert_eq!(trips[0].addr, key(SRC));
    assert_eq!(trips[0].peer, key(DST));
    assert_eq!((trips[0].window.packets, trips[0].window.syn), (5, 5));
    assert_eq!(trips[1].window.packets, 10);

    // A scan: many ports from another source trips on distinct ports.
    let scanner = Ipv4Addr::new(192, 0, 2, 200);
    for port in 1000..1040 {
        k.run("ensuresec", &tcp(scanner, port, TCP_SYN))?;
    }
    let trips: Vec<Event> = events(&k)?
        .into_iter()
        .filter(|e| e.kind == EVENT_SOURCE_TRIP && e.addr == key(scanner))
        .collect();
    // Packet levels 5, 10, 20, 40 and the distinct-port wire at 20 ports (which
    // may share an event with a packet level).
    assert!((4..=5).contains(&trips.len()), "{}", trips.len());
    assert!(
        trips.iter().any(|t| t.window.distinct_ports >= 20),
        "{trips:?}"
    );
    assert_eq!(
        k.store.event_stats()?.0,
        0,
        "nothing was dropped for lack of room"
    );
    Ok(())
}

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

    let web = DestKey {
        addr: key(DST),
        port: 80,
        proto: 6,
        _pad: 0,
    };
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
    let udp_any = DestKey {
        addr: key(DST),
        port: 0,
        proto: 17,
        _pad: 0,
    };
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

fn tcp_from(src: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport,
        dport,
        flags,
    };
    frame(&[], ipv4(src, DST, &V4Opts::default(), &l4))
}

fn udp_from(src: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let l4 = L4::Udp {
        sport,
        dport,
        payload: vec![0; 40],
    };
    frame(&[], ipv4(src, DST, &V4Opts::default(), &l4))
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
        assert_eq!(k.run("ensuresec", &udp_from(SRC, 53, 40000))?, XDP_DROP);
    }
    // UDP from a client port to a served port is a request: another class.
    assert_eq!(k.run("ensuresec", &udp_from(SRC, 5353, 443))?, XDP_PASS);
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
            &DestKey {
                addr: key(DST),
                port: 0,
                proto,
                _pad: 0,
            },
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
            k.run("ensuresec", &udp_from(reflector, 47808, 30120))?,
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
        k.run("ensuresec", &udp_from(SRC, 50000, 443))?,
        XDP_PASS,
        "QUIC"
    );
    for flags in [TCP_SYN, TCP_ACK] {
        assert_eq!(k.run("ensuresec", &tcp(SRC, 443, flags))?, XDP_PASS);
    }
    assert!(k.counters()?[Reason::DestBudget as usize].packets >= 100);
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

/// SYN-ACKs that answer a connect of this host are replies, not evidence:
/// only unsolicited ones count toward SYN-ACK reflection, and replies never
/// count as probed ports.
#[test]
fn replies_to_this_hosts_connections_are_not_evidence() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    // A connection this process opened on loopback (BPF_PROG_TEST_RUN looks
    // sockets up in this network namespace).
    let listener = std::net::TcpListener::bind("127.0.0.2:0")?;
    let server = listener.local_addr()?;
    let client = std::net::TcpStream::connect(server)?;
    let local = client.local_addr()?;
    let synack = |sport: u16, dport: u16| {
        let l4 = L4::Tcp {
            sport,
            dport,
            flags: TCP_SYN | TCP_ACK,
        };
        frame(
            &[],
            ipv4(
                "127.0.0.2".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
                &V4Opts::default(),
                &l4,
            ),
        )
    };
    let peer = key("127.0.0.2".parse()?);
    k.run("ensuresec", &synack(server.port(), local.port()))?;
    let cfg = k.store.detect_config()?;
    let s = k.store.source_stats(&cfg, &peer, 0)?.expect("tracked");
    assert_eq!(s.total.packets, 1, "the reply arrived");
    assert_eq!(s.total.synack, 0, "a reply to our connect");
    // To a port with no connection of ours: unsolicited.
    k.run("ensuresec", &synack(server.port(), 1))?;
    let s = k.store.source_stats(&cfg, &peer, 0)?.expect("tracked");
    assert_eq!((s.total.packets, s.total.synack), (2, 1));
    Ok(())
}

/// A trip whose event found the ring buffer full is tried again on the
/// source's next packet, not only when its count has doubled.
#[test]
fn a_trip_whose_event_was_lost_fires_again() -> Result<()> {
    let k = detecting(4, 1_000_000)?;
    let source = |i: u32| Ipv4Addr::from(0x0a40_0000 + i);
    // Four packets from each of many sources: each trips once, until the
    // ring buffer (never read here) is full.
    let mut sources = 0;
    while k.store.event_stats()?.0 == 0 {
        let f = tcp(source(sources), 443, TCP_ACK);
        for _ in 0..4 {
            k.run("ensuresec", &f)?;
        }
        sources += 1;
        assert!(sources < 100_000, "the ring buffer never filled");
    }
    let victim = source(sources - 1);
    assert!(events(&k)?.len() > 1000, "the ring held events");
    // With the ring drained, the victim's next packet trips again.
    k.run("ensuresec", &tcp(victim, 443, TCP_ACK))?;
    let again: Vec<Event> = events(&k)?
        .into_iter()
        .filter(|e| e.kind == EVENT_SOURCE_TRIP && e.addr == key(victim))
        .collect();
    assert_eq!(again.len(), 1, "the lost trip fired again");
    Ok(())
}

/// Pins the calling thread to one CPU.
fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: this thread, a valid set.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    anyhow::ensure!(
        rc == 0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Trip wires are per CPU, and a source's packets spread over the receive
/// queues: each CPU trips at its share of the wire, so a flood split evenly
/// over two CPUs still trips.
#[test]
fn trip_wires_count_each_cpus_share() -> Result<()> {
    use ensuresec_agent::detect::{
        kernel,
        settings::{DetectSection, DetectSettings},
    };
    let cpus = std::thread::available_parallelism()?.get();
    anyhow::ensure!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    let k = Kernel::small()?;
    let settings = DetectSettings::validate(&DetectSection::default(), &[], &Default::default())
        .map_err(anyhow::Error::msg)?;
    kernel::configure(&k.store, &settings)?;
    // 60 SYNs on each of two CPUs: 120 in all, over the 100 of the wire,
    // but under it on either CPU alone.
    for cpu in [0, 1] {
        pin_to(cpu)?;
        for _ in 0..60 {
            k.run("ensuresec", &tcp(SRC, 443, TCP_SYN))?;
        }
    }
    let trips: Vec<Event> = events(&k)?
        .into_iter()
        .filter(|e| e.kind == EVENT_SOURCE_TRIP && e.addr == key(SRC))
        .collect();
    assert!(
        !trips.is_empty(),
        "a flood spread over the CPUs tripped no wire"
    );
    let cpus_seen: std::collections::HashSet<u32> = trips.iter().map(|e| e.cpu).collect();
    assert_eq!(
        cpus_seen.len(),
        2,
        "each CPU tripped at its share: {trips:?}"
    );
    Ok(())
}
