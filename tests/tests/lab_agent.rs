//! The agent in the lab: killed, restarted, stopped, configured; and detach.

use std::time::Duration;

use anyhow::Result;
use ensuresec_tests::lab::{Lab, STOREFRONT_IFACE};

fn iface(lab: &Lab) -> Result<serde_json::Value> {
    let status: serde_json::Value =
        serde_json::from_str(&lab.ensuresec(&["status", "-o", "json"])?)?;
    let ifaces = status["interfaces"].as_array().unwrap().clone();
    assert_eq!(ifaces.len(), 1, "one interface, one link: {ifaces:?}");
    Ok(ifaces[0].clone())
}

/// XDP programs the kernel reports on the storefront's interface.
fn xdp_programs(lab: &Lab) -> Result<usize> {
    let out = lab
        .storefront
        .ns
        .cmd("ip")
        .args(["-d", "link", "show", "dev", STOREFRONT_IFACE])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .matches("prog/xdp id")
        .count())
}

/// Value of the first sample of `name` whose line contains all of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn filter_survives_sigkill_and_a_restart_adopts_it() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config("")?;
    let mut agent = lab.start_agent(&config)?;
    let before = iface(&lab)?;
    assert_eq!(before["state"], "attached");
    lab.ensuresec(&[
        "block",
        "add",
        &lab.attacker.v4.to_string(),
        "--reason",
        "kill test",
    ])?;
    lab.ensuresec(&["block", "add", "fd77::66:0/112", "--ttl", "1h"])?;
    let url = lab.url4("/");
    assert_eq!(lab.attacker.http_status(&url, None), 0);

    agent.stop(libc::SIGKILL)?;
    assert_eq!(
        lab.attacker.http_status(&url, None),
        0,
        "still dropped with the agent dead"
    );
    assert_eq!(lab.attacker.http_status(&lab.url6("/"), None), 0);
    assert_eq!(lab.shopper.http_status(&url, None), 200);

    let _agent = lab.start_agent(&config)?;
    let after = iface(&lab)?;
    assert_eq!(
        after["link_id"], before["link_id"],
        "the pinned link was adopted, not duplicated"
    );
    assert_eq!(xdp_programs(&lab)?, 1);
    let list = lab.ensuresec(&["block", "list"])?;
    assert!(
        list.contains(&lab.attacker.v4.to_string()) && list.contains("kill test"),
        "{list}"
    );
    assert!(list.contains("fd77::66:0/112"), "{list}");
    assert_eq!(lab.attacker.http_status(&url, None), 0);
    assert_eq!(lab.shopper.http_status(&url, None), 200);
    Ok(())
}

