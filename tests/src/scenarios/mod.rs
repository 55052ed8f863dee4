//! Lab scenarios: shoppers browsing the shop, and attackers running real tools
//! against it, with ensuresec's agent protecting the storefront. A run yields
//! a report: per source, its role, requests made and answered, and whether and
//! when it was detected and mitigated.

use std::{
    collections::BTreeMap,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::lab::{Lab, ShopperLoad};

mod catalogue;
mod low_and_slow;
mod report;
mod unsolicited;

pub use catalogue::{Attack, Scenario, all, find};
use catalogue::{TARGET, TARGET_MAC};
use report::metric;
pub use report::{Report, SourceReport, cpu_seconds, dropped, packets, usage};

fn spawn_tool(lab: &Lab, tool: &str, args: &[String]) -> Result<Child> {
    let target = lab.storefront.v4.to_string();
    let mac = lab.storefront.mac()?;
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace(TARGET, &target).replace(TARGET_MAC, &mac))
        .collect();
    lab.attacker
        .ns
        .cmd(tool)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {tool}"))
}

/// What the dataset recorder sees every 100 ms of a run.
pub struct Tick<'a> {
    pub lab: &'a Lab,
    pub elapsed: Duration,
    /// Whether the attack tool is still running.
    pub attacking: bool,
}

/// Called every 100 ms of a run.
pub type OnTick<'a> = &'a mut dyn FnMut(&Tick) -> Result<()>;

/// How to run a scenario beyond what it says itself.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// TOML put before the scenario's own config (`[detect] dry_run = true`).
    pub config_before: &'a str,
    /// Diverse benign visitors in the background (see `visitors`), and the
    /// storefront's own calls to an upstream (see `upstreams`).
    pub visitors: bool,
    pub on_tick: Option<OnTick<'a>>,
}

/// Runs a scenario in a fresh lab and reports.
pub fn run(s: &Scenario) -> Result<Report> {
    run_with(s, RunOptions::default())
}

