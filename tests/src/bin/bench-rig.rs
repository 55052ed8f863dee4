//! `cargo xtask bench rig`: packets per second on live frames through a veth
//! pair (see `ensuresec_tests::rig`), ensuresec beside xdp-filter, an
//! nftables netdev-ingress set and iptables' raw table with an ipset, with
//! the same addresses and prefixes, each round next to the XDP_DROP floor
//! (drop rows) or the XDP_PASS floor (pass rows: the kernel's stack behind
//! them) measured in the same round. Writes target/bench/rig.json.
//!
//! `--entries 10000,1000000` (default), `--rounds N` (5), `--seconds S`
//! (1 per measurement); `--smoke` runs 100 entries, one short round.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result};
use ensuresec_agent::config::MapSizes;
use ensuresec_common::{features::DetectConfig, maps::BenchSource, ports::bitmap};
use ensuresec_tests::{
    bench_lists::{
        SRC_OFFSET, block_edits, exact_addresses, exact_rows, in_prefix, pass_rows, prefix_rows,
        prefixes, unlisted,
    },
    kernel::Kernel,
    rig::{
        Rate, Rig,
        peers::{Iptables, Nftables, XDP_FILTER_MAX, XdpFilter},
    },
    xdp_harness::counting_only,
};
use ipnet::Ipv4Net;
use serde::Serialize;

const CIDR_ENTRIES: usize = 10_000;

#[derive(Serialize)]
struct Row {
    system: String,
    path: &'static str,
    entries: usize,
    template: &'static str,
    mpps: f64,
    /// The floor of the path measured in the same rounds, and the ratio.
    floor_mpps: f64,
    of_floor: f64,
    /// Receiving-CPU nanoseconds per frame (the NAPI thread's runtime over
    /// the frames it took), and the frames per second one receiving CPU
    /// could take at that cost: what the system costs, whatever the
    /// generator offers.
    rx_ns_per_frame: f64,
    rx_capacity_mpps: f64,
    /// The floor's receiving-CPU nanoseconds per frame (the veth and NAPI
    /// work every system pays), measured in the same rounds.
    floor_rx_ns_per_frame: f64,
}

struct Options {
    entries: Vec<usize>,
    rounds: usize,
    time: Duration,
}

