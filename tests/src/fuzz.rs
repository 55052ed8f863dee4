//! `cargo xtask fuzz`: random and mutated frames through the XDP filter with
//! BPF_PROG_TEST_RUN, each checked against the reference (`reference`): the
//! verdict of every frame, and the counters of every reason over each phase.
//! Phases alternate the port policy on and off, with detection on, so that
//! the filter, the tail-called detection program and the fragment memory
//! all run.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Instant};

use anyhow::Result;
use ensuresec_agent::{config::MapSizes, store::RawMap};
use ensuresec_common::{
    entry::Target,
    features::DetectConfig,
    maps::{FragKey, MAP_FRAGS},
    ports::{PortRange, bitmap},
    reason::Reason,
};
use serde::Serialize;

use crate::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    packet::*,
    reference::{self, Memory, Policy},
};

/// Frames per phase (the port policy flips between phases).
const PHASE: u64 = 8192;

#[derive(Debug, Default, Serialize)]
pub struct FuzzReport {
    pub packets: u64,
    pub seed: u64,
    /// Runs that returned XDP_ABORTED or an unknown action.
    pub aborts: u64,
    /// Frames whose verdict differs from the reference.
    pub mismatches: u64,
    /// Phases whose per-reason counters differ from the reference's count.
    pub counter_mismatches: u64,
    pub packets_per_second: f64,
    /// Frames per reason, as the reference gave them.
    pub reasons: BTreeMap<&'static str, u64>,
    /// The first few disagreements, for a human.
    pub examples: Vec<String>,
}

impl FuzzReport {
    pub fn clean(&self) -> bool {
        self.aborts == 0 && self.mismatches == 0 && self.counter_mismatches == 0
    }
}

/// The lists the fuzzer runs against: exact and prefix blocks, an exact
/// allow inside a blocked prefix, an allowed prefix. No exact block lies in a
/// blocked prefix, so which of the two decides is never in question.
fn lists() -> Vec<(Target, bool)> {
    [
        ("192.0.2.66", false),
        ("198.51.100.0/24", false),
        ("198.51.100.7", true),
        ("203.0.113.128/25", true),
        ("2001:db8::66", false),
        ("2001:db8:bad::/48", false),
        ("2001:db8:bad::7", true),
    ]
    .into_iter()
    .map(|(t, allow)| (t.parse().expect("a target"), allow))
    .collect()
}

/// Frames worth mutating: every class the parser knows, from listed and
/// clean sources.
fn bases() -> Vec<Vec<u8>> {
    let v4 = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
    let sources4 = [
        "192.0.2.66",
        "198.51.100.9",
        "198.51.100.7",
        "203.0.113.200",
        "10.1.2.3",
    ];
    let sources6 = [
        "2001:db8::66",
        "2001:db8:bad::9",
        "2001:db8:bad::7",
        "2001:db8:1::1",
    ];
    let l4s = [
        L4::Tcp {
            sport: 40000,
            dport: 80,
            flags: TCP_SYN,
        },
        L4::Tcp {
            sport: 443,
            dport: 51000,
            flags: TCP_SYN | TCP_ACK,
        },
        L4::Udp {
            sport: 53,
            dport: 40000,
            payload: vec![1; 40],
        },
        L4::Udp {
            sport: 5000,
            dport: 161,
            payload: vec![2; 20],
        },
    ];
    let mut out = Vec::new();
    for src in sources4 {
        for l4 in l4s.iter().chain([&L4::IcmpEcho]) {
            for frag in [0u16, 0x2000, 0x0003, 0x4000] {
                let opts = V4Opts {
                    frag,
                    ..Default::default()
                };
                out.push(frame(&[], ipv4(v4(src), v4("10.0.0.1"), &opts, l4)));
            }
            out.push(frame(
                &[(0x8100, 7), (0x88a8, 9)],
                ipv4(v4(src), v4("10.0.0.1"), &V4Opts::default(), l4),
            ));
        }
    }
    for src in sources6 {
        let src = src.parse().unwrap();
        let dst = "2001:db8:ffff::1".parse().unwrap();
        for l4 in l4s.iter().chain([&L4::Icmpv6Echo]) {
            out.push(frame(&[], ipv6(src, dst, &[], l4)));
            out.push(frame(
                &[],
                ipv6(
                    src,
                    dst,
                    &[Ext::options(EXT_HOPOPTS, 1), Ext::fragment(0, true)],
                    l4,
                ),
            ));
            out.push(frame(&[], ipv6(src, dst, &[Ext::fragment(3, false)], l4)));
            let many: Vec<Ext> = (0..9).map(|_| Ext::options(EXT_DSTOPTS, 1)).collect();
            out.push(frame(&[], ipv6(src, dst, &many, l4)));
            out.push(frame(&[], ipv6(src, dst, &[Ext::ah()], l4)));
        }
    }
    out
}

