//! The decisions' life in the lab: a dry run decides and drops nothing, an
//! allowlisted attacker is never mitigated, bans expire and escalate and can
//! be lifted, and a throttle rate-limits instead of banning.

use std::time::Duration;

use anyhow::Result;
use ensuresec_tests::{lab::Lab, wait::eventually};

const PROTECT: &str =
    "[[protect]]\nprefix = \"10.77.0.0/16\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

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
    assert_eq!(lab.counter("blocked_exact")? + lab.counter("throttled")?, 0);
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
    // Allowlisted traffic is passed before any feature is counted, so the
    // detectors never even see it: the flood arrived (counted as
    // allowlisted) and sent the agent nothing to decide on.
    assert!(lab.counter("allowlisted")? >= 3000);
    lab.agent_caught_up()?;
    assert!(lab.decisions()?.is_empty());
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 200);
    drop(agent);
    Ok(())
}

#[test]
fn decisions_expire_escalate_and_can_be_lifted() -> Result<()> {
    let lab = Lab::new()?;
    // Whole-address bans (for a network that filters forged sources).
    let config = lab.agent_config(&format!(
        "[detect]\nspoof_safe = false\nban_ttls = [\"2s\", \"1h\"]\n\n{PROTECT}"
    ))?;
    let _agent = lab.start_agent(&config)?;
    let attacker = lab.attacker.v4.to_string();
    // Short enough to end within the first ban's 2 s on a slow machine
    // (hping3 waits for its last packet; the ban is found after it).
    lab.syn_flood(600)?;
    let first = lab
        .wait_decision(&attacker, Duration::from_secs(3))?
        .expect("first ban");
    assert_eq!(first["strikes"], 1);
    assert!(first["seconds_left"].as_u64().unwrap() <= 2);
    // The ban expires on its own (in the kernel; the agent drops the record).
    eventually(Duration::from_secs(6), "the ban to expire", || {
        Ok(lab.decisions()?.is_empty().then_some(()))
    })?;
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