fn options() -> Result<Options> {
    let mut o = Options {
        entries: vec![10_000, 1_000_000],
        rounds: 5,
        time: Duration::from_secs(1),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--entries" => {
                o.entries = value()?
                    .split(',')
                    .map(|n| n.trim().parse().context("--entries: numbers"))
                    .collect::<Result<_>>()?
            }
            "--rounds" => o.rounds = value()?.parse().context("--rounds")?,
            "--seconds" => o.time = Duration::from_secs_f64(value()?.parse().context("--seconds")?),
            "--smoke" => {
                o.entries = vec![100];
                o.rounds = 1;
                o.time = Duration::from_millis(300);
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// The traffic of one path: the fixed template's source and the random
/// template's source table.
struct Traffic {
    path: &'static str,
    fixed: Ipv4Addr,
    random: Vec<BenchSource>,
}

fn traffic(exact: &[Ipv4Addr], nets: &[Ipv4Net]) -> Vec<Traffic> {
    vec![
        Traffic {
            path: "drop-exact",
            fixed: exact[0],
            random: exact_rows(exact),
        },
        Traffic {
            path: "drop-prefix",
            fixed: in_prefix(nets),
            random: prefix_rows(nets),
        },
        Traffic {
            path: "pass",
            fixed: unlisted(exact),
            random: pass_rows(),
        },
    ]
}

/// What sits on the receiving end for one system.
#[derive(Clone, Copy)]
enum Dut {
    /// A program of the ensuresec object (lists and detection as set).
    Program(&'static str),
    /// An XDP_PASS program in front of a netfilter peer.
    Netfilter,
    /// An XDP program attached by its own tool (xdp-filter), which holds
    /// the interface: its rounds are measured beside the floor the
    /// ensuresec rows of the same path and template measured last.
    Attached,
}

struct Bench<'a> {
    rig: &'a Rig,
    dut: Kernel,
    generator: Kernel,
    opts: &'a Options,
    rows: Vec<Row>,
    /// The floor rounds last measured per (path, template).
    floors: std::collections::HashMap<(&'static str, &'static str), Vec<Rate>>,
}

impl Bench<'_> {
    /// Measures `system` on `t`'s path, both templates, each round beside its
    /// floor; the system's program (if any) is attached for its turn only.
    fn measure(&mut self, system: &str, dut: Dut, t: &Traffic, entries: usize) -> Result<()> {
        let floor_program = if t.path == "pass" {
            "bench_pass"
        } else {
            "bench_floor"
        };
        for template in ["fixed", "random"] {
            let rows: &[BenchSource] = if template == "fixed" { &[] } else { &t.random };
            self.generator.set_bench_sources(rows, SRC_OFFSET)?;
            let frame = self.rig.frame(t.fixed);
            let (mut floors, mut systems) = (Vec::new(), Vec::new());
            for _ in 0..self.opts.rounds {
                match dut {
                    Dut::Program(p) => {
                        floors.push(self.turn(floor_program, &frame)?);
                        systems.push(self.turn(p, &frame)?);
                    }
                    // Netfilter sees what an XDP_PASS program passes on.
                    Dut::Netfilter => {
                        floors.push(self.turn(floor_program, &frame)?);
                        systems.push(self.turn("bench_pass", &frame)?);
                    }
                    Dut::Attached => {
                        systems.push(self.rig.measure(&self.generator, &frame, self.opts.time)?)
                    }
                }
            }
            let key = (t.path, template);
            if floors.is_empty() {
                floors = self
                    .floors
                    .get(&key)
                    .cloned()
                    .context("no floor measured yet")?;
            } else {
                self.floors.insert(key, floors.clone());
            }
            let (floor, floor_ns) = (
                median_of(&floors, |r| r.mpps),
                median_of(&floors, |r| r.rx_ns_per_frame),
            );
            let (mpps, ns) = (
                median_of(&systems, |r| r.mpps),
                median_of(&systems, |r| r.rx_ns_per_frame),
            );
            eprintln!(
                "  {system:<22} {:<11} {template:<6} {mpps:6.2} Mpps (floor {floor:.2}), {ns:5.0} ns a frame on the receiving CPU (floor {floor_ns:.0})",
                t.path
            );
            self.rows.push(Row {
                system: system.to_string(),
                path: t.path,
                entries,
                template,
                mpps,
                floor_mpps: floor,
                of_floor: mpps / floor,
                rx_ns_per_frame: ns,
                rx_capacity_mpps: 1e3 / ns,
                floor_rx_ns_per_frame: floor_ns,
            });
        }
        Ok(())
    }

    /// One measurement with `program` attached on the receiving end.
    fn turn(&mut self, program: &'static str, frame: &[u8]) -> Result<Rate> {
        let link = self.rig.attach(&mut self.dut, program)?;
        let rate = self.rig.measure(&self.generator, frame, self.opts.time);
        ensuresec_tests::rig::within(&self.rig.dut_ns, || self.dut.detach(program, link))??;
        rate
    }
}

/// The median of one measure of `rates`.
fn median_of(rates: &[Rate], measure: fn(&Rate) -> f64) -> f64 {
    let mut v: Vec<f64> = rates.iter().map(measure).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let opts = options()?;
    let rig = Rig::new()?;
    let mut rng = fastrand::Rng::with_seed(0x5eed_0419);
    let mut rows = Vec::new();
    for &entries in &opts.entries {
        eprintln!("bench rig: {entries} exact + prefixes ...");
        let exact = exact_addresses(entries, &mut rng);
        // The smoke run lists fewer prefixes too.
        let nets = prefixes(CIDR_ENTRIES.min(entries.max(100)), &mut rng);
        let sizes = MapSizes {
            exact_v4: (entries as u32).max(1024),
            exact_v6: 1024,
            cidr_v4: nets.len() as u32,
            cidr_v6: 1024,
        };
        let dut = Kernel::new(sizes)?;
        dut.store.write()?.edit(&block_edits(&exact, &nets))?;
        let generator =
            Kernel::with_bench_rows(MapSizes::default(), entries.max(nets.len()) as u32)?;
        let mut bench = Bench {
            rig: &rig,
            dut,
            generator,
            opts: &opts,
            rows: Vec::new(),
            floors: Default::default(),
        };
        let paths = traffic(&exact, &nets);
        for t in &paths {
            bench.measure("ensuresec", Dut::Program("ensuresec"), t, entries)?;
        }
        // Detection on (trip wires high enough never to fire): the pass path
        // is where it works; listed sources are decided before it.
        bench
            .dut
            .store
            .write()?
            .set_detect_config(&counting_only())?;
        bench.measure(
            "ensuresec+detection",
            Dut::Program("ensuresec"),
            &paths[2],
            entries,
        )?;
        // A drop after detection, without the kernel's stack behind it: the
        // port policy closes the frames' port to unlisted sources.
        let closed = Traffic {
            path: "drop-policy",
            fixed: unlisted(&exact),
            random: pass_rows(),
        };
        let only_80 = bitmap(&["80".parse()?]);
        let policy = |b: &Bench, on: bool| -> Result<()> {
            Ok(b.dut
                .store
                .write()?
                .set_port_policy(on, &only_80, &only_80)?)
        };
        policy(&bench, true)?;
        bench.measure(
            "ensuresec+detection",
            Dut::Program("ensuresec"),
            &closed,
            entries,
        )?;
        bench
            .dut
            .store
            .write()?
            .set_detect_config(&DetectConfig::default())?;
        bench.measure("ensuresec", Dut::Program("ensuresec"), &closed, entries)?;
        policy(&bench, false)?;

        if entries <= XDP_FILTER_MAX {
            let filter = XdpFilter::load(&rig, &exact)?;
            bench.measure("xdp-filter", Dut::Attached, &paths[0], entries)?;
            drop(filter);
        } else {
            eprintln!("  xdp-filter: skipped, its map holds {XDP_FILTER_MAX} addresses");
        }
        {
            let _nft = Nftables::load(&rig, &exact, &nets)?;
            bench.measure("nftables", Dut::Netfilter, &paths[0], entries)?;
            bench.measure("nftables", Dut::Netfilter, &paths[1], entries)?;
        }
        {
            let _ipt = Iptables::load(&rig, &exact, &nets)?;
            bench.measure("iptables+ipset", Dut::Netfilter, &paths[0], entries)?;
            bench.measure("iptables+ipset", Dut::Netfilter, &paths[1], entries)?;
        }
        rows.append(&mut bench.rows);
    }
    println!(
        "{:<22} {:<11} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9}",
        "system",
        "path",
        "entries",
        "template",
        "Mpps",
        "floor",
        "xfloor",
        "rx ns/fr",
        "floor ns",
        "rx Mpps"
    );
    for r in &rows {
        println!(
            "{:<22} {:<11} {:>9} {:>8} {:>8.2} {:>8.2} {:>7.2} {:>9.0} {:>9.0} {:>9.2}",
            r.system,
            r.path,
            r.entries,
            r.template,
            r.mpps,
            r.floor_mpps,
            r.of_floor,
            r.rx_ns_per_frame,
            r.floor_rx_ns_per_frame,
            r.rx_capacity_mpps
        );
    }
    ensuresec_tests::bench_out::write_json("rig.json", &rows)?;
    Ok(())
}
