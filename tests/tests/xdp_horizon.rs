//! A source's horizon in the kernel (SYNs and their completions, openings,
//! the horizon's end, its start with the second packet), through
//! BPF_PROG_TEST_RUN on one CPU.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::Result;
use ensuresec_common::features::{
    DetectConfig, EVENT_SOURCE_HORIZON, HEAVY_PACKETS, Horizon, set_of,
};
use ensuresec_tests::{kernel::Kernel, packet::*, wait::eventually, xdp_harness::*};

/// A TCP segment from `SRC` with a sequence number and data.
fn segment(dport: u16, flags: u8, seq: u32, data: &[u8]) -> Vec<u8> {
    segment_with_options(dport, flags, seq, &[], data)
}

/// `segment` with TCP options (a multiple of four bytes) before the data.
fn segment_with_options(dport: u16, flags: u8, seq: u32, options: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = L4::Tcp {
        sport: 40000,
        dport,
        flags,
    }
    .bytes();
    b[4..8].copy_from_slice(&seq.to_be_bytes());
    b[12] = ((20 + options.len() as u8) / 4) << 4;
    b.extend_from_slice(options);
    b.extend_from_slice(data);
    let l4 = L4::Raw { proto: 6, bytes: b };
    frame(&[], ipv4(SRC, DST, &V4Opts::default(), &l4))
}

fn horizon_events(k: &Kernel) -> Result<usize> {
    Ok(events(k)?
        .iter()
        .filter(|e| e.kind == EVENT_SOURCE_HORIZON && e.addr == key(SRC))
        .count())
}

/// A source's horizon counts its SYNs, the segments of connections it got
/// past the handshake of, and its openings: the first data after each SYN
/// (later data, and data of no SYN of its own, are no opening); its trip
/// wires send horizon events.
#[test]
fn a_sources_horizon_counts_syns_and_openings() -> Result<()> {
    // Each CPU keeps its own horizon: stay on one.
    pin_to(0)?;
    let k = detecting(1000, 1000)?;
    let cfg = DetectConfig {
        horizon_ns: 300_000_000_000,
        trip_horizon_syns: 5,
        trip_openings: 3,
        ..k.store.detect_config()?
    };
    k.store.write()?.set_detect_config(&cfg)?;
    admit(&k, SRC)?;
    let openings: [&[u8]; 3] = [
        b"GET / HTTP/1.0\r\n",
        b"\x16\x03\x01\x02\x00",
        b"OPTIONS / RTSP/1.0",
    ];
    for (i, data) in openings.iter().enumerate() {
        let isn = 1000 * i as u32;
        k.run("ensuresec", &segment(7000, TCP_SYN, isn, &[]))?;
        k.run("ensuresec", &segment(7000, TCP_ACK, isn + 1, &[]))?;
        k.run(
            "ensuresec",
            &segment(7000, TCP_ACK | TCP_PSH, isn + 1, data),
        )?;
        // More data on the same connection opens nothing.
        k.run(
            "ensuresec",
            &segment(7000, TCP_ACK | TCP_PSH, isn + 30, b"POST"),
        )?;
    }
    // Data at no SYN's sequence number is no opening either.
    k.run("ensuresec", &segment(7000, TCP_ACK | TCP_PSH, 77, b"HELP"))?;
    // A TLS hello whose length differs opens as the first one did.
    k.run("ensuresec", &segment(7000, TCP_SYN, 3000, &[]))?;
    k.run(
        "ensuresec",
        &segment(7000, TCP_ACK | TCP_PSH, 3001, b"\x16\x03\x01\x06\x80"),
    )?;
    let h = k
        .store
        .source_stats(&cfg, &key(SRC), 0)?
        .expect("tracked")
        .horizon;
    assert_eq!((h.syn, h.completed, h.openings), (4, 4, 3), "{h:?}");
    assert_eq!(horizon_events(&k)?, 1, "the openings' wire tripped");
    // The SYNs' wire counts those never completed. Ten at once from a
    // source that completes few: the two pushed out of the ring of eight
    // stay uncompleted, the rest complete once each.
    let burst = |k: &Kernel, isn: u32| -> Result<()> {
        for i in 0..10 {
            k.run("ensuresec", &segment(7000, TCP_SYN, isn + 10 * i, &[]))?;
        }
        Ok(())
    };
    let complete = |k: &Kernel, isn: u32| -> Result<()> {
        for i in 0..10 {
            k.run("ensuresec", &segment(7000, TCP_ACK, isn + 1 + 10 * i, &[]))?;
            k.run("ensuresec", &segment(7000, TCP_ACK, isn + 1 + 10 * i, &[]))?;
        }
        Ok(())
    };
    burst(&k, 50_000)?;
    assert_eq!(horizon_events(&k)?, 2, "five and ten never completed");
    complete(&k, 50_000)?;
    let h = k.store.source_stats(&cfg, &key(SRC), 0)?.expect("tracked");
    let h = h.horizon;
    assert_eq!((h.syn, h.completed, h.uncompleted()), (14, 12, 2), "{h:?}");
    // A source that completes what it opens (a busy NAT): the two pushed
    // out young are taken as completed.
    for i in 0..16 {
        k.run("ensuresec", &segment(7000, TCP_SYN, 70_000 + 10 * i, &[]))?;
        k.run("ensuresec", &segment(7000, TCP_ACK, 70_001 + 10 * i, &[]))?;
    }
    burst(&k, 90_000)?;
    complete(&k, 90_000)?;
    let h = k.store.source_stats(&cfg, &key(SRC), 0)?.expect("tracked");
    let h = h.horizon;
    assert_eq!((h.syn, h.completed, h.uncompleted()), (40, 38, 2), "{h:?}");
    Ok(())
}

