//! `cargo xtask bench xdp`: kernel-measured ns per packet of each ensuresec path
//! with BPF_PROG_TEST_RUN (`repeat`), against a floor program measured in the
//! same run. Writes target/bench/xdp.json.
//!
//! Templates: `fixed` runs one packet over and over (caches stay warm); `random`
//! rewrites the IPv4 source on every run from a table (random unlisted sources,
//! random blocked addresses, random hosts in random blocked prefixes), the way a
//! spoofed flood defeats caches. Its floor randomises the same way.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::Result;
use ensuresec_agent::{config::MapSizes, edit::Op};
use ensuresec_common::{entry::Target, features::DetectConfig, maps::BenchSource};
use ensuresec_tests::{
    bench_lists::{
        SRC_OFFSET, block_edits, exact_addresses, exact_rows, in_prefix, pass_rows, prefix_rows,
        prefixes, unlisted,
    },
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
    xdp_harness::counting_only,
};
use ipnet::Ipv6Net;
use serde::Serialize;

const CIDR_ENTRIES: usize = 10_000;
/// IPv6 rows use at most this many exact entries (the default IPv6 capacity).
const EXACT_V6_MAX: usize = 262_144;
const CIDR6_ENTRIES: usize = 10_000;
const SIZES: [usize; 3] = [1, 10_000, 1_000_000];
const REPEAT: u32 = 2_000_000;
const ROUNDS: usize = 5;

#[derive(Serialize)]
struct Row {
    program: &'static str,
    entries: usize,
    cidr_entries: usize,
    template: &'static str,
    ns_per_packet: f64,
    /// The floor measured in the same run with the same template (and, for
    /// `random`, the same source table).
    floor_ns: f64,
    ratio_to_floor: f64,
}

fn packet(src: Ipv4Addr) -> Vec<u8> {
    frame(
        &[],
        ipv4(
            src,
            Ipv4Addr::new(10, 0, 0, 1),
            &V4Opts::default(),
            &L4::Tcp {
                sport: 40000,
                dport: 443,
                flags: TCP_SYN,
            },
        ),
    )
}

fn packet6(src: Ipv6Addr) -> Vec<u8> {
    frame(
        &[],
        ipv6(
            src,
            "2001:db8:ffff::1".parse().expect("address"),
            &[],
            &L4::Tcp {
                sport: 40000,
                dport: 443,
                flags: TCP_SYN,
            },
        ),
    )
}

/// Each fixed packet must take the path its row is named after.
fn expect_paths<const N: usize>(k: &Kernel, cases: [(Vec<u8>, u32); N]) -> Result<()> {
    for (i, (frame, want)) in cases.iter().enumerate() {
        anyhow::ensure!(
            k.run("ensuresec", frame)? == *want,
            "case {i} took the wrong path"
        );
    }
    Ok(())
}

fn median_ns(k: &Kernel, program: &str, frame: &[u8]) -> Result<f64> {
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        samples.push(k.time(program, frame, REPEAT)?);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[ROUNDS / 2])
}

