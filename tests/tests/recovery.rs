//! Nothing an operator or the agent decided vanishes: a reboot (maps and
//! pins gone) and an upgrade to another map layout restore the lists,
//! decisions and strikes from the journal with the time they had left; a
//! corrupt journal is moved aside and the filter still starts; a full disk
//! fails journal writes, counted, while the kernel keeps enforcing.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use ensuresec_agent::store::{RawMap, Store, decisions::addr_key};
use ensuresec_common::maps::{Control, MAP_CONTROL};
use ensuresec_tests::{
    lab::{Lab, STOREFRONT_IFACE},
    wait::eventually,
};
use serde_json::Value;

/// Whole-address bans (a network that filters forged sources), so that a
/// flood's source is on the blocklist.
const PROTECT: &str = "[detect]\nspoof_safe = false\n\n[[protect]]\nprefix = \"10.77.0.0/16\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

fn json(lab: &Lab, args: &[&str]) -> Result<Vec<Value>> {
    let out = lab.ensuresec(args)?;
    Ok(serde_json::from_str::<Value>(&out)
        .with_context(|| format!("`ensuresec {}` printed {out}", args.join(" ")))?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn journal(lab: &Lab, kind: &str) -> Result<Vec<Value>> {
    Ok(json(lab, &["journal", "-o", "json"])?
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect())
}

fn by_entry(rows: &[Value], entry: &str) -> Option<Value> {
    rows.iter().find(|r| r["entry"] == entry).cloned()
}

fn left(row: &Value) -> i64 {
    row["seconds_left"].as_i64().expect("a time left")
}

/// Ends the agent, then what a reboot ends: the interface's program, the
/// maps and every pin.
fn reboot(lab: &Lab, agent: &mut ensuresec_tests::lab::Agent) -> Result<()> {
    agent.stop(libc::SIGTERM)?;
    lab.ensuresec(&["detach", "--iface", STOREFRONT_IFACE])?;
    assert!(
        !lab.pins.pins.has_maps(),
        "the last detach removes the maps"
    );
    Ok(())
}

#[test]
fn a_reboot_restores_lists_decisions_and_strikes_with_their_time_left() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config(PROTECT)?;
    let mut agent = lab.start_agent(&config)?;
    lab.ensuresec(&[
        "block",
        "add",
        "198.51.100.0/24",
        "--ttl",
        "1h",
        "--reason",
        "abuse report 42",
    ])?;
    lab.ensuresec(&["block", "add", "203.0.113.5", "--reason", "known scanner"])?;
    lab.ensuresec(&["allow", "add", "192.0.2.77"])?;
    let attacker = lab.attacker.v4.to_string();
    lab.syn_flood(3000)?;
    lab.wait_decision(&attacker, Duration::from_secs(3))?
        .context("the flood banned")?;
    eventually(Duration::from_secs(5), "the ban in the journal", || {
        Ok(journal(&lab, "decision")?
            .iter()
            .any(|e| e["target"] == attacker.as_str() && e["detector"] == "syn_flood")
            .then_some(()))
    })?;
    // A block whose time runs out while the host is down.
    lab.ensuresec(&["block", "add", "203.0.113.9", "--ttl", "3s"])?;
    let blocks = json(&lab, &["block", "list", "-o", "json"])?;
    let decisions = lab.decisions()?;
    let short = by_entry(&blocks, "203.0.113.9").context("the short block")?;
    let short_ends = Instant::now() + Duration::from_secs(left(&short) as u64 + 1);
    let down = Instant::now();
    reboot(&lab, &mut agent)?;
    eventually(Duration::from_secs(6), "the short block's end", || {
        Ok((Instant::now() >= short_ends).then_some(()))
    })?;

    let _agent = lab.start_agent(&config)?;
    let elapsed = down.elapsed().as_secs() as i64;
    let restored = json(&lab, &["block", "list", "-o", "json"])?;
    for entry in ["198.51.100.0/24", "203.0.113.5", attacker.as_str()] {
        let (was, now) = (
            by_entry(&blocks, entry).unwrap(),
            by_entry(&restored, entry)
                .with_context(|| format!("{entry} restored: {restored:?}"))?,
        );
        assert_eq!(now["reason"], was["reason"], "{entry}");
        assert_eq!(now["owner"], was["owner"], "{entry}");
        assert_eq!(now["added_at"], was["added_at"], "{entry}");
        if was["seconds_left"].is_null() {
            assert!(now["seconds_left"].is_null(), "{entry} still never expires");
        } else {
            // The time kept running while the host was down.
            let lost = left(&was) - left(&now);
            assert!(
                lost >= elapsed - 2 && lost <= elapsed + 2,
                "{entry}: {lost} s gone in {elapsed} s down"
            );
        }
    }
    assert!(
        by_entry(&restored, "203.0.113.9").is_none(),
        "an expired block is not resurrected"
    );
    let allows = json(&lab, &["allow", "list", "-o", "json"])?;
    assert!(by_entry(&allows, "192.0.2.77").is_some(), "{allows:?}");
    let was = decisions
        .iter()
        .find(|d| d["target"] == attacker.as_str())
        .unwrap();
    let now = lab
        .wait_decision(&attacker, Duration::ZERO)?
        .context("the ban restored")?;
    assert_eq!(now["detector"], "syn_flood");
    assert_eq!(now["strikes"], was["strikes"]);
    let lost = left(was) - left(&now);
    assert!(
        lost >= elapsed - 2 && lost <= elapsed + 2,
        "the ban lost {lost} s in {elapsed} s"
    );
    let store = Store::open(&lab.pins.pins)?;
    let strikes = store
        .offender(&addr_key(lab.attacker.v4.into()))?
        .map(|o| o.strikes);
    assert_eq!(strikes, Some(1), "the strike kept for the next ban");
    // And the kernel enforces it: the attacker is dropped, the shopper served.
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 0);
    assert_eq!(lab.shopper.http_status(&lab.url4("/"), None), 200);
    let restore = journal(&lab, "restore")?;
    assert_eq!(restore.len(), 1, "{restore:?}");
    assert_eq!(restore[0]["detail"]["restored"]["decisions"], 1);
    Ok(())
}