/// A connection's opening is read after the TCP options, and data shorter
/// than an opening opens nothing; a horizon of a nanosecond is over once
/// the clock moves.
#[test]
fn openings_follow_the_options_and_horizons_end() -> Result<()> {
    pin_to(0)?;
    let k = detecting(1000, 1000)?;
    let cfg = DetectConfig {
        horizon_ns: 300_000_000_000,
        trip_openings: 1000,
        ..k.store.detect_config()?
    };
    k.store.write()?.set_detect_config(&cfg)?;
    admit(&k, SRC)?;
    let horizon = |k: &Kernel| -> Result<ensuresec_common::features::Horizon> {
        Ok(k.store
            .source_stats(&cfg, &key(SRC), 0)?
            .expect("tracked")
            .horizon)
    };
    // MSS, SACK permitted and a timestamp: twenty bytes of options.
    let options = [
        2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0,
    ];
    k.run("ensuresec", &segment(7000, TCP_SYN, 10, &[]))?;
    k.run(
        "ensuresec",
        &segment_with_options(7000, TCP_ACK | TCP_PSH, 11, &options, b"SSH-2.0-x"),
    )?;
    k.run("ensuresec", &segment(7000, TCP_SYN, 20, &[]))?;
    k.run("ensuresec", &segment(7000, TCP_ACK | TCP_PSH, 21, b"\r\n"))?;
    let h = horizon(&k)?;
    assert_eq!((h.syn, h.completed, h.openings), (2, 2, 1), "{h:?}");
    let expected = ensuresec_common::features::sketch_bit(u32::from_be_bytes(*b"SSH-") >> 8, 64);
    assert_eq!(
        h.opening_sketch,
        1 << expected,
        "the bytes after the options"
    );
    k.store.write()?.set_detect_config(&DetectConfig {
        horizon_ns: 1,
        ..cfg
    })?;
    // The kernel's clock is coarse: packets within one tick share a time.
    let mut sent = 0;
    eventually(Duration::from_secs(5), "a horizon to end", || {
        sent += 1;
        k.run("ensuresec", &segment(7000, TCP_SYN, 100 * sent, &[]))?;
        Ok((sent > 1 && horizon(&k)?.syn == 1).then_some(()))
    })?;
    Ok(())
}

