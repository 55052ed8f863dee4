//! Detection and mitigation with real attack tools in the lab: the attack is
//! detected, the attacker dropped, the shopper served, and nothing benign or
//! allowlisted is ever mitigated.

use std::time::Duration;

use anyhow::Result;
use ensuresec_tests::lab::{Lab, ShopperLoad};

const PROTECT: &str =
    "[[protect]]\nprefix = \"10.77.0.0/16\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

#[test]
fn syn_flood_is_banned_while_the_shopper_is_served() -> Result<()> {
    let lab = Lab::new()?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;
    let load = ShopperLoad::start(&lab.shopper.ns.name, &lab.url4("/product/1"));
    lab.syn_flood(4000)?;
    let decision = lab
        .wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(3))?
        .expect("the SYN flood is detected");
    assert_eq!(decision["detector"], "syn_flood");
    assert_eq!(decision["action"], "ban");
    assert!(decision["observed"].as_u64() >= decision["threshold"].as_u64());
    assert!(
        decision["time_to_mitigate_ms"].as_f64().unwrap() < 1000.0,
        "{decision}"
    );
    assert!(
        lab.counter("blocked_exact")? > 0,
        "the rest of the flood was dropped"
    );
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 0);
    let (ok, total) = load.finish();
    assert!(total > 0 && ok * 100 >= total * 99, "shopper: {ok}/{total}");
    // No benign source was touched.
    assert_eq!(lab.decisions()?.len(), 1);
    Ok(())
}

#[test]
fn port_scan_is_banned() -> Result<()> {
    let lab = Lab::new()?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;
    lab.attacker
        .ns
        .cmd("nmap")
        .args([
            "-sS",
            "-n",
            "-Pn",
            "-p",
            "1-300",
            "--max-retries",
            "0",
            "-T4",
        ])
        .arg(lab.storefront.v4.to_string())
        .output()?;
    let decision = lab
        .wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(3))?
        .expect("the scan is detected");
    assert_eq!(decision["detector"], "port_scan");
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 0);
    Ok(())
}

#[test]
fn flash_crowd_is_never_mitigated() -> Result<()> {
    let lab = Lab::new()?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;
    // Many new shoppers at once: wrk opens 100 connections and fetches as fast
    // as it can for 3 s, from the shopper and from several more addresses.
    let mut crowd = Vec::new();
    for (i, host) in [&lab.shopper, &lab.attacker].into_iter().enumerate() {
        for j in 0..3 {
            let addr = format!("10.77.{}.{}", 20 + i, 10 + j);
            host.add_address(&addr)?;
        }
        crowd.push(
            host.ns
                .cmd("wrk")
                .args(["-t", "2", "-c", "50", "-d", "3s"])
                .arg(lab.url4("/"))
                .stdout(std::process::Stdio::null())
                .spawn()?,
        );
    }
    for mut c in crowd {
        c.wait()?;
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.decisions()?.is_empty(), "{:?}", lab.decisions()?);
    assert_eq!(lab.shopper.http_status(&lab.url4("/"), None), 200);
    Ok(())
}

#[test]
fn dry_run_decides_but_drops_nothing() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config(&format!("[detect]\ndry_run = true\n\n{PROTECT}"))?;
    let _agent = lab.start_agent(&config)?;
    lab.syn_flood(3000)?;
    let decision = lab
        .wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(3))?
        .expect("detected all the same");
    assert_eq!(decision["action"], "alert");
    assert_eq!(lab.counter("blocked_exact")?, 0);
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 200);
    Ok(())
}

#[test]
fn allowlisted_attacker_is_never_mitigated() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config(&format!(
        "[allowlist]\nentries = [\"{}\"]\n\n{PROTECT}",
        lab.attacker.v4
    ))?;
    let agent = lab.start_agent(&config)?;
    lab.syn_flood(3000)?;
    std::thread::sleep(Duration::from_millis(800));
    assert!(lab.decisions()?.is_empty());
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 200);
    // Allowlisted traffic is passed before any feature is counted, so the
    // detectors never even see it.
    assert!(lab.counter("allowlisted")? > 0);
    drop(agent);
    Ok(())
}

#[test]
fn decisions_expire_escalate_and_can_be_lifted() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config(&format!(
        "[detect]\nban_ttls = [\"2s\", \"1h\"]\n\n{PROTECT}"
    ))?;
    let _agent = lab.start_agent(&config)?;
    let attacker = lab.attacker.v4.to_string();
    lab.syn_flood(2000)?;
    let first = lab
        .wait_decision(&attacker, Duration::from_secs(3))?
        .expect("first ban");
    assert_eq!(first["strikes"], 1);
    assert!(first["seconds_left"].as_u64().unwrap() <= 2);
    // The ban expires on its own (in the kernel; the agent drops the record).
    std::thread::sleep(Duration::from_millis(3500));
    assert!(lab.decisions()?.is_empty());
    assert_eq!(
        lab.attacker
            .http_status_within(&lab.url4("/"), 200, Duration::from_secs(3)),
        200
    );
    // The same source again: a second strike and the longer ban.
    lab.syn_flood(2000)?;
    let second = lab
        .wait_decision(&attacker, Duration::from_secs(3))?
        .expect("second ban");
    assert_eq!(second["strikes"], 2);
    assert!(second["seconds_left"].as_u64().unwrap() > 3000);
    // An operator lifts it.
    let out = lab.ensuresec(&["decisions", "rm", &attacker])?;
    assert!(out.contains("lifted the ban"), "{out}");
    assert!(lab.decisions()?.is_empty());
    assert_eq!(
        lab.attacker
            .http_status_within(&lab.url4("/"), 200, Duration::from_secs(3)),
        200
    );
    Ok(())
}

#[test]
fn throttle_action_rate_limits_instead_of_banning() -> Result<()> {
    let lab = Lab::new()?;
    // (A `[protect.X]` table belongs to the `[[protect]]` block above it.)
    let config = lab.agent_config(
        "[[protect]]\nprefix = \"10.77.0.0/16\"\n[protect.syn_flood]\naction = \"throttle\"\nthrottle_pps = 50\n",
    )?;
    let _agent = lab.start_agent(&config)?;
    lab.syn_flood(3000)?;
    let d = lab
        .wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(3))?
        .expect("detected");
    assert_eq!(
        (d["detector"].as_str(), d["action"].as_str()),
        (Some("syn_flood"), Some("throttle"))
    );
    assert_eq!(d["rate"], 50);
    assert!(
        lab.counter("throttled")? > 0,
        "packets over 50/s were dropped"
    );
    assert_eq!(lab.counter("blocked_exact")?, 0, "no ban");
    // Within its rate the source is still served.
    assert_eq!(
        lab.attacker
            .http_status_within(&lab.url4("/"), 200, Duration::from_secs(3)),
        200
    );
    Ok(())
}