#[test]
fn an_upgrade_to_another_map_layout_keeps_the_lists() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config("")?;
    let mut agent = lab.start_agent(&config)?;
    lab.ensuresec(&[
        "block",
        "add",
        &lab.attacker.v4.to_string(),
        "--reason",
        "before the upgrade",
    ])?;
    agent.stop(libc::SIGTERM)?;
    // Maps an older build left: another layout version.
    let control_map = RawMap::open(&lab.pins.pins, MAP_CONTROL)?;
    let mut control: Control = control_map.get(&0u32)?.context("the control entry")?;
    control.layout_version += 1000;
    control_map.set(&0u32, &control)?;
    drop(control_map);
    assert!(
        lab.ensuresec_raw(&["block", "list"])?
            .stderr
            .windows(6)
            .any(|w| w == b"layout")
    );

    let agent = lab.start_agent(&config)?;
    assert!(
        agent.log_text().contains("another layout"),
        "{}",
        agent.log_text()
    );
    let blocks = json(&lab, &["block", "list", "-o", "json"])?;
    let row = by_entry(&blocks, &lab.attacker.v4.to_string()).context("the block kept")?;
    assert_eq!(row["reason"], "before the upgrade");
    assert_eq!(
        lab.attacker.http_status(&lab.url4("/"), None),
        0,
        "and enforced"
    );
    assert_eq!(lab.shopper.http_status(&lab.url4("/"), None), 200);
    Ok(())
}

