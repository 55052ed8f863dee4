//! `cargo xtask bench flood`: the agent under a spoofed flood at the rig's
//! rate. The rig's generator (see `ensuresec_tests::rig`) sends SYNs to the
//! receiving end as fast as it can, half from 100,000 active sources (each
//! sends again and again, so they fill the per-source table) and half from
//! sources drawn from 8M spoofed addresses (one packet each); the receiving
//! end carries a real agent protecting it. Each round, a real attacker
//! (hping3, a SYN flood at 5,000 packets a second from a new address)
//! starts beside the flood; the time until the agent's ban or throttle on
//! it is in the kernel is measured, with the agent's CPU share and peak RSS
//! over the round. Writes target/bench/flood.json.
//!
//! `--rounds N` (default 5), `--seconds S` per round (default 8).

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ensuresec_agent::config::MapSizes;
use ensuresec_common::maps::BenchSource;
use ensuresec_tests::{
    bench_lists::be,
    kernel::{Kernel, TestPins},
    lab::{Agent, agent_metrics, ensuresec_bin},
    netns::run,
    rig::{DUT_ADDR, DUT_IF, GEN_IF, Rig},
    scenarios::usage,
};
use serde::Serialize;

/// Sources that send again and again, and the spoofed pool.
const ACTIVE_SOURCES: u32 = 100_000;
const SPOOFED_POOL_BITS: u32 = 23;

#[derive(Serialize)]
struct Row {
    round: usize,
    seconds: f64,
    /// Frames per second the receiving queue took (the flood and the attacker).
    received_mpps: f64,
    /// From the attacker's first packet to a decision that stops it in the
    /// kernel, a ban or a throttle (`None`: none within the round; an alert
    /// stops nothing), and which.
    attacker_stopped_ms: Option<f64>,
    attacker_action: Option<String>,
    agent_cpu_share: f64,
    agent_peak_rss_mib: f64,
    /// Trip events the kernel sent in the round, and had no room for.
    events_sent: u64,
    events_dropped: u64,
    /// What the filter did with the round's packets, by reason.
    packets_by_reason: std::collections::BTreeMap<String, u64>,
    /// Decisions in force at the round's end other than on the attackers,
    /// by detector and action.
    other_decisions: std::collections::BTreeMap<String, usize>,
}

/// Half the rows: one active source each (10.64.0.0 up); half: the
/// spoofed pool in 10.128.0.0/9.
fn source_rows() -> Vec<BenchSource> {
    let active = (0..ACTIVE_SOURCES).map(|i| BenchSource {
        addr_be: be(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + i)),
        host_mask_be: 0,
    });
    let spoofed = (0..ACTIVE_SOURCES).map(|_| BenchSource {
        addr_be: be(Ipv4Addr::new(10, 128, 0, 0)),
        host_mask_be: be(Ipv4Addr::from(u32::MAX >> (32 - SPOOFED_POOL_BITS))),
    });
    active.chain(spoofed).collect()
}

/// `ensuresec` in the receiving namespace, on the agent's pins.
fn ensuresec(rig: &Rig, pins: &TestPins) -> Command {
    let mut cmd = rig.dut_ns.nsenter(&ensuresec_bin().display().to_string());
    cmd.env("ENSURESEC_PIN_DIR", pins.pins.root());
    cmd
}

fn start_agent(rig: &Rig, pins: &TestPins, dir: &std::path::Path) -> Result<Agent> {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[interface]]\nname = \"{DUT_IF}\"\n\n[agent]\nstate_dir = \"{}\"\n\n[[protect]]\nprefix = \"10.99.0.0/24\"\n",
            dir.join("state").display()
        ),
    )?;
    let log = dir.join("agent.log");
    let child = ensuresec(rig, pins)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting the agent")?;
    let agent = Agent { child, log };
    ensuresec_tests::wait::eventually(Duration::from_secs(30), "the agent's metrics", || {
        Ok(agent_metrics(&rig.dut_ns).ok())
    })
    .with_context(|| std::fs::read_to_string(&agent.log).unwrap_or_default())?;
    Ok(agent)
}

/// Decisions in force: (target, detector, action).
fn decisions(rig: &Rig, pins: &TestPins) -> Result<Vec<(String, String, String)>> {
    let out = run(ensuresec(rig, pins).args(["decisions", "list", "-o", "json"]))?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let field = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (field("target"), field("detector"), field("action"))
        })
        .collect())
}

/// The kernel's event counts (sent, dropped) and packets per reason.
struct KernelCounts {
    events_sent: u64,
    events_dropped: u64,
    packets: std::collections::BTreeMap<String, u64>,
}

