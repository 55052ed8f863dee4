//! `explain` names every reason an address is treated as it is, with who,
//! why, until when and the command that lifts it; `rollback --detector`
//! lifts a detector's decisions at once and nothing an operator owns.

use std::time::Duration;

use anyhow::{Context as _, Result};
use ensuresec_tests::{lab::Lab, wait::eventually};
use serde_json::Value;

fn explain(lab: &Lab, addr: &str) -> Result<Value> {
    Ok(serde_json::from_str(
        &lab.ensuresec(&["explain", addr, "-o", "json"])?,
    )?)
}

fn reason<'a>(e: &'a Value, kind: &str, target: &str) -> Option<&'a Value> {
    e["reasons"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["target"] == target)
}

#[test]
fn explain_names_every_reason_and_rollback_lifts_a_detectors_decisions() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config(&format!(
        "[allowlist]\nentries = [\"{}\"]\n\n[port_policy]\nenabled = true\ntcp = [\"80\", \"8080\", \"7001\", \"32768-60999\"]\nudp = [\"32768-60999\"]\n\n[detect]\nspoof_safe = false\n\n[[protect]]\nprefix = \"10.77.0.0/16\"\n",
        lab.shopper.v4
    ))?;
    let _agent = lab.start_agent(&config)?;
    let attacker = lab.attacker.v4.to_string();
    lab.syn_flood(3000)?;
    lab.wait_decision(&attacker, Duration::from_secs(3))?
        .context("the flood banned")?;
    eventually(Duration::from_secs(5), "the ban in the journal", || {
        Ok((!lab
            .ensuresec(&["journal", "--address", &attacker, "--detector", "syn_flood"])?
            .contains("no journal entries"))
        .then_some(()))
    })?;

    // The operator blocks the attacker's range after the ban (before it,
    // the block would have dropped the flood before any detector saw it).
    let out = lab
        .ensuresec_cmd(&[
            "block",
            "add",
            "10.77.66.0/24",
            "--ttl",
            "1h",
            "--reason",
            "attack range",
        ])
        .env("SUDO_USER", "alice")
        .output()?;
    assert!(out.status.success());
    let e = explain(&lab, &attacker)?;
    assert!(e["verdict"].as_str().unwrap().starts_with("dropped"), "{e}");
    let ban = reason(&e, "ban", &attacker).context("the ban")?;
    assert_eq!(ban["owner"], "agent");
    assert!(ban["why"].as_str().unwrap().contains("syn_flood"), "{ban}");
    assert_eq!(ban["lift"], format!("ensuresec decisions rm {attacker}"));
    let block = reason(&e, "block", "10.77.66.0/24").context("the covering block")?;
    assert_eq!(block["owner"], "operator");
    assert_eq!(block["why"], "attack range");
    assert!(block["by"].as_str().unwrap().contains("alice"), "{block}");
    assert!((3500..=3600).contains(&block["seconds_left"].as_u64().unwrap()));
    assert_eq!(block["lift"], "ensuresec block rm 10.77.66.0/24");
    assert!(reason(&e, "port_policy", "every source").is_some());

    let shopper = explain(&lab, &lab.shopper.v4.to_string())?;
    assert!(
        shopper["verdict"]
            .as_str()
            .unwrap()
            .starts_with("passed: allowlisted"),
        "{shopper}"
    );
    assert_eq!(
        reason(&shopper, "allow", &lab.shopper.v4.to_string()).context("allow")?["owner"],
        "config"
    );
    let nobody = explain(&lab, "10.77.5.5")?;
    assert_eq!(nobody["verdict"], "passed, subject to the port policy");
    assert_eq!(nobody["reasons"].as_array().unwrap().len(), 1);
    let table = lab.ensuresec(&["explain", &attacker])?;
    assert!(table.contains("lift   ensuresec decisions rm"), "{table}");
    let (ok, _, err) = {
        let o = lab.ensuresec_raw(&["explain", "10.77.66.0/24"])?;
        (
            o.status.success(),
            (),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert!(!ok && err.contains("not an IPv4 or IPv6 address"), "{err}");

    // Another detector's rollback touches nothing.
    let none = lab.ensuresec(&["rollback", "--detector", "port_scan", "--since", "10m"])?;
    assert!(none.contains("0 decisions"), "{none}");
    let dry = lab.ensuresec(&[
        "rollback",
        "--detector",
        "syn_flood",
        "--since",
        "10m",
        "--dry-run",
    ])?;
    assert!(dry.contains(&attacker) && dry.contains("dry run"), "{dry}");
    assert!(
        lab.wait_decision(&attacker, Duration::ZERO)?.is_some(),
        "a dry run lifts nothing"
    );
    let done = lab.ensuresec(&["rollback", "--detector", "syn_flood", "--since", "10m"])?;
    assert!(done.contains("lifted 1 decisions"), "{done}");
    assert!(lab.wait_decision(&attacker, Duration::ZERO)?.is_none());
    // The operator's block of the range stays: automation never lifts it.
    let after = explain(&lab, &attacker)?;
    assert!(reason(&after, "ban", &attacker).is_none());
    assert!(
        reason(&after, "block", "10.77.66.0/24").is_some(),
        "{after}"
    );
    let journal: Value = serde_json::from_str(&lab.ensuresec(&["journal", "-o", "json"])?)?;
    let rollback = journal
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "rollback")
        .context("journaled")?;
    let op = rollback["operation"].as_i64().context("one operation")?;
    let lifts: Vec<_> = journal
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "decision_rm" && e["operation"] == op)
        .collect();
    assert_eq!(lifts.len(), 1);
    assert_eq!(lifts[0]["target"], attacker.as_str());
    Ok(())
}
