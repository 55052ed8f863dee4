//! Real traffic (ping, curl against nginx) through the XDP filter in the lab,
//! driven by the CLI alone: no agent runs in these tests.

use std::time::{Duration, Instant};

use anyhow::Result;
use ensuresec_tests::lab::Lab;

fn attached_lab() -> Result<Lab> {
    let lab = Lab::new()?;
    lab.ensuresec(&["attach", "--iface", "eth0"])?;
    Ok(lab)
}

fn status_json(lab: &Lab) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(
        &lab.ensuresec(&["status", "-o", "json"])?,
    )?)
}

fn counter(status: &serde_json::Value, reason: &str) -> u64 {
    status["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["reason"] == reason)
        .map(|c| c["packets"].as_u64().unwrap())
        .unwrap()
}

#[test]
fn exact_and_prefix_blocks_drop_only_their_sources() -> Result<()> {
    let lab = attached_lab()?;
    let a4 = lab.attacker.v4.to_string();
    let shop = (lab.url4("/product/1"), lab.url6("/checkout"));
    for host in [&lab.shopper, &lab.attacker] {
        assert_eq!(host.http_status(&shop.0, None), 200);
        assert_eq!(host.http_status(&shop.1, None), 200);
    }

    lab.ensuresec(&["block", "add", &a4, "--reason", "lab attacker"])?;
    assert_eq!(
        lab.attacker.http_status(&shop.0, None),
        0,
        "blocked IPv4 source"
    );
    assert!(!lab.attacker.ping(&lab.storefront.v4.to_string(), 2));
    assert_eq!(
        lab.attacker.http_status(&shop.1, None),
        200,
        "its IPv6 address is not blocked"
    );
    assert_eq!(lab.shopper.http_status(&shop.0, None), 200);

    lab.ensuresec(&["block", "add", "fd77::66:0/112"])?;
    assert_eq!(
        lab.attacker.http_status(&shop.1, None),
        0,
        "blocked IPv6 prefix"
    );
    assert_eq!(lab.shopper.http_status(&shop.1, None), 200);
    assert!(lab.shopper.ping(&lab.storefront.v6.to_string(), 2));

    // A second attacker address inside the blocked /24, the exact block removed.
    lab.ensuresec(&["block", "rm", &a4])?;
    let recover = Duration::from_secs(8);
    assert_eq!(
        lab.attacker.http_status_within(&shop.0, 200, recover),
        200,
        "unblocked"
    );
    lab.attacker.add_address("10.77.66.7")?;
    lab.ensuresec(&["block", "add", "10.77.66.0/24", "--ttl", "1h"])?;
    assert_eq!(lab.attacker.http_status(&shop.0, None), 0);
    assert_eq!(lab.attacker.http_status(&shop.0, Some("10.77.66.7")), 0);
    assert_eq!(lab.shopper.http_status(&shop.0, None), 200);

    let list: serde_json::Value =
        serde_json::from_str(&lab.ensuresec(&["block", "list", "-o", "json"])?)?;
    let entries: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["10.77.66.0/24", "fd77::66:0/112"]);
    let status = status_json(&lab)?;
    assert!(counter(&status, "blocked_exact") > 0);
    assert!(counter(&status, "blocked_cidr") > 0);
    assert!(counter(&status, "passed") > 0);
    Ok(())
}

#[test]
fn ttl_expires_in_the_kernel_with_no_agent_running() -> Result<()> {
    let lab = attached_lab()?;
    let url = lab.url4("/");
    lab.ensuresec(&["block", "add", &lab.attacker.v4.to_string(), "--ttl", "3s"])?;
    let added = Instant::now();
    assert_eq!(lab.attacker.http_status(&url, None), 0);
    assert!(
        status_json(&lab)?["agent_pid"].is_null(),
        "no agent in this test"
    );
    assert_eq!(
        lab.attacker
            .http_status_within(&url, 200, Duration::from_secs(6)),
        200,
        "expired without an agent"
    );
    let ended = added.elapsed();
    assert!(
        ended >= Duration::from_secs(3) && ended < Duration::from_secs(6),
        "expired on time: after {ended:?}"
    );
    // Nobody swept it: it is still listed, as expired.
    let status = status_json(&lab)?;
    let v4_exact = status["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["list"] == "block" && l["family"] == "ipv4" && l["kind"] == "exact")
        .unwrap()
        .clone();
    assert_eq!(
        (v4_exact["entries"].as_u64(), v4_exact["expired"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(lab.ensuresec(&["block", "list"])?.contains("expired"));
    Ok(())
}

#[test]
fn allowlist_beats_block() -> Result<()> {
    let lab = attached_lab()?;
    let (url4, url6) = (lab.url4("/cart"), lab.url6("/cart"));
    lab.ensuresec(&["block", "add", "10.77.0.0/16"])?;
    lab.ensuresec(&["block", "add", "fd77::/64"])?;
    assert_eq!(lab.shopper.http_status(&url4, None), 0);
    assert_eq!(lab.shopper.http_status(&url6, None), 0);

    lab.ensuresec(&["allow", "add", &lab.shopper.v4.to_string()])?;
    lab.ensuresec(&["allow", "add", "fd77::1:0/112"])?;
    let recover = Duration::from_secs(8);
    assert_eq!(lab.shopper.http_status_within(&url4, 200, recover), 200);
    assert_eq!(lab.shopper.http_status_within(&url6, 200, recover), 200);
    assert_eq!(lab.attacker.http_status(&url4, None), 0);
    assert_eq!(lab.attacker.http_status(&url6, None), 0);

    // An exact block under an allowed prefix stays overridden, and the CLI says so.
    let out = lab.ensuresec_raw(&["block", "add", &lab.shopper.v6.to_string()])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowlist, which wins"));
    assert_eq!(lab.shopper.http_status(&url6, None), 200);

    lab.ensuresec(&["allow", "rm", &lab.shopper.v4.to_string()])?;
    assert_eq!(
        lab.shopper.http_status(&url4, None),
        0,
        "block applies again"
    );
    let allow = lab.ensuresec(&["allow", "list"])?;
    assert!(allow.contains("fd77::1:0/112") && !allow.contains("10.77.1.10"));
    Ok(())
}
