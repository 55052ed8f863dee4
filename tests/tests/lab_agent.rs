//! The agent in the lab: killed, restarted, stopped, configured; and detach.

use std::time::Duration;

use anyhow::Result;
use ensuresec_tests::{
    lab::{Lab, STOREFRONT_IFACE},
    wait::eventually,
};

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
    let m = eventually(
        Duration::from_secs(5),
        "the sweep to count the block",
        || {
            let m = lab.metrics()?;
            Ok((sample(
                &m,
                "ensuresec_blocklist_entries",
                &["family=\"ipv4\"", "kind=\"exact\""],
            ) == Some(1.0))
            .then_some(m))
        },
    )?;
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
    eventually(
        Duration::from_secs(5),
        "the sweep to remove the block",
        || {
            Ok((!lab
                .ensuresec(&["block", "list"])?
                .contains(&lab.shopper.v6.to_string()))
            .then_some(()))
        },
    )?;
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

/// Holds `count` idle connections to the metrics endpoint from inside the
/// storefront until killed; prints how many it opened.
const IDLE_CLIENTS: &str = r#"
import resource, socket, sys, time
count = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
held = []
for _ in range(count):
    try:
        held.append(socket.create_connection(("127.0.0.1", 9968), timeout=1))
    except OSError:
        pass
print(len(held), flush=True)
time.sleep(60)
"#;

/// Local clients that open connections to the metrics endpoint and never
/// send a request cannot take the agent's file descriptors: it serves a
/// bounded number at once, drops idle ones, and keeps scraping, sweeping and
/// enforcing.
#[test]
fn idle_metrics_clients_cannot_exhaust_the_agent() -> Result<()> {
    let lab = Lab::new()?;
    let agent = lab.start_agent(&lab.agent_config("")?)?;
    let mut idle = lab
        .storefront
        .ns
        .cmd("/usr/bin/python3")
        .args(["-c", IDLE_CLIENTS, "1500"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(idle.stdout.take().expect("stdout")),
        &mut line,
    )?;
    let opened: usize = line.trim().parse().unwrap_or(0);
    assert!(opened >= 1000, "the clients opened {opened} connections");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", agent.child.id()))?.count();
    assert!(fds < 300, "the agent holds {fds} descriptors");
    // Idle connections are dropped after their header timeout: scrapes work
    // again while the clients still hold theirs.
    let page = eventually(Duration::from_secs(15), "a scrape to succeed", || {
        Ok(lab.metrics().ok())
    })?;
    assert!(page.contains("ensuresec_packets_total"));
    // And the agent still works: a block added now is swept when it expires.
    lab.ensuresec(&["block", "add", &lab.attacker.v4.to_string(), "--ttl", "4s"])?;
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 0);
    eventually(
        Duration::from_secs(15),
        "the sweep to remove the block",
        || {
            Ok((!lab
                .ensuresec(&["block", "list"])?
                .contains(&lab.attacker.v4.to_string()))
            .then_some(()))
        },
    )?;
    let _ = idle.kill();
    let _ = idle.wait();
    Ok(())
}
