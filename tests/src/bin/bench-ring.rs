//! `cargo xtask bench ring`: how many trip events per second the agent's
//! ring buffer reader drains, and what the kernel drops, when one CPU sends
//! events as fast as it can (see `ensuresec_tests::ring_load`) at a real
//! agent on the other. Sources are drawn from pools of 1 to 8M addresses:
//! a few subjects tripping again and again (merged while queued), then ever
//! more distinct ones (each handled by the detectors, or shed past the
//! queue's bound). Writes target/bench/ring.json.
//!
//! `--seconds S` per pool (default 5); `--smoke`: 1 s, two pools.

use std::time::Duration;

use anyhow::{Context as _, Result};
use ensuresec_tests::ring_load::RingLoad;
use serde::Serialize;

#[derive(Serialize)]
struct Row {
    /// Distinct sources the events are about.
    subjects: u64,
    seconds: f64,
    /// Events the program tried to send per second (sent + dropped).
    offered_per_s: f64,
    /// Events the kernel had no room for.
    kernel_dropped: u64,
    dropped_share: f64,
    /// Events the agent's reader copied out per second.
    read_per_s: f64,
    /// Merged into a queued event about the same source; shed past the bound.
    coalesced: u64,
    shed: u64,
    /// Events the detectors handled (one per subject and turn), until the
    /// agent caught up, and how long after the load it did.
    handled: u64,
    caught_up_after_s: f64,
    agent_cpu_share: f64,
    /// The reader's CPU share, and the events it reads per second of its
    /// own CPU time: its capacity, whatever the generator could offer.
    reader_cpu_share: f64,
    reader_events_per_cpu_s: f64,
    agent_peak_rss_mib: f64,
}

fn options() -> Result<(Duration, Vec<u64>)> {
    let mut seconds = 5.0;
    let mut pools = vec![1, 1 << 10, 1 << 16, 1 << 23];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().context("--seconds needs a value")?.parse()?,
            "--smoke" => {
                seconds = 1.0;
                pools = vec![1, 1 << 16];
            }
            other => anyhow::bail!("unknown option {other} (--seconds S, --smoke)"),
        }
    }
    Ok((Duration::from_secs_f64(seconds), pools))
}

fn main() -> Result<()> {
    let (time, pools) = options()?;
    let load = RingLoad::new()?;
    let pid = load.agent.child.id();
    let mut rows = Vec::new();
    for subjects in pools {
        let before = load.counts()?;
        let seconds = load.offer(subjects, time)?;
        let during = load.counts()?;
        let caught = std::time::Instant::now();
        let after = load.wait_caught_up()?;
        let caught_up_after_s = caught.elapsed().as_secs_f64();
        let offered = (during.sent + during.dropped) - (before.sent + before.dropped);
        let kernel_dropped = during.dropped - before.dropped;
        let reader_cpu = during.reader_cpu_s - before.reader_cpu_s;
        let row = Row {
            subjects,
            seconds,
            offered_per_s: offered as f64 / seconds,
            kernel_dropped,
            dropped_share: kernel_dropped as f64 / offered.max(1) as f64,
            read_per_s: (during.read - before.read) as f64 / seconds,
            coalesced: after.coalesced - before.coalesced,
            shed: after.shed - before.shed,
            handled: after.handled - before.handled,
            caught_up_after_s,
            agent_cpu_share: (during.cpu_s - before.cpu_s) / seconds,
            reader_cpu_share: reader_cpu / seconds,
            reader_events_per_cpu_s: (during.read - before.read) as f64 / reader_cpu.max(0.01),
            agent_peak_rss_mib: ensuresec_tests::scenarios::usage(pid).1,
        };
        eprintln!(
            "{:>9} subjects: offered {:.2} M/s, read {:.2} M/s, kernel dropped {:.2} %, coalesced {}, shed {}, handled {} (caught up {:.1} s after), agent CPU {:.0} % (reader {:.0} %: {:.1} M events per CPU second), peak RSS {:.0} MiB",
            row.subjects,
            row.offered_per_s / 1e6,
            row.read_per_s / 1e6,
            row.dropped_share * 100.0,
            row.coalesced,
            row.shed,
            row.handled,
            row.caught_up_after_s,
            row.agent_cpu_share * 100.0,
            row.reader_cpu_share * 100.0,
            row.reader_events_per_cpu_s / 1e6,
            row.agent_peak_rss_mib,
        );
        rows.push(row);
    }
    ensuresec_tests::bench_out::write_json("ring.json", &rows)?;
    Ok(())
}
