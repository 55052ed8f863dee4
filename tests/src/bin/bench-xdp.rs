//! `cargo xtask bench xdp`: kernel-measured ns per packet of each ensuresec path
//! with BPF_PROG_TEST_RUN (`repeat`), against a floor program measured in the
//! same run. Writes target/bench/xdp.json.
//!
//! Templates: `fixed` runs one packet over and over (caches stay warm); `random`
//! rewrites the IPv4 source on every run from a table (random unlisted sources,
//! random blocked addresses, random hosts in random blocked prefixes), the way a
//! spoofed flood defeats caches. Its floor randomises the same way.

use std::{collections::HashSet, net::Ipv4Addr, path::PathBuf};

use anyhow::Result;
use ensuresec_agent::{config::MapSizes, edit::Op};
use ensuresec_common::{entry::Target, maps::BenchSource};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
};
use ipnet::Ipv4Net;
use serde::Serialize;

const CIDR_ENTRIES: usize = 10_000;
const SIZES: [usize; 3] = [1, 10_000, 1_000_000];
const REPEAT: u32 = 2_000_000;
const ROUNDS: usize = 5;
/// IPv4 source offset in an untagged frame.
const SRC_OFFSET: u32 = 26;

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

/// Exact addresses live in 1.0.0.0-126.255.255.255 and prefixes in the upper
/// half, so an unlisted source is easy to pick and never inside a prefix.
fn exact_addresses(n: usize, rng: &mut fastrand::Rng) -> Vec<Ipv4Addr> {
    let mut set = HashSet::with_capacity(n);
    while set.len() < n {
        set.insert(Ipv4Addr::from(rng.u32(0x0100_0000..0x7f00_0000)));
    }
    set.into_iter().collect()
}

/// Prefixes of /12 to /28 at random places in 128.0.0.0/1.
fn prefixes(n: usize, rng: &mut fastrand::Rng) -> Vec<Ipv4Net> {
    let mut set = HashSet::with_capacity(n);
    while set.len() < n {
        let len = rng.u8(12..=28);
        let addr = Ipv4Addr::from(rng.u32(0x8000_0000..=u32::MAX));
        set.insert(Ipv4Net::new(addr, len).expect("length in range").trunc());
    }
    set.into_iter().collect()
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
    let sizes = MapSizes {
        exact_v4: (entries as u32).max(1024),
        exact_v6: 1024,
        cidr_v4: CIDR_ENTRIES as u32,
        cidr_v6: 1024,
    };
    let k = Kernel::with_bench_rows(sizes, entries.max(CIDR_ENTRIES) as u32)?;
    let block = Op::Block {
        expires_at_ns: 0,
        reason_id: 0,
        now_secs: 0,
    };
    let mut edits: Vec<(Target, Op)> = exact.iter().map(|a| (Target::V4(*a), block)).collect();
    edits.extend(nets.iter().map(|n| (Target::Net4(*n), block)));
    k.store.edit(&edits)?;

    let listed: HashSet<Ipv4Addr> = exact.iter().copied().collect();
    let unlisted = (1u32..)
        .map(|i| Ipv4Addr::from(0x0b00_0000 + i * 7919))
        .find(|a| !listed.contains(a))
        .expect("an unlisted address");
    let in_prefix = Ipv4Addr::from(u32::from(nets[0].network()) | 1);

    // Random templates: one row per possible source (host bits randomised).
    let be = |a: Ipv4Addr| u32::from_ne_bytes(a.octets());
    let mask_be = |bits: u32| u32::from_ne_bytes(bits.to_be_bytes());
    let pass_rows = [BenchSource {
        addr_be: be(Ipv4Addr::new(1, 0, 0, 0)),
        host_mask_be: mask_be(0x3fff_ffff),
    }];
    let exact_rows: Vec<BenchSource> = exact
        .iter()
        .map(|a| BenchSource {
            addr_be: be(*a),
            host_mask_be: 0,
        })
        .collect();
    let cidr_rows: Vec<BenchSource> = nets
        .iter()
        .map(|n| BenchSource {
            addr_be: be(n.network()),
            host_mask_be: mask_be(u32::from(n.hostmask())),
        })
        .collect();

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
    // Each fixed packet must take the path its row is named after.
    for (src, want) in [
        (unlisted, XDP_PASS),
        (exact[0], XDP_DROP),
        (in_prefix, XDP_DROP),
    ] {
        anyhow::ensure!(
            k.run("ensuresec", &packet(src))? == want,
            "{src} took the wrong path"
        );
    }
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
    for entries in SIZES {
        eprintln!("bench xdp: {entries} exact + {CIDR_ENTRIES} prefixes ...");
        bench_size(entries, &mut rng, &mut rows)?;
    }
    println!(
        "{:<24} {:>9} {:>6} {:>8} {:>8} {:>7}",
        "program", "entries", "cidr", "template", "ns/pkt", "xfloor"
    );
    for r in &rows {
        println!(
            "{:<24} {:>9} {:>6} {:>8} {:>8.1} {:>7.2}",
            r.program, r.entries, r.cidr_entries, r.template, r.ns_per_packet, r.ratio_to_floor
        );
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("xdp.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
