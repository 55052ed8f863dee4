//! One real attack per detector, from hping3, nmap and slowhttptest in the lab:
//! each is detected by its detector and mitigated as configured.

use std::time::Duration;

use anyhow::Result;
use ensuresec_tests::lab::Lab;

const PROTECT: &str = "[[protect]]\nprefix = \"10.77.0.0/16\"\n";

/// Runs `tool ARGS... STOREFRONT` from the attacker, bounded by its own count.
fn attack(lab: &Lab, tool: &str, args: &[&str], target_last: bool) -> Result<()> {
    let mut cmd = lab.attacker.ns.cmd(tool);
    cmd.args(args);
    if target_last {
        cmd.arg(lab.storefront.v4.to_string());
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    Ok(())
}

/// Expects `detector` to ban the attacker, and the kernel to drop it after.
fn expect_ban(lab: &Lab, detector: &str) -> Result<()> {
    let d = lab
        .wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(4))?
        .unwrap_or_else(|| panic!("{detector} not detected; decisions: {:?}", lab.decisions()));
    assert_eq!(d["detector"], detector, "{d}");
    assert_eq!(d["action"], "ban");
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 0);
    assert_eq!(lab.shopper.http_status(&lab.url4("/"), None), 200);
    Ok(())
}

fn lab_with_agent(extra: &str) -> Result<(Lab, ensuresec_tests::lab::Agent)> {
    let lab = Lab::new()?;
    let agent = lab.start_agent(&lab.agent_config(&format!("{extra}\n{PROTECT}"))?)?;
    Ok((lab, agent))
}

#[test]
fn udp_flood() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    // hping3 sleeps longer than asked: -i u10 gives about 13,000 packets/s here.
    attack(
        &lab,
        "hping3",
        &["--udp", "-p", "9999", "-i", "u10", "-c", "20000", "-q"],
        true,
    )?;
    expect_ban(&lab, "udp_flood")
}

#[test]
fn icmp_flood() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    attack(
        &lab,
        "hping3",
        &["--icmp", "-i", "u2000", "-c", "1000", "-q"],
        true,
    )?;
    expect_ban(&lab, "icmp_flood")
}

#[test]
fn ack_flood() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    attack(
        &lab,
        "hping3",
        &["-A", "-p", "80", "-i", "u40", "-c", "40000", "-q"],
        true,
    )?;
    expect_ban(&lab, "ack_rst_flood")
}

#[test]
fn fragment_flood() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    // hping3 -f splits each datagram into 16-byte fragments.
    attack(
        &lab,
        "hping3",
        &[
            "--udp", "-p", "9999", "-d", "120", "-f", "-i", "u1000", "-c", "1500", "-q",
        ],
        true,
    )?;
    expect_ban(&lab, "fragment_flood")
}

#[test]
fn reflection() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    // UDP from NTP's port, as amplified replies arrive.
    attack(
        &lab,
        "hping3",
        &[
            "--udp", "-s", "123", "-k", "-p", "40000", "-i", "u2000", "-c", "1000", "-q",
        ],
        true,
    )?;
    expect_ban(&lab, "reflection")
}

#[test]
fn synack_reflection() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    attack(
        &lab,
        "hping3",
        &["-S", "-A", "-p", "80", "-i", "u2000", "-c", "1000", "-q"],
        true,
    )?;
    expect_ban(&lab, "synack_reflection")
}

#[test]
fn host_sweep() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    // A hosting server answers for many storefront addresses.
    for i in 2..=12 {
        lab.storefront.add_address(&format!("10.77.0.{i}"))?;
    }
    attack(
        &lab,
        "nmap",
        &["-sn", "-n", "-PS80", "--send-ip", "10.77.0.1-12"],
        false,
    )?;
    expect_ban(&lab, "host_sweep")
}

#[test]
fn slowloris() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    // 300 connections opened at 60 a second (too slow for a SYN flood), each
    // sending a header line every 5 s, for 10 s.
    let url = lab.url4("/");
    let mut slow = lab
        .attacker
        .ns
        .cmd("slowhttptest")
        .args([
            "-H", "-c", "300", "-r", "60", "-i", "5", "-l", "10", "-x", "24", "-p", "3", "-u", &url,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let found = lab.wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(6))?;
    let _ = slow.kill();
    let _ = slow.wait();
    let d = found.expect("slowloris detected");
    assert_eq!(d["detector"], "half_open", "{d}");
    assert!(d["observed"].as_u64().unwrap() >= 100);
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 0);
    Ok(())
}

#[test]
fn spoofed_syn_flood_gets_a_destination_budget() -> Result<()> {
    let (lab, _agent) = lab_with_agent("")?;
    // Random sources: per-source bans cannot help; the destination is budgeted.
    attack(
        &lab,
        "hping3",
        &[
            "-S",
            "-p",
            "80",
            "--rand-source",
            "-i",
            "u10",
            "-c",
            "20000",
            "-q",
        ],
        true,
    )?;
    let target = format!("{}:80/tcp", lab.storefront.v4);
    let d = lab
        .wait_decision(&target, Duration::from_secs(4))?
        .unwrap_or_else(|| panic!("no budget; decisions: {:?}", lab.decisions()));
    assert_eq!(
        (d["detector"].as_str(), d["action"].as_str()),
        (Some("syn_flood"), Some("budget"))
    );
    assert!(
        lab.counter("dst_budget")? > 0,
        "SYNs over the budget were dropped"
    );
    // No source was banned for it, and the shop still answers.
    assert!(lab.decisions()?.iter().all(|d| d["action"] != "ban"));
    assert_eq!(
        lab.shopper
            .http_status_within(&lab.url4("/"), 200, Duration::from_secs(3)),
        200
    );
    Ok(())
}
