//! `cargo xtask bench detect`: every lab scenario at full rate, several runs
//! each; per scenario the median and p95 time-to-mitigate, shoppers' success,
//! packets per second offered and dropped, ring-buffer events and drops, and
//! the agent's CPU share and peak RSS. Writes target/bench/detect.json.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use ensuresec_tests::scenarios;
use serde::Serialize;

/// Runs of each attack scenario (time-to-mitigate percentiles come from these).
const RUNS: usize = 5;

#[derive(Serialize)]
struct Row {
    scenario: &'static str,
    runs: usize,
    detected_runs: usize,
    median_time_to_mitigate_ms: Option<f64>,
    p95_time_to_mitigate_ms: Option<f64>,
    shoppers_success_rate: f64,
    offered_pps: f64,
    dropped_pps: f64,
    ringbuf_events: u64,
    ringbuf_dropped: u64,
    agent_cpu_share: f64,
    agent_peak_rss_mib: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn main() -> Result<()> {
    let only: Vec<String> = std::env::args().skip(1).collect();
    for name in &only {
        scenarios::find(name, false)?;
    }
    let mut rows = Vec::new();
    for mut s in scenarios::all(false) {
        if !only.is_empty() && !only.iter().any(|o| o == s.name) {
            continue;
        }
        s.duration = Duration::from_secs(8);
        let runs = if s.attack.is_some() { RUNS } else { 1 };
        let mut ttm = Vec::new();
        let (mut ok, mut offered, mut dropped, mut events, mut lost) = (0.0, 0.0, 0.0, 0, 0);
        let (mut cpu, mut rss): (f64, f64) = (0.0, 0.0);
        for run in 0..runs {
            eprintln!("bench detect: {} run {}/{runs}", s.name, run + 1);
            let r = scenarios::run(&s)?;
            let role = match &s.attack {
                Some(a) if a.decision_on.is_some() => "destination",
                _ => "attacker",
            };
            if let Some(t) = r
                .sources
                .iter()
                .find(|x| x.role == role)
                .and_then(|x| x.time_to_mitigate_ms.filter(|_| x.mitigated))
            {
                ttm.push(t);
            }
            ok += r.shoppers_success_rate;
            let total: u64 = r.packets.values().sum();
            let drops = scenarios::dropped(&r.packets);
            offered += total as f64 / r.duration_s;
            dropped += drops as f64 / r.duration_s;
            events += r.ringbuf_events;
            lost += r.ringbuf_dropped;
            cpu = cpu.max(r.agent_cpu_share);
            rss = rss.max(r.agent_peak_rss_mib);
        }
        ttm.sort_by(f64::total_cmp);
        let n = runs as f64;
        rows.push(Row {
            scenario: s.name,
            runs,
            detected_runs: ttm.len(),
            median_time_to_mitigate_ms: percentile(&ttm, 50.0),
            p95_time_to_mitigate_ms: percentile(&ttm, 95.0),
            shoppers_success_rate: ok / n,
            offered_pps: offered / n,
            dropped_pps: dropped / n,
            ringbuf_events: events / runs as u64,
            ringbuf_dropped: lost / runs as u64,
            agent_cpu_share: cpu,
            agent_peak_rss_mib: rss,
        });
    }
    println!(
        "{:<20} {:>5} {:>9} {:>9} {:>8} {:>10} {:>10} {:>7} {:>6} {:>6} {:>7}",
        "scenario",
        "found",
        "ttm p50",
        "ttm p95",
        "shopper",
        "offered/s",
        "dropped/s",
        "events",
        "lost",
        "cpu",
        "rss MiB"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}ms"));
    for r in &rows {
        println!(
            "{:<20} {:>2}/{:<2} {:>9} {:>9} {:>8.3} {:>10.0} {:>10.0} {:>7} {:>6} {:>5.1}% {:>7.1}",
            r.scenario,
            r.detected_runs,
            r.runs,
            ms(r.median_time_to_mitigate_ms),
            ms(r.p95_time_to_mitigate_ms),
            r.shoppers_success_rate,
            r.offered_pps,
            r.dropped_pps,
            r.ringbuf_events,
            r.ringbuf_dropped,
            r.agent_cpu_share * 100.0,
            r.agent_peak_rss_mib
        );
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("detect.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
