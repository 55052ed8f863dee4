//! `cargo xtask bench app`: each application scenario against the lab shop,
//! once with ensuresec and once with fail2ban (its shipped nginx jails plus
//! a jail for the shop's failed logins; see `ensuresec_tests::fail2ban`), on
//! the same nginx logs: detected or not, time from the deciding line being
//! written to the first packet of the attacker's dropped (measured from
//! outside both: `ensuresec_tests::cutoff`), attacker requests answered
//! after the deciding line appeared, benign clients banned. Writes
//! target/bench/app.json.

mod judge;
mod watch;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use ensuresec_tests::{
    app_scenarios::{self, Attackers},
    fail2ban::Fail2ban,
    shop::ShopLab,
};
use serde::Serialize;

use crate::{judge::Outcome, watch::Watch};

/// Runs of each scenario per system (time to mitigate is a median over them).
const RUNS: usize = 3;

#[derive(Serialize)]
struct Row {
    scenario: &'static str,
    system: &'static str,
    detected: bool,
    ttm_ms_median: Option<f64>,
    ttm_ms_p95: Option<f64>,
    /// Runs the time to mitigate was measured in.
    ttm_samples: usize,
    attacker_requests_after: Option<u64>,
    benign_banned: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum System {
    Ensuresec,
    Fail2ban,
}

fn run(shop_bin: &str, scenario: &'static str, system: System) -> Result<Outcome> {
    let shop = ShopLab::new(shop_bin)?;
    let (agent, f2b) = match system {
        System::Ensuresec => (Some(shop.lab.start_agent(&shop.agent_config("")?)?), None),
        System::Fail2ban => (None, Some(Fail2ban::start(&shop)?)),
    };
    let watch = Watch::start(&shop, app_scenarios::by_the_attacker(scenario));
    let played = app_scenarios::play(&shop, scenario)?;
    let outcome = match (&played.attackers, &f2b) {
        (Attackers::Many(hosts), f2b) => {
            watch.finish(false)?;
            judge::many_cut_off(&shop, f2b.as_ref(), hosts)?
        }
        (_, None) => judge::by_ensuresec(&shop, watch, &played.benign)?,
        (_, Some(f2b)) => judge::by_fail2ban(&shop, f2b, watch, &played.benign)?,
    };
    drop(agent);
    Ok(outcome)
}

fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    Some(values[rank])
}

fn main() -> Result<()> {
    let exe = std::env::current_exe()?;
    let shop_bin = exe.with_file_name("lab-shop");
    let shop_bin = shop_bin.to_str().context("path")?.to_string();
    anyhow::ensure!(
        std::path::Path::new(&shop_bin).exists(),
        "build lab-shop first (cargo xtask bench app does)"
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    let only = std::env::var("BENCH_APP_ONLY").ok();
    for &scenario in app_scenarios::ALL {
        // `BENCH_APP_ONLY=SCENARIO` runs one scenario (its row alone).
        if only.as_deref().is_some_and(|o| o != scenario) {
            continue;
        }
        for (system, name) in [
            (System::Ensuresec, "ensuresec"),
            (System::Fail2ban, "fail2ban"),
        ] {
            let runs = app_scenarios::runs(scenario, RUNS);
            let mut outcomes = Vec::new();
            for _ in 0..runs {
                eprintln!("{scenario} with {name}");
                outcomes.push(run(&shop_bin, scenario, system)?);
            }
            let mut ttm: Vec<f64> = outcomes.iter().filter_map(|o| o.ttm_ms).collect();
            let mut after: Vec<f64> = outcomes
                .iter()
                .filter_map(|o| o.after.map(|a| a as f64))
                .collect();
            rows.push(Row {
                scenario,
                system: name,
                detected: outcomes.iter().all(|o| o.detected),
                ttm_ms_median: percentile(&mut ttm, 50.0),
                ttm_ms_p95: percentile(&mut ttm, 95.0),
                ttm_samples: ttm.len(),
                attacker_requests_after: percentile(&mut after, 50.0).map(|a| a as u64),
                benign_banned: outcomes.iter().map(|o| o.benign_banned).sum(),
            });
        }
    }
    let report = serde_json::to_string_pretty(&rows)?;
    std::fs::write(dir.join("app.json"), &report)?;
    println!("{report}");
    Ok(())
}