/// A frame: random bytes, or a base frame with a few bytes changed or cut.
fn next_frame(rng: &mut fastrand::Rng, bases: &[Vec<u8>]) -> Vec<u8> {
    if rng.u8(..) < 64 {
        let len = rng.usize(14..300);
        return (0..len).map(|_| rng.u8(..)).collect();
    }
    let mut f = bases[rng.usize(..bases.len())].clone();
    for _ in 0..rng.usize(0..6) {
        let i = rng.usize(..f.len());
        f[i] = rng.u8(..);
    }
    if rng.u8(..) < 48 {
        f.truncate(rng.usize(14..=f.len()));
    }
    f
}

fn set_policy(k: &Kernel, on: bool) -> Result<Option<(Vec<u16>, Vec<u16>)>> {
    let (tcp, udp) = (vec![22u16, 80, 443], vec![53u16, 40000]);
    let ranges = |ports: &[u16]| -> Vec<PortRange> {
        ports
            .iter()
            .map(|p| p.to_string().parse().unwrap())
            .collect()
    };
    k.store
        .write()?
        .set_port_policy(on, &bitmap(&ranges(&tcp)), &bitmap(&ranges(&udp)))?;
    Ok(on.then_some((tcp, udp)))
}

/// Forgets every remembered first fragment (the reference starts afresh too).
fn clear_fragments(k: &Kernel) -> Result<()> {
    let map = RawMap::open(&k.pins.pins, MAP_FRAGS)?;
    for key in ensuresec_agent::sys::keys::<FragKey>(map.fd())? {
        map.remove(&key)?;
    }
    Ok(())
}

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `packets` frames from `seed`.
pub fn run(packets: u64, seed: u64) -> Result<FuzzReport> {
    let k = Kernel::new(MapSizes {
        exact_v4: 1024,
        exact_v6: 1024,
        cidr_v4: 64,
        cidr_v6: 64,
    })?;
    let lists = lists();
    for (target, allow) in &lists {
        if *allow {
            k.allow(&target.to_string())?;
        } else {
            k.block(&target.to_string())?;
        }
    }
    k.store.write()?.set_detect_config(&DetectConfig {
        enabled: 1,
        window_ns: 1_000_000_000,
        trip_packets: 1_000,
        trip_ports: 1_000,
        trip_dsts: 1_000,
        trip_dst_packets: 100_000,
        cpus: 1,
        ..DetectConfig::default()
    })?;
    let bases = bases();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = FuzzReport {
        seed,
        ..FuzzReport::default()
    };
    let mut memory = Memory::default();
    let started = Instant::now();
    let mut done = 0;
    let mut phase = 0;
    while done < packets {
        let policy = Policy {
            lists: lists.clone(),
            ports: set_policy(&k, phase % 2 == 1)?,
        };
        clear_fragments(&k)?;
        memory.clear();
        let before = k.counters()?;
        let mut expected = vec![0u64; Reason::COUNT];
        let this = PHASE.min(packets - done);
        for _ in 0..this {
            let f = next_frame(&mut rng, &bases);
            let want = reference::verdict(&f, &policy, &mut memory);
            expected[want as usize] += 1;
            *report.reasons.entry(want.name()).or_default() += 1;
            let got = k.run("ensuresec", &f)?;
            if got != XDP_PASS && got != XDP_DROP {
                report.aborts += 1;
            }
            let want_verdict = if want.drops() { XDP_DROP } else { XDP_PASS };
            if got != want_verdict {
                report.mismatches += 1;
                if report.examples.len() < 5 {
                    report
                        .examples
                        .push(format!("{} expected {want:?}, got {got}", hex(&f)));
                }
            }
        }
        let after = k.counters()?;
        let moved: Vec<u64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.packets - b.packets)
            .collect();
        if moved != expected {
            report.counter_mismatches += 1;
            if report.examples.len() < 5 {
                let differ: Vec<String> = Reason::ALL
                    .iter()
                    .filter(|r| moved[**r as usize] != expected[**r as usize])
                    .map(|r| {
                        format!(
                            "{}: counted {}, expected {}",
                            r.name(),
                            moved[*r as usize],
                            expected[*r as usize]
                        )
                    })
                    .collect();
                report
                    .examples
                    .push(format!("phase {phase}: {}", differ.join("; ")));
            }
        }
        done += this;
        phase += 1;
    }
    report.packets = done;
    report.packets_per_second = done as f64 / started.elapsed().as_secs_f64();
    Ok(report)
}