fn bench_size(entries: usize, rng: &mut fastrand::Rng, rows: &mut Vec<Row>) -> Result<()> {
    let exact = exact_addresses(entries, rng);
    let nets = prefixes(CIDR_ENTRIES, rng);
    let entries6 = entries.min(EXACT_V6_MAX);
    let exact6: Vec<Ipv6Addr> = (0..entries6)
        .map(|_| Ipv6Addr::from(0x2001_0db8u128 << 96 | rng.u128(1..1 << 96)))
        .collect();
    let nets6: Vec<Ipv6Net> = (0..CIDR6_ENTRIES)
        .map(|_| {
            let len = rng.u8(32..=64);
            Ipv6Net::new(
                Ipv6Addr::from(0x2a00u128 << 112 | rng.u128(..1 << 112)),
                len,
            )
            .expect("length in range")
            .trunc()
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let sizes = MapSizes {
        exact_v4: (entries as u32).max(1024),
        exact_v6: (entries6 as u32).max(1024),
        cidr_v4: CIDR_ENTRIES as u32,
        cidr_v6: 2 * CIDR6_ENTRIES as u32,
    };
    let k = Kernel::with_bench_rows(sizes, entries.max(CIDR_ENTRIES) as u32)?;
    let block = Op::Block {
        expires_at_ns: 0,
        reason_id: 0,
        now_secs: 0,
    };
    let mut edits = block_edits(&exact, &nets);
    edits.extend(exact6.iter().map(|a| (Target::V6(*a), block)));
    edits.extend(nets6.iter().map(|n| (Target::Net6(*n), block)));
    k.store.write()?.edit(&edits)?;

    let (unlisted, in_prefix) = (unlisted(&exact), in_prefix(&nets));
    // Random templates: one row per possible source (host bits randomised).
    let (pass_rows, exact_rows, cidr_rows) = (pass_rows(), exact_rows(&exact), prefix_rows(&nets));

    let mut measure = |program: &'static str, template: &'static str, ns: f64, floor_ns: f64| {
        rows.push(Row {
            program,
            entries,
            cidr_entries: CIDR_ENTRIES,
            template,
            ns_per_packet: ns,
            floor_ns,
            ratio_to_floor: ns / floor_ns,
        });
    };
    expect_paths(
        &k,
        [
            (packet(unlisted), XDP_PASS),
            (packet(exact[0]), XDP_DROP),
            (packet(in_prefix), XDP_DROP),
        ],
    )?;
    let floor = median_ns(&k, "bench_floor", &packet(unlisted))?;
    measure("floor", "fixed", floor, floor);
    let fixed = [
        ("ensuresec-pass", unlisted),
        ("ensuresec-block-exact", exact[0]),
        ("ensuresec-block-cidr", in_prefix),
    ];
    for (program, src) in fixed {
        measure(
            program,
            "fixed",
            median_ns(&k, "ensuresec", &packet(src))?,
            floor,
        );
    }
    // Random: the floor draws from the same source table as the path it is
    // compared with, so the table's own cache misses count on both sides.
    let random: [(&'static str, &[BenchSource]); 3] = [
        ("ensuresec-pass", &pass_rows),
        ("ensuresec-block-exact", &exact_rows),
        ("ensuresec-block-cidr", &cidr_rows),
    ];
    for (program, table) in random {
        k.set_bench_sources(table, SRC_OFFSET)?;
        let floor = median_ns(&k, "bench_floor_random", &packet(unlisted))?;
        if program == "ensuresec-pass" {
            measure("floor", "random", floor, floor);
        }
        measure(
            program,
            "random",
            median_ns(&k, "bench_filter_random", &packet(unlisted))?,
            floor,
        );
    }

    // The same unlisted traffic with feature extraction on (trip wires set high
    // enough never to fire): what detection adds to every packet, the
    // source's horizon included. With random sources every packet is a new
    // source for the table, as in a spoofed flood.
    k.store.write()?.set_detect_config(&counting_only())?;
    let floor_fixed_now = median_ns(&k, "bench_floor", &packet(unlisted))?;
    measure(
        "ensuresec-pass+features",
        "fixed",
        median_ns(&k, "ensuresec", &packet(unlisted))?,
        floor_fixed_now,
    );
    k.set_bench_sources(&pass_rows, SRC_OFFSET)?;
    let floor_random = median_ns(&k, "bench_floor_random", &packet(unlisted))?;
    measure(
        "ensuresec-pass+features",
        "random",
        median_ns(&k, "bench_filter_random", &packet(unlisted))?,
        floor_random,
    );
    // IPv6, fixed template only (the random programs rewrite IPv4 sources).
    // The unlisted source lies among the listed prefixes, so the trie walk
    // goes down to where its path leaves theirs.
    let unlisted6 = loop {
        let candidate = Ipv6Addr::from(0x2a00u128 << 112 | rng.u128(..1 << 112));
        if !nets6.iter().any(|n| n.contains(&candidate)) {
            break candidate;
        }
    };
    let floor_fixed_now = median_ns(&k, "bench_floor", &packet6(unlisted6))?;
    measure(
        "ensuresec-pass+features-ipv6",
        "fixed",
        median_ns(&k, "ensuresec", &packet6(unlisted6))?,
        floor_fixed_now,
    );
    k.store
        .write()?
        .set_detect_config(&DetectConfig::default())?;

    let in_prefix6 = Ipv6Addr::from(u128::from(nets6[0].network()) | 1);
    let floor6 = median_ns(&k, "bench_floor", &packet6(unlisted6))?;
    rows.push(Row {
        program: "floor-ipv6",
        entries: entries6,
        cidr_entries: nets6.len(),
        template: "fixed",
        ns_per_packet: floor6,
        floor_ns: floor6,
        ratio_to_floor: 1.0,
    });
    expect_paths(
        &k,
        [
            (packet6(unlisted6), XDP_PASS),
            (packet6(exact6[0]), XDP_DROP),
            (packet6(in_prefix6), XDP_DROP),
        ],
    )?;
    for (program, src) in [
        ("ensuresec-pass-ipv6", unlisted6),
        ("ensuresec-block-exact-ipv6", exact6[0]),
        ("ensuresec-block-cidr-ipv6", in_prefix6),
    ] {
        let ns = median_ns(&k, "ensuresec", &packet6(src))?;
        rows.push(Row {
            program,
            entries: entries6,
            cidr_entries: nets6.len(),
            template: "fixed",
            ns_per_packet: ns,
            floor_ns: floor6,
            ratio_to_floor: ns / floor6,
        });
    }

    // Check that each path took the verdict it claims to measure.
    let verdicts = k.counters()?;
    let dropped = verdicts[2].packets + verdicts[3].packets;
    anyhow::ensure!(
        dropped > 0,
        "the block paths never dropped: the benchmark is wrong"
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(0x5eed_e115);
    let mut rows = Vec::new();
    // ENSURESEC_BENCH_SIZES=1,10000 runs a subset (for quick comparisons).
    let sizes: Vec<usize> = match std::env::var("ENSURESEC_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) => SIZES.to_vec(),
    };
    for entries in sizes {
        eprintln!("bench xdp: {entries} exact + {CIDR_ENTRIES} prefixes ...");
        bench_size(entries, &mut rng, &mut rows)?;
    }
    println!(
        "{:<28} {:>9} {:>6} {:>8} {:>8} {:>7}",
        "program", "entries", "cidr", "template", "ns/pkt", "xfloor"
    );
    for r in &rows {
        println!(
            "{:<28} {:>9} {:>6} {:>8} {:>8.1} {:>7.2}",
            r.program, r.entries, r.cidr_entries, r.template, r.ns_per_packet, r.ratio_to_floor
        );
    }
    ensuresec_tests::bench_out::write_json("xdp.json", &rows)?;
    Ok(())
}
