//! `cargo xtask bench app`: each application scenario against the lab shop,
//! once with ensuresec and once with fail2ban (its shipped nginx jails plus
//! a jail for the shop's failed logins; see `ensuresec_tests::fail2ban`), on
//! the same nginx logs: detected or not, time from the deciding line being
//! written to the first packet of the attacker's dropped (measured from
//! outside both: `ensuresec_tests::cutoff`), attacker requests answered
//! beyond those the system needed to decide, benign clients banned. Writes
//! target/bench/app.json.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ensuresec_tests::{
    attacks,
    cutoff::{LineClock, Prober, Stamps},
    fail2ban::Fail2ban,
    lab::Host,
    shop::{PORT, ShopLab, logged_from},
    wait::eventually,
};
use serde::Serialize;

/// Runs of each scenario per system (time to mitigate is a median over them).
const RUNS: usize = 3;

#[derive(Serialize)]
struct Row {
    scenario: &'static str,
    system: &'static str,
    detected: bool,
    ttm_ms_median: Option<f64>,
    ttm_ms_p95: Option<f64>,
    attacker_requests_after: Option<u64>,
    benign_banned: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum System {
    Ensuresec,
    Fail2ban,
}

struct Outcome {
    detected: bool,
    ttm_ms: Option<f64>,
    after: Option<u64>,
    benign_banned: u64,
}

fn attack(shop: &ShopLab, scenario: &str) -> Result<Vec<Host>> {
    let lab = &shop.lab;
    match scenario {
        "stuffing" => attacks::stuffing(&lab.attacker, &shop.url("/login"), 60, 0.05)?,
        "basic_auth_guessing" => attacks::basic_auth_guessing(shop, &lab.attacker, 40, 0.05)?,
        "card_testing" => attacks::card_testing(shop, &lab.attacker, 40, 0.05)?,
        "hydra" => {
            attacks::hydra(shop, &lab.attacker, 60, 2)?;
        }
        "content_discovery" => {
            // dirb's own common word list (Debian package dirb), as a real
            // discovery run would use.
            let words = Path::new("/usr/share/dirb/wordlists/common.txt");
            attacks::gobuster(shop, &lab.attacker, words, "1s")?;
        }
        "sqlmap" => {
            lab.attacker
                .ns
                .cmd("timeout")
                .args(["30", "sqlmap", "-u", &shop.url("/search?q=mug")])
                .args(["--batch", "--timeout", "1", "--retries", "0"])
                .output()?;
        }
        "flash_sale" => {
            let crowd: Vec<Host> = (0..8u8)
                .map(|h| {
                    lab.add_host(
                        &format!("sale{h}"),
                        std::net::Ipv4Addr::new(10, 77, 50, 10 + h),
                        format!("fd77::50:{h}").parse().unwrap(),
                    )
                })
                .collect::<Result<_>>()?;
            let buyers: Vec<_> = crowd
                .iter()
                .map(|h| {
                    // Pages at a human pace, one mistyped password, a login.
                    let script = format!(
                        "curl -s -o /dev/null -d 'user=customer1@lab.shop&pass=typo' {login}; curl -s -o /dev/null -d 'user=customer1@lab.shop&pass=pw-1-correct-horse' {login}; \
                         for i in $(seq 15); do for p in / /product/$i /static/shop.css /cart; do curl -s -o /dev/null --max-time 2 {base}$p; done; sleep 0.5; done",
                        login = shop.url("/login"),
                        base = shop.url("")
                    );
                    h.ns.cmd("sh").args(["-c", &script]).spawn()
                })
                .collect::<std::io::Result<_>>()?;
            for mut b in buyers {
                b.wait()?;
            }
            return Ok(crowd);
        }
        other => anyhow::bail!("no scenario {other}"),
    }
    Ok(Vec::new())
}

/// Follows the shop's logs and probes from the attacker's host while a
/// scenario runs, to time the cut-off from outside the system under test.
struct Watch {
    clocks: Vec<(PathBuf, LineClock)>,
    prober: Option<Prober>,
}

/// Each log's line stamps, by path.
type LogStamps = Vec<(PathBuf, Stamps)>;

/// One probe every 8 ms: fine enough against a 50 ms target, and below the
/// SYN detector's 200/s per source even with the attack's own connections.
const PROBE_EVERY: Duration = Duration::from_millis(8);

impl Watch {
    fn start(shop: &ShopLab, attacked: bool) -> Self {
        let clocks = [
            &shop.access_log,
            &shop.combined_log,
            &shop.error_log,
            &shop.events_log,
        ]
        .into_iter()
        .map(|p| (p.clone(), LineClock::follow(p)))
        .collect();
        let server = SocketAddr::new(shop.lab.storefront.v4.into(), PORT);
        let prober = attacked.then(|| {
            Prober::start(
                &shop.lab.attacker.ns.name,
                server,
                PROBE_EVERY,
                Duration::from_millis(50),
            )
        });
        Self { clocks, prober }
    }