#[test]
fn metrics_and_sigterm() -> Result<()> {
    let lab = Lab::new()?;
    let mut agent = lab.start_agent(&lab.agent_config("")?)?;
    lab.ensuresec(&["block", "add", &lab.attacker.v4.to_string()])?;
    let url = lab.url4("/");
    for _ in 0..3 {
        assert_eq!(lab.attacker.http_status(&url, None), 0);
        assert_eq!(lab.shopper.http_status(&url, None), 200);
    }
    // The gauges follow the agent's sweep (every 500 ms in the lab config).
    std::thread::sleep(Duration::from_millis(1200));
    let m = lab.metrics()?;
    let dropped = sample(
        &m,
        "ensuresec_packets_total",
        &["reason=\"blocked_exact\"", "verdict=\"drop\""],
    );
    assert!(dropped.unwrap_or(0.0) >= 3.0, "{m}");
    assert!(sample(&m, "ensuresec_packets_total", &["reason=\"passed\""]).unwrap_or(0.0) > 0.0);
    assert!(
        sample(&m, "ensuresec_bytes_total", &["reason=\"blocked_exact\""]).unwrap_or(0.0) > 0.0
    );
    assert_eq!(
        sample(
            &m,
            "ensuresec_blocklist_entries",
            &["family=\"ipv4\"", "kind=\"exact\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, "ensuresec_attached_interfaces", &[]), Some(1.0));
    assert!(sample(&m, "process_resident_memory_bytes", &[]).unwrap_or(0.0) > 0.0);

    let status = agent.stop(libc::SIGTERM)?;
    assert!(
        status.success(),
        "SIGTERM ends the agent cleanly: {status:?}"
    );
    assert!(agent.log_text().contains("stays attached"));
    assert_eq!(
        lab.attacker.http_status(&url, None),
        0,
        "filter stays after SIGTERM"
    );
    assert_eq!(xdp_programs(&lab)?, 1);
    Ok(())
}

#[test]
fn agent_applies_config_allowlist_and_port_policy_and_sweeps() -> Result<()> {
    let lab = Lab::new()?;
    let attacker = lab.attacker.v4.to_string();
    let config = lab.agent_config(&format!(
        "[allowlist]\nentries = [\"{attacker}\"]\n\n[port_policy]\nenabled = true\ntcp = [\"80\"]\nudp = []\n"
    ))?;
    let _agent = lab.start_agent(&config)?;
    assert_eq!(lab.shopper.http_status(&lab.url4("/"), None), 200);
    assert_eq!(lab.shopper.http_status(&lab.url6("/"), None), 200);
    assert_eq!(
        lab.shopper
            .http_status(&format!("http://{}:8080/", lab.storefront.v4), None),
        0
    );
    // A SYN to a port the policy closes, split into fragments too short to
    // hold its TCP header (hping3 -f): dropped, not answered.
    let probe = lab
        .shopper
        .ns
        .cmd("hping3")
        .args(["-S", "-f", "-p", "8080", "-c", "3", "-i", "u200000"])
        .arg(lab.storefront.v4.to_string())
        .output()?;
    let replies = String::from_utf8_lossy(&probe.stdout);
    assert!(!replies.contains("flags=SA"), "answered: {replies}");
    assert!(lab.counter("port_unreadable")? >= 3, "{replies}");
    // The config's allowlist wins over a block, and only the config can remove it.
    lab.ensuresec(&["block", "add", &attacker])?;
    assert_eq!(
        lab.attacker
            .http_status(&format!("http://{}:8080/", lab.storefront.v4), None),
        200
    );
    let rm = lab.ensuresec_raw(&["allow", "rm", &attacker])?;
    assert!(!rm.status.success());
    assert!(String::from_utf8_lossy(&rm.stderr).contains("config file"));
    assert!(lab.ensuresec(&["allow", "list"])?.contains("config"));

    // The agent removes expired blocks from the maps.
    lab.ensuresec(&["block", "add", &lab.shopper.v6.to_string(), "--ttl", "1s"])?;
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !lab.ensuresec(&["block", "list"])?
            .contains(&lab.shopper.v6.to_string())
    );
    let m = lab.metrics()?;
    assert!(
        sample(&m, "ensuresec_expired_removed_total", &[]).unwrap_or(0.0) >= 1.0,
        "{m}"
    );

    // A second agent for the same pin directory is refused.
    let second = lab.ensuresec_raw(&["run", "--config", config.to_str().unwrap()])?;
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));
    Ok(())
}

#[test]
fn detach_removes_program_link_and_pins() -> Result<()> {
    let lab = Lab::new()?;
    lab.ensuresec(&["attach", "--iface", STOREFRONT_IFACE, "--mode", "generic"])?;
    assert_eq!(iface(&lab)?["mode"], "generic");
    // Re-attaching replaces the program in place on the same link.
    let link = iface(&lab)?["link_id"].clone();
    let out = lab.ensuresec(&["attach", "--iface", STOREFRONT_IFACE])?;
    assert!(out.contains("in place"), "{out}");
    assert_eq!(iface(&lab)?["link_id"], link);
    let mode_change =
        lab.ensuresec_raw(&["attach", "--iface", STOREFRONT_IFACE, "--mode", "native"])?;
    assert!(String::from_utf8_lossy(&mode_change.stderr).contains("detach it first"));

    lab.ensuresec(&["block", "add", &lab.attacker.v4.to_string()])?;
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 0);
    let out = lab.ensuresec(&["detach", "--iface", STOREFRONT_IFACE])?;
    assert!(out.contains("removed the maps"), "{out}");
    assert!(!lab.pins.pins.root().exists(), "pins removed");
    assert_eq!(xdp_programs(&lab)?, 0, "program detached");
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 200);
    let status = lab.ensuresec_raw(&["status"])?;
    assert!(String::from_utf8_lossy(&status.stderr).contains("nothing is attached"));
    Ok(())
}