fn kernel_counts(rig: &Rig, pins: &TestPins) -> Result<KernelCounts> {
    let out = run(ensuresec(rig, pins).args(["status", "-o", "json"]))?;
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let packets = s["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["reason"].as_str()?.to_string(), c["packets"].as_u64()?)))
        .collect();
    Ok(KernelCounts {
        events_sent: s["events_sent"].as_u64().unwrap_or(0),
        events_dropped: s["events_dropped"].as_u64().unwrap_or(0),
        packets,
    })
}

/// hping3's SYN flood from `attacker` (an address of the generator's side).
fn attack(rig: &Rig, attacker: Ipv4Addr) -> Result<Child> {
    rig.gen_ns
        .ip(&["addr", "add", &format!("{attacker}/32"), "dev", GEN_IF])?;
    Ok(rig
        .gen_ns
        .cmd("hping3")
        .args(["-S", "-p", "80", "-i", "u200", "-q", "-a"])
        .arg(attacker.to_string())
        .arg(DUT_ADDR.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

fn options() -> Result<(usize, Duration)> {
    let (mut rounds, mut seconds) = (5, 8.0);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--rounds" => rounds = value()?.parse()?,
            "--seconds" => seconds = value()?.parse()?,
            other => bail!("unknown option {other} (--rounds N, --seconds S)"),
        }
    }
    // Each round's attacker has an address of its own in 10.99.0.100-199.
    anyhow::ensure!((1..=100).contains(&rounds), "--rounds: 1 to 100");
    Ok((rounds, Duration::from_secs_f64(seconds)))
}

fn main() -> Result<()> {
    let (rounds, time) = options()?;
    let rig = Rig::new()?;
    let pins = TestPins::new("flood");
    let dir = std::env::temp_dir().join(ensuresec_tests::kernel::unique("flood"));
    std::fs::create_dir_all(&dir)?;
    let agent = start_agent(&rig, &pins, &dir)?;
    rig.pin_receive_queue()?;
    let pid = agent.child.id();
    let rows_in = source_rows();
    let generator = Kernel::with_bench_rows(
        MapSizes {
            exact_v4: 4096,
            exact_v6: 4096,
            cidr_v4: 1024,
            cidr_v6: 1024,
        },
        rows_in.len() as u32,
    )?;
    generator.set_bench_sources(&rows_in, ensuresec_tests::bench_lists::SRC_OFFSET)?;
    let frame = rig.frame(Ipv4Addr::new(10, 64, 0, 1));
    let mut rows = Vec::new();
    let mut attackers = Vec::new();
    for round in 0..rounds {
        let attacker = Ipv4Addr::new(10, 99, 0, 100 + round as u8);
        attackers.push(attacker.to_string());
        let (cpu0, _) = usage(pid);
        let k0 = kernel_counts(&rig, &pins)?;
        let started = Instant::now();
        let (received_mpps, banned) = std::thread::scope(|s| -> Result<_> {
            let flood = s.spawn(|| rig.measure(&generator, &frame, time).map(|r| r.mpps));
            // The flood settles first; then the attacker starts beside it.
            std::thread::sleep(time / 4);
            let mut hping = attack(&rig, attacker)?;
            let attack_start = Instant::now();
            let mut banned = None;
            while started.elapsed() < time {
                let attacker = attacker.to_string();
                let stopping = decisions(&rig, &pins)?
                    .into_iter()
                    .find(|(target, _, action)| {
                        *target == attacker && (action == "ban" || action == "throttle")
                    });
                if let Some((_, _, action)) = stopping {
                    banned = Some((attack_start.elapsed().as_secs_f64() * 1e3, action));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = hping.kill();
            let _ = hping.wait();
            let mpps = flood
                .join()
                .map_err(|_| anyhow::anyhow!("flood thread"))??;
            Ok((mpps, banned))
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let (cpu1, rss) = usage(pid);
        let k1 = kernel_counts(&rig, &pins)?;
        let packets_by_reason = k1
            .packets
            .iter()
            .map(|(r, n)| (r.clone(), n - k0.packets.get(r).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let mut others = std::collections::BTreeMap::new();
        for (target, detector, action) in decisions(&rig, &pins)? {
            if !attackers.contains(&target) {
                *others.entry(format!("{detector} {action}")).or_insert(0) += 1;
            }
        }
        let row = Row {
            round,
            seconds,
            received_mpps,
            attacker_stopped_ms: banned.as_ref().map(|b| b.0),
            attacker_action: banned.map(|b| b.1),
            agent_cpu_share: (cpu1 - cpu0) / seconds,
            agent_peak_rss_mib: rss,
            events_sent: k1.events_sent - k0.events_sent,
            events_dropped: k1.events_dropped - k0.events_dropped,
            packets_by_reason,
            other_decisions: others,
        };
        eprintln!(
            "round {round}: received {:.2} Mpps, attacker stopped {}, agent CPU {:.0} %, peak RSS {:.0} MiB, events {} sent / {} dropped, other decisions {:?}, packets {:?}",
            row.received_mpps,
            match (&row.attacker_stopped_ms, &row.attacker_action) {
                (Some(ms), Some(action)) => format!("({action}) after {ms:.0} ms"),
                _ => "never".into(),
            },
            row.agent_cpu_share * 100.0,
            row.agent_peak_rss_mib,
            row.events_sent,
            row.events_dropped,
            row.other_decisions,
            row.packets_by_reason,
        );
        rows.push(row);
    }
    ensuresec_tests::bench_out::write_json("flood.json", &rows)?;
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