    /// Waits for the attacker to be cut off (when it was decided), then stops
    /// watching: the cut-off instant and each log's line stamps.
    fn finish(self, decided: bool) -> Result<(Option<Instant>, LogStamps)> {
        let cut_at = match self.prober {
            Some(p) => {
                if decided {
                    let _ = eventually(Duration::from_secs(5), "the attacker cut off", || {
                        Ok(p.cut_at())
                    });
                }
                p.finish()?.cut_at
            }
            None => None,
        };
        let stamps = self
            .clocks
            .into_iter()
            .map(|(p, c)| (p, c.finish()))
            .collect();
        Ok((cut_at, stamps))
    }
}

/// From the deciding line's appearance in `log` (at `offset`) to `cut_at`.
fn line_to_cut(
    stamps: &LogStamps,
    log: &Path,
    offset: u64,
    cut_at: Option<Instant>,
) -> Option<f64> {
    let written = stamps.iter().find(|(p, _)| p == log)?.1.at(offset)?;
    let cut = cut_at?;
    match cut.checked_duration_since(written) {
        Some(d) => Some(d.as_secs_f64() * 1e3),
        None => {
            eprintln!("cut off before the deciding line was written: not counted");
            None
        }
    }
}

fn run(shop_bin: &str, scenario: &'static str, system: System) -> Result<Outcome> {
    let shop = ShopLab::new(shop_bin)?;
    let attacker = shop.lab.attacker.v4.to_string();
    let (agent, f2b) = match system {
        System::Ensuresec => (Some(shop.lab.start_agent(&shop.agent_config("")?)?), None),
        System::Fail2ban => (None, Some(Fail2ban::start(&shop)?)),
    };
    let watch = Watch::start(&shop, scenario != "flash_sale");
    let crowd = attack(&shop, scenario)?;
    let served = logged_from(&shop.access_log, &attacker) as u64;
    let banned = |addrs: &dyn Fn(&str) -> bool| {
        crowd.iter().filter(|h| addrs(&h.v4.to_string())).count() as u64
    };
    let outcome = match system {
        System::Ensuresec => {
            let decided = eventually(Duration::from_secs(5), "a decision", || {
                Ok(shop
                    .lab
                    .decisions()?
                    .into_iter()
                    .find(|d| d["target"] == attacker.as_str() && !d["details"].is_null()))
            })
            .ok();
            let (cut_at, stamps) = watch.finish(decided.is_some())?;
            let line = decided.as_ref().and_then(|d| {
                Some((
                    PathBuf::from(d["line"]["log"].as_str()?),
                    d["line"]["offset"].as_u64()?,
                ))
            });
            let decisions = shop.lab.decisions()?;
            Outcome {
                detected: decided.is_some(),
                ttm_ms: line.and_then(|(log, offset)| line_to_cut(&stamps, &log, offset, cut_at)),
                after: decided
                    .as_ref()
                    .map(|d| served.saturating_sub(d["observed"].as_u64().unwrap_or(0))),
                benign_banned: banned(&|a| decisions.iter().any(|d| d["target"] == a)),
            }
        }
        System::Fail2ban => {
            let f2b = f2b.as_ref().expect("started");
            let ban = eventually(Duration::from_secs(5), "a ban", || {
                Ok(f2b.logged("Ban").into_iter().find(|b| b.addr == attacker))
            })
            .ok();
            if ban.is_none() && crowd.is_empty() {
                let log =
                    std::fs::read_to_string(f2b.dir().join("fail2ban.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(12).collect();
                eprintln!(
                    "fail2ban did not ban {attacker}; the end of its log:\n{}",
                    tail.join("\n")
                );
            }
            let (cut_at, stamps) = watch.finish(ban.is_some())?;
            let bans = f2b.logged("Ban");
            let (ttm_ms, after) = match &ban {
                Some(b) => {
                    let found = f2b
                        .logged("Found")
                        .into_iter()
                        .filter(|f| f.addr == attacker && f.jail == b.jail && f.at <= b.at)
                        .count();
                    let line = f2b.deciding_line(b)?;
                    (
                        line.and_then(|(log, offset)| line_to_cut(&stamps, &log, offset, cut_at)),
                        Some(served.saturating_sub(found as u64)),
                    )
                }
                None => (None, None),
            };
            Outcome {
                detected: ban.is_some(),
                ttm_ms,
                after,
                benign_banned: banned(&|a| bans.iter().any(|b| b.addr == a)),
            }
        }
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
    for scenario in [
        "stuffing",
        "hydra",
        "content_discovery",
        "basic_auth_guessing",
        "card_testing",
        "sqlmap",
        "flash_sale",
    ] {
        // `BENCH_APP_ONLY=SCENARIO` runs one scenario (its row alone).
        if only.as_deref().is_some_and(|o| o != scenario) {
            continue;
        }
        for (system, name) in [
            (System::Ensuresec, "ensuresec"),
            (System::Fail2ban, "fail2ban"),
        ] {
            let runs = if scenario == "flash_sale" { 1 } else { RUNS };
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