/// A source's horizon begins with its second packet and counts the first
/// from the slot; a slot taken over from another source keeps nothing of
/// the former source's horizon.
#[test]
fn a_taken_over_slot_keeps_nothing_of_its_former_source() -> Result<()> {
    pin_to(0)?;
    let k = detecting(1000, 1000)?;
    let cfg = DetectConfig {
        horizon_ns: 300_000_000_000,
        ..k.store.detect_config()?
    };
    k.store.write()?.set_detect_config(&cfg)?;
    // Three sources of one set of the two-way table.
    let set = |a: Ipv4Addr| set_of(&key(a), 0, cfg.seed, cfg.source_mask);
    let first = Ipv4Addr::new(198, 51, 100, 20);
    let mut same = vec![first];
    for i in 1..1_000_000u32 {
        let a = Ipv4Addr::from(u32::from(first) + i);
        if set(a) == set(first) {
            same.push(a);
        }
        if same.len() == 3 {
            break;
        }
    }
    let [a, b, c] = same[..] else {
        panic!("no three sources of one set: {same:?}");
    };
    let horizon = |addr: Ipv4Addr| -> Result<Option<Horizon>> {
        Ok(k.store
            .source_stats(&cfg, &key(addr), 0)?
            .map(|s| s.horizon))
    };
    for s in [a, b, c] {
        admit(&k, s)?;
    }
    // A probes ten ports; its first SYN counts once the second arrives.
    for port in 0..10 {
        k.run("ensuresec", &tcp(a, 7000 + port, TCP_SYN))?;
    }
    let h = horizon(a)?.expect("tracked");
    assert_eq!((h.syn, h.distinct_ports), (10, 10), "{h:?}");
    k.run("ensuresec", &tcp(b, 7000, TCP_SYN))?;
    // C takes A's way (the least recently seen).
    k.run("ensuresec", &tcp(c, 8000, TCP_SYN))?;
    assert_eq!(horizon(a)?, None, "A's slot was taken over");
    assert_eq!(
        horizon(c)?,
        Some(Horizon::default()),
        "no horizon after one packet"
    );
    k.run("ensuresec", &tcp(c, 8001, TCP_SYN))?;
    let h = horizon(c)?.expect("tracked");
    assert_eq!(
        (h.syn, h.distinct_ports, h.uncompleted()),
        (2, 2, 2),
        "C's own two, nothing of A's ten: {h:?}"
    );
    Ok(())
}

/// A heavy source's horizon (its window past `HEAVY_PACKETS`) counts one SYN
/// in `HEAVY_SAMPLE` at random with that weight, and every ACK completes its
/// SYN with the weight the SYN had: a source that completes every
/// handshake leaves nothing uncompleted, however its SYNs were sampled,
/// and one that completes none leaves about all of them.
#[test]
fn a_heavy_sources_horizon_pairs_sampled_syns_with_their_acks() -> Result<()> {
    pin_to(0)?;
    // A new table for each source: the first one's completions would give
    // the second the credit a busy NAT gets.
    let fresh = || -> Result<(Kernel, DetectConfig)> {
        let k = detecting(u32::MAX, u32::MAX)?;
        let cfg = DetectConfig {
            horizon_ns: 300_000_000_000,
            window_ns: 60_000_000_000,
            trip_horizon_syns: u32::MAX,
            ..k.store.detect_config()?
        };
        k.store.write()?.set_detect_config(&cfg)?;
        admit(&k, SRC)?;
        Ok((k, cfg))
    };
    const HANDSHAKES: u32 = 20 * HEAVY_PACKETS;
    let (k, cfg) = fresh()?;
    for i in 0..HANDSHAKES {
        let isn = 7 * i;
        k.run("ensuresec", &segment(443, TCP_SYN, isn, &[]))?;
        k.run("ensuresec", &segment(443, TCP_ACK, isn + 1, &[]))?;
    }
    let h = k
        .store
        .source_stats(&cfg, &key(SRC), 0)?
        .expect("tracked")
        .horizon;
    assert_eq!(h.uncompleted(), 0, "every handshake completed: {h:?}");
    // Past the first 512 handshakes (1,024 packets), SYNs are sampled: an sd
    // of about 2 % here.
    assert!(h.syn.abs_diff(HANDSHAKES) < HANDSHAKES / 10, "{h:?}");

    // SYNs alone: about every one stays uncompleted.
    const SYNS: u32 = 20 * HEAVY_PACKETS;
    let (k, cfg) = fresh()?;
    for i in 0..SYNS {
        k.run("ensuresec", &segment(443, TCP_SYN, 7 * i, &[]))?;
    }
    let h = k
        .store
        .source_stats(&cfg, &key(SRC), 0)?
        .expect("tracked")
        .horizon;
    let uncompleted = h.uncompleted();
    assert!(
        uncompleted.abs_diff(SYNS) < SYNS / 10,
        "{uncompleted} of {SYNS}: {h:?}"
    );
    Ok(())
}
