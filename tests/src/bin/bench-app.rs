//! `cargo xtask bench app`: each application scenario against the lab shop,
//! once with ensuresec and once with fail2ban (its shipped nginx jails plus
//! a jail for the shop's failed logins; see `ensuresec_tests::fail2ban`), on
//! the same nginx logs: detected or not, time from reading the deciding line
//! to the ban in force, attacker requests answered beyond those the system
//! needed to decide, benign clients banned. Writes target/bench/app.json.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use ensuresec_tests::{
    fail2ban::Fail2ban,
    lab::Host,
    shop::{ShopLab, logged_from},
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

/// A bounded loop of requests from `host`, stopping at the first that gets
/// no answer (the attacker is cut off); `what` is curl's arguments.
fn hammer(host: &Host, rounds: u32, pause: f64, what: &str) -> Result<()> {
    let script = format!(
        "for i in $(seq {rounds}); do code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 1 -A 'Mozilla/5.0' {what}); [ \"$code\" = 000 ] && break; sleep {pause}; done"
    );
    host.ns.cmd("sh").args(["-c", &script]).output()?;
    Ok(())
}

fn attack(shop: &ShopLab, scenario: &str, dir: &std::path::Path) -> Result<Vec<Host>> {
    let lab = &shop.lab;
    match scenario {
        "stuffing" => hammer(
            &lab.attacker,
            60,
            0.05,
            &format!(
                "-d \"user=customer$i@lab.shop&pass=guess$i\" {}",
                shop.url("/login")
            ),
        )?,
        "basic_auth_guessing" => hammer(
            &lab.attacker,
            40,
            0.05,
            &format!("-u \"admin:guess$i\" {}", shop.url("/staff/")),
        )?,
        "hydra" => {
            let combo = dir.join("combo.txt");
            let pairs: String = (1..=60)
                .map(|n| format!("customer{}@lab.shop:leaked-{n}\n", n % 20 + 1))
                .collect();
            std::fs::write(&combo, pairs)?;
            lab.attacker
                .ns
                .cmd("timeout")
                .args(["20", "hydra", "-C"])
                .arg(&combo)
                .args([
                    "-s",
                    "8000",
                    "-t",
                    "4",
                    "-w",
                    "2",
                    &lab.storefront.v4.to_string(),
                ])
                .args([
                    "http-post-form",
                    "/login:user=^USER^&pass=^PASS^:F=Invalid login",
                ])
                .output()?;
        }
        "content_discovery" => {
            // dirb's own common word list (Debian package dirb), as a real
            // discovery run would use.
            let words = std::path::PathBuf::from("/usr/share/dirb/wordlists/common.txt");
            lab.attacker
                .ns
                .cmd("timeout")
                .args([
                    "20",
                    "gobuster",
                    "dir",
                    "-q",
                    "-t",
                    "4",
                    "--timeout",
                    "1s",
                    "-u",
                ])
                .arg(shop.url("/"))
                .arg("-w")
                .arg(&words)
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

fn run(shop_bin: &str, scenario: &'static str, system: System) -> Result<Outcome> {
    let shop = ShopLab::new(shop_bin)?;
    let dir = shop.dir.clone();
    let attacker = shop.lab.attacker.v4.to_string();
    let (agent, f2b) = match system {
        System::Ensuresec => (Some(shop.lab.start_agent(&shop.agent_config("")?)?), None),
        System::Fail2ban => (None, Some(Fail2ban::start(&shop)?)),
    };
    let crowd = attack(&shop, scenario, &dir)?;
    let served = logged_from(&shop.access_log, &attacker) as u64;
    let outcome = match system {
        System::Ensuresec => {
            let decided = eventually(Duration::from_secs(5), "a decision", || {
                Ok(shop
                    .lab
                    .decisions()?
                    .into_iter()
                    .find(|d| d["target"] == attacker.as_str()))
            })
            .ok();
            let sum = shop
                .lab
                .metric("ensuresec_time_to_mitigate_seconds_sum{layer=\"app\"}")?;
            let count = shop
                .lab
                .metric("ensuresec_time_to_mitigate_seconds_count{layer=\"app\"}")?;
            let decisions = shop.lab.decisions()?;
            Outcome {
                detected: decided.is_some(),
                ttm_ms: (count > 0.0 && decided.is_some()).then(|| sum / count * 1e3),
                after: decided
                    .as_ref()
                    .map(|d| served.saturating_sub(d["observed"].as_u64().unwrap_or(0))),
                benign_banned: crowd
                    .iter()
                    .filter(|h| {
                        decisions
                            .iter()
                            .any(|d| d["target"] == h.v4.to_string().as_str())
                    })
                    .count() as u64,
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
            let found = f2b.logged("Found");
            let bans = f2b.logged("Ban");
            let (ttm_ms, after) = match &ban {
                Some(b) => {
                    let before: Vec<_> = found
                        .iter()
                        .filter(|f| f.addr == attacker && f.jail == b.jail && f.at <= b.at)
                        .collect();
                    let last = before.iter().map(|f| f.at).fold(f64::NAN, f64::max);
                    (
                        (!last.is_nan()).then_some((b.at - last) * 1e3),
                        Some(served.saturating_sub(before.len() as u64)),
                    )
                }
                None => (None, None),
            };
            Outcome {
                detected: ban.is_some(),
                ttm_ms,
                after,
                benign_banned: crowd
                    .iter()
                    .filter(|h| bans.iter().any(|b| b.addr == h.v4.to_string()))
                    .count() as u64,
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