#[test]
fn a_corrupt_journal_is_moved_aside_and_the_filter_still_starts() -> Result<()> {
    let lab = Lab::new()?;
    std::fs::create_dir_all(lab.state_dir())?;
    std::fs::write(lab.state_dir().join("journal.db"), vec![0x5au8; 16384])?;
    let config = lab.agent_config(&format!(
        "[allowlist]\nentries = [\"{}\"]\n",
        lab.shopper.v4
    ))?;
    let agent = lab.start_agent(&config)?;
    let log = agent.log_text();
    assert!(
        log.contains("moved aside") && log.contains("journal.db"),
        "{log}"
    );
    let aside: Vec<_> = std::fs::read_dir(lab.state_dir())?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .collect();
    assert_eq!(aside.len(), 1, "the bad file is kept for a post-mortem");
    let status: Value = serde_json::from_str(&lab.ensuresec(&["status", "-o", "json"])?)?;
    assert_eq!(
        status["interfaces"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    let allows = json(&lab, &["allow", "list", "-o", "json"])?;
    assert_eq!(
        by_entry(&allows, &lab.shopper.v4.to_string()).context("the config's allowlist")?["from_config"],
        true
    );
    let reset = journal(&lab, "journal_reset")?;
    assert_eq!(reset.len(), 1);
    assert!(
        reset[0]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("journal.db")
    );
    Ok(())
}

/// A small tmpfs at the lab's state directory, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: std::path::PathBuf, size: &str) -> Result<Self> {
        std::fs::create_dir_all(&at)?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "es-journal"])
            .arg(&at)
            .status()?
            .success();
        anyhow::ensure!(ok, "mounting a tmpfs at {}", at.display());
        Ok(SmallDisk(at))
    }

    /// Fills what is left with a file; returns its path.
    fn fill(&self) -> Result<std::path::PathBuf> {
        let filler = self.0.join("filler");
        // dd stops at ENOSPC with an error, which is the point.
        std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", filler.display()))
            .output()?;
        Ok(filler)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_fails_journal_writes_while_enforcement_goes_on() -> Result<()> {
    let lab = Lab::new()?;
    let disk = SmallDisk::mount(lab.state_dir(), "1m")?;
    let config = lab.agent_config(PROTECT)?;
    let _agent = lab.start_agent(&config)?;
    eventually(
        Duration::from_secs(5),
        "the agent's start journaled",
        || Ok((!journal(&lab, "agent_start")?.is_empty()).then_some(())),
    )?;
    let filler = disk.fill()?;
    let attacker = lab.attacker.v4.to_string();
    lab.syn_flood(3000)?;
    let ban = lab.wait_decision(&attacker, Duration::from_secs(3))?;
    assert!(ban.is_some(), "decided with the disk full");
    assert_eq!(
        lab.attacker.http_status(&lab.url4("/"), None),
        0,
        "and enforced"
    );
    eventually(
        Duration::from_secs(10),
        "a failed journal write counted",
        || Ok((lab.metric("ensuresec_journal_write_errors_total")? >= 1.0).then_some(())),
    )?;
    assert!(lab.metric("ensuresec_journal_pending")? >= 1.0);
    // Room again: what waited is written, once.
    std::fs::remove_file(filler)?;
    eventually(
        Duration::from_secs(40),
        "the waiting records written",
        || Ok((lab.metric("ensuresec_journal_pending")? == 0.0).then_some(())),
    )?;
    let decided: Vec<_> = journal(&lab, "decision")?
        .into_iter()
        .filter(|e| e["target"] == attacker.as_str())
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    Ok(())
}

#[test]
fn changes_the_journal_missed_are_reconciled_at_the_next_start() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config("")?;
    let mut agent = lab.start_agent(&config)?;
    agent.stop(libc::SIGTERM)?;
    // With the agent down, a change the journal cannot take (its directory
    // is not writable): the maps have it, the operator is told.
    let out = lab
        .ensuresec_cmd(&["block", "add", "203.0.113.50", "--reason", "while down"])
        .env("ENSURESEC_STATE_DIR", "/proc/ensuresec-nowhere")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("journal did not record"), "{err}");
    let mut agent = lab.start_agent(&config)?;
    let found = json(
        &lab,
        &["journal", "--address", "203.0.113.50", "-o", "json"],
    )?;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["kind"], "reconcile");
    assert_eq!(found[0]["detail"]["maps"]["reason"], "while down");
    // Now in the desired state: a reboot keeps it.
    reboot(&lab, &mut agent)?;
    let _agent = lab.start_agent(&config)?;
    let blocks = json(&lab, &["block", "list", "-o", "json"])?;
    assert_eq!(
        by_entry(&blocks, "203.0.113.50").context("kept")?["reason"],
        "while down"
    );
    Ok(())
}