/// `run`, with options.
pub fn run_with(s: &Scenario, mut opts: RunOptions) -> Result<Report> {
    let lab = Lab::new()?;
    for i in 0..s.storefront_addresses {
        lab.storefront.add_address(&format!("10.77.0.{}", i + 2))?;
    }
    let config = format!("{}\n{}", opts.config_before, s.config);
    let agent = lab.start_agent(&lab.agent_config(&config)?)?;
    let (visitors, upstream) = if opts.visitors {
        (
            crate::visitors::start(&lab)?,
            Some(crate::upstreams::start(&lab)?),
        )
    } else {
        (Vec::new(), None)
    };
    let (cpu0, _) = usage(agent.child.id());
    let pages: Vec<String> = ["/", "/product/1", "/cart", "/checkout"]
        .iter()
        .map(|p| lab.url4(p))
        .collect();
    let mut shoppers = Vec::new();
    for i in 0..s.shoppers {
        let addr = format!("10.77.1.{}", 10 + i);
        if i > 0 {
            lab.shopper.add_address(&addr)?;
        }
        shoppers.push((
            addr.clone(),
            ShopperLoad::browse(&lab.shopper.ns.name, Some(&addr), pages.clone()),
        ));
    }
    let mut crowd = Vec::new();
    for (i, wrk_args) in s.crowd.iter().enumerate() {
        let addr = format!("10.77.2.{}", 10 + i);
        // Each crowd member is a host of its own (wrk cannot pick a source).
        let host = lab.add_host(
            "crowd",
            addr.parse()?,
            format!("fd77::2:{}", 10 + i).parse()?,
        )?;
        let child = host
            .ns
            .cmd("wrk")
            .args(wrk_args)
            .arg(lab.url4("/"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        crowd.push((addr, child, host));
    }
    let start = Instant::now();
    // The attacker also browses, to show when it stops being served.
    let probe = ShopperLoad::browse(&lab.attacker.ns.name, None, vec![lab.url4("/")]);
    let mut tool = match &s.attack {
        Some(a) => Some(spawn_tool(&lab, a.tool, &a.args)?),
        None => None,
    };
    let mut first_seen: BTreeMap<String, f64> = BTreeMap::new();
    while start.elapsed() < s.duration {
        for d in lab.decisions()? {
            if let Some(t) = d["target"].as_str() {
                first_seen
                    .entry(t.to_string())
                    .or_insert(start.elapsed().as_secs_f64());
            }
        }
        if let Some(f) = opts.on_tick.as_mut() {
            let attacking = tool
                .as_mut()
                .is_some_and(|t| matches!(t.try_wait(), Ok(None)));
            f(&Tick {
                lab: &lab,
                elapsed: start.elapsed(),
                attacking,
            })?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    crate::visitors::stop(visitors);
    drop(upstream);
    if let Some(t) = tool.as_mut() {
        let _ = t.kill();
        let _ = t.wait();
    }
    for (_, c, _) in crowd.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let duration_s = start.elapsed().as_secs_f64();
    let (cpu1, rss) = usage(agent.child.id());
    let page = lab.metrics().unwrap_or_default();
    let decisions = lab.decisions()?;
    let find = |addr: &str| decisions.iter().find(|d| d["target"] == addr).cloned();
    let mut sources = Vec::new();
    let source =
        |address: String, role, tool: String, requests, succeeded, d: Option<serde_json::Value>| {
            let at = first_seen.get(&address).copied();
            SourceReport {
                detected: d.is_some(),
                detector: d
                    .as_ref()
                    .and_then(|d| d["detector"].as_str().map(str::to_string)),
                detected_after_s: at,
                mitigated: d.as_ref().is_some_and(|d| d["action"] != "alert"),
                action: d
                    .as_ref()
                    .and_then(|d| d["action"].as_str().map(str::to_string)),
                time_to_mitigate_ms: d.as_ref().and_then(|d| d["time_to_mitigate_ms"].as_f64()),
                address,
                role,
                tool,
                requests,
                succeeded,
            }
        };
    let (mut ok, mut total) = (0, 0);
    for (addr, load) in shoppers {
        let (o, t) = load.finish();
        ok += o;
        total += t;
        let d = find(&addr);
        sources.push(source(addr, "shopper", "curl".into(), t, o, d));
    }
    let (po, pt) = probe.finish();
    let attacker = lab.attacker.v4.to_string();
    let tool_line = s.attack.as_ref().map_or("curl".into(), |a| {
        format!("{} {}", a.tool, a.args.join(" "))
    });
    let role = if s.attack.is_some() {
        "attacker"
    } else {
        "shopper"
    };
    let d = find(&attacker);
    sources.push(source(attacker, role, tool_line, pt, po, d));
    for (i, _) in s.crowd.iter().enumerate() {
        let addr = format!("10.77.2.{}", 10 + i);
        let d = find(&addr);
        sources.push(source(addr, "crowd", "wrk".into(), 0, 0, d));
    }
    if let Some(Attack {
        decision_on: Some(on),
        ..
    }) = &s.attack
    {
        let target = on.replace(TARGET, &lab.storefront.v4.to_string());
        let d = find(&target);
        sources.push(source(
            target,
            "destination",
            "aggregate measure".into(),
            0,
            0,
            d,
        ));
    }
    Ok(Report {
        scenario: s.name,
        about: s.about,
        duration_s,
        shoppers_success_rate: if total == 0 {
            0.0
        } else {
            ok as f64 / total as f64
        },
        sources,
        expected_detector: s.attack.as_ref().map(|a| a.detector),
        decisions,
        packets: packets(&lab)?,
        agent_cpu_share: (cpu1 - cpu0) / duration_s,
        agent_peak_rss_mib: rss,
        ringbuf_events: metric(&page, "ensuresec_ringbuf_read_total"),
        ringbuf_dropped: metric(&page, "ensuresec_ringbuf_dropped_total"),
    })
}

/// Checks a report against what the scenario promises: the attack detected
/// by its detector and mitigated, shoppers served at 99 % or more, and no
/// shopper or crowd member mitigated. Traffic whose expected detector is
/// `none` (below every threshold) must lead to no decision, as benign traffic.
pub fn check(s: &Scenario, r: &Report) -> Result<()> {
    if r.shoppers_success_rate < 0.99 {
        bail!(
            "{}: shoppers' success rate {:.3}",
            s.name,
            r.shoppers_success_rate
        );
    }
    for src in &r.sources {
        if matches!(src.role, "shopper" | "crowd") && src.mitigated {
            bail!("{}: benign source {} was mitigated", s.name, src.address);
        }
    }
    if let Some(a) = s.attack.as_ref().filter(|a| a.detector != "none") {
        let role = if a.decision_on.is_some() {
            "destination"
        } else {
            "attacker"
        };
        let src = r
            .sources
            .iter()
            .find(|x| x.role == role)
            .context("no attacker in the report")?;
        if src.detector.as_deref() != Some(a.detector) || !src.mitigated {
            bail!(
                "{}: expected {} to be mitigated by {}, got {:?} / {:?}",
                s.name,
                src.address,
                a.detector,
                src.detector,
                src.action
            );
        }
        // Detected while the attack ran, and its packets dropped from then on.
        if src
            .detected_after_s
            .is_none_or(|t| t > s.detect_within.as_secs_f64())
        {
            bail!("{}: detected after {:?} s", s.name, src.detected_after_s);
        }
        let dropped_by = match src.action.as_deref() {
            Some("budget") => "dst_budget",
            Some("throttle") => "throttled",
            _ => "blocked_exact",
        };
        if r.packets.get(dropped_by).copied().unwrap_or(0) == 0 && a.detector != "half_open" {
            bail!(
                "{}: no packet dropped as {dropped_by}: {:?}",
                s.name,
                r.packets
            );
        }
    } else {
        // Nothing decided, and the traffic did reach the filter (and, when it
        // was heavy enough to trip a wire, the agent).
        if r.packets.get("passed").copied().unwrap_or(0) == 0 {
            bail!("{}: no packet reached the filter: {:?}", s.name, r.packets);
        }
        if (s.attack.is_some() || !s.crowd.is_empty()) && r.ringbuf_events == 0 {
            bail!("{}: the traffic sent the agent no event to look at", s.name);
        }
        if !r.decisions.is_empty() {
            bail!(
                "{}: traffic below every threshold led to decisions {:?}",
                s.name,
                r.decisions
            );
        }
    }
    Ok(())
}
