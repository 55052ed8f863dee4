//! Per-source feature counts and trip-wire events, through
//! BPF_PROG_TEST_RUN (each run is on one CPU; the store sums CPUs).

use std::net::Ipv4Addr;

use anyhow::Result;
use ensuresec_common::features::{
    DestKey, DetectConfig, EVENT_SOURCE_TRIP, Event, HEAVY_PACKETS, HEAVY_SAMPLE, Scale,
};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
    xdp_harness::*,
};

#[test]
fn counts_per_source_and_destination() -> Result<()> {
    let k = detecting(1000, 1000)?;
    admit(&k, SRC)?;
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

    let web = DestKey::new(key(DST), 80, 6);
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
    admit(&k, SRC)?;
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
    admit(&k, scanner)?;
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
    admit(&k, "127.0.0.2".parse()?)?;
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
        admit(&k, source(sources))?;
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

/// The doorkeeper: a spoofed flood's one-packet sources never enter the
/// per-source table nor push out a source already there, and every one of
/// their packets still counts for the destination; a source that sends
/// again gets its slot.
#[test]
fn one_packet_sources_stay_out_of_the_source_table() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    admit(&k, SRC)?;
    for _ in 0..5 {
        k.run("ensuresec", &tcp(SRC, 80, TCP_ACK))?;
    }
    const FLOOD: u32 = 50_000;
    let spoofed = |i: u32| Ipv4Addr::from(0x6400_0000 + i * 7);
    for i in 0..FLOOD {
        assert_eq!(k.run("ensuresec", &tcp(spoofed(i), 80, TCP_SYN))?, XDP_PASS);
    }
    let mut occupied = Vec::new();
    k.store.for_each_source(|_, slot| occupied.push(slot.key))?;
    assert_eq!(occupied, vec![key(SRC)], "only the source that sent twice");
    let cfg = k.store.detect_config()?;
    k.run("ensuresec", &tcp(SRC, 80, TCP_ACK))?;
    let s = k.store.source_stats(&cfg, &key(SRC), 0)?.expect("tracked");
    assert_eq!(s.total.packets, 6, "the flood took nothing of the source's");

    let web = DestKey::new(key(DST), 80, 6);
    let d = k
        .store
        .dest_stats(&cfg, &web, Scale::Window, 0)?
        .expect("destination tracked");
    assert_eq!(d.total.packets, 6 + FLOOD as u64, "every packet counted");
    // The window is heavy past HEAVY_PACKETS: one packet in HEAVY_SAMPLE,
    // at random, counts from then with that weight (sd about 1.2 % here).
    assert!(
        d.window.fresh.abs_diff(FLOOD) < FLOOD / 10,
        "each spoofed packet its source's first: {} of {FLOOD}",
        d.window.fresh
    );

    // A flood source that sends again is let in (its entry is recent).
    let again = spoofed(FLOOD - 1);
    k.run("ensuresec", &tcp(again, 80, TCP_SYN))?;
    let s = k
        .store
        .source_stats(&cfg, &key(again), 0)?
        .expect("admitted");
    assert_eq!((s.total.packets, s.total.syn), (1, 1));
    Ok(())
}

/// A flooding source's window past `HEAVY_PACKETS` counts one packet in
/// `HEAVY_SAMPLE`, picked at random, with that weight: the estimates stay
/// near the truth even when the sender places one kind of packet at every
/// eighth position (a counter-based pick would count only those), while the
/// source's lifetime packet count and its destination's stay exact.
#[test]
fn a_heavy_sources_counts_are_estimates_near_the_truth() -> Result<()> {
    let k = detecting(1_000_000, 1_000_000)?;
    // Horizons on, no wire firing.
    k.store.write()?.set_detect_config(&DetectConfig {
        window_ns: 60_000_000_000,
        ..counting_only()
    })?;
    admit(&k, SRC)?;
    const PACKETS: u32 = 40 * HEAVY_PACKETS;
    let (syn, ack) = (tcp(SRC, 80, TCP_SYN), tcp(SRC, 80, TCP_ACK));
    for i in 0..PACKETS {
        k.run("ensuresec", if i % HEAVY_SAMPLE == 0 { &ack } else { &syn })?;
    }
    let syns = PACKETS - PACKETS / HEAVY_SAMPLE;
    let cfg = k.store.detect_config()?;
    let s = k.store.source_stats(&cfg, &key(SRC), 0)?.expect("tracked");
    assert_eq!(s.total.packets, PACKETS as u64, "every packet in the total");
    // A count of n packets sampled one in eight with weight eight has a
    // standard deviation of about sqrt(7 n): within six of them (3.3 % of
    // the 40,960 packets, 15 % of the 5,120 ACKs), a failure is a bias,
    // not chance.
    let near = |estimate: u64, truth: u32, what: &str| {
        let bound = 6.0 * (7.0 * truth as f64).sqrt();
        assert!(
            (estimate.abs_diff(truth as u64) as f64) < bound,
            "{what}: {estimate} for {truth} (bound {bound:.0})"
        );
    };
    near(s.window.packets as u64, PACKETS, "window packets");
    near(s.window.syn as u64, syns, "window SYNs");
    near(s.total.syn, syns, "total SYNs");
    near(s.total.ack_only, PACKETS / HEAVY_SAMPLE, "total ACKs");
    // The horizon samples a heavy source's SYNs on its own (see xdp_horizon).
    near(s.horizon.syn as u64, syns, "horizon SYNs");
    let web = DestKey::new(key(DST), 80, 6);
    let d = k
        .store
        .dest_stats(&cfg, &web, Scale::Window, 0)?
        .expect("destination tracked");
    assert_eq!(d.total.packets, PACKETS as u64);
    near(d.window.syn as u64, syns, "destination window SYNs");
    Ok(())
}
