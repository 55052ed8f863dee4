//! Application-level detection in the lab, one attacker at a time: real
//! attack tools and scripted clients against the lab shop behind nginx; the
//! agent reads nginx's logs and the shop's events, decides, and the
//! attacker's packets are dropped in XDP while a shopper browsing all
//! through is served (>= 99 % of its requests).
//! Scenarios run one at a time: they time what they measure.

use std::{sync::Mutex, time::Duration};

use anyhow::{Context as _, Result};
use ensuresec_tests::{
    attacks,
    shop::{
        self, ShopLab, assert_banned, assert_served, curl, decision, decision_within, logged_from,
        shopper_load,
    },
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn shop_lab() -> Result<ShopLab> {
    ShopLab::new(env!("CARGO_BIN_EXE_lab-shop"))
}

/// Failed logins for many accounts from one host with a browser's user
/// agent: credential stuffing, banned, evidence naming the login path.
#[test]
fn credential_stuffing_from_one_host_is_dropped_in_xdp() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let load = shopper_load(&s);
    for n in 1..=12 {
        let status = curl(
            &s.lab.attacker,
            &s.url("/login"),
            &["-d", &format!("user=customer{n}@lab.shop&pass=guess{n}")],
        );
        if status == 0 {
            break;
        }
        assert_eq!(status, 401);
    }
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_banned(&s, &d, &["credential_stuffing"]);
    let details = d["details"].as_str().unwrap_or_default();
    assert!(details.contains("/login"), "{d}");
    assert!(
        !details.contains("customer1@lab.shop"),
        "accounts only as pseudonyms: {d}"
    );
    assert!(
        d["accounts"].as_array().is_some_and(|a| a.len() >= 4),
        "{d}"
    );
    let timed = s
        .lab
        .metric("ensuresec_time_to_mitigate_seconds_count{layer=\"app\"}")?;
    assert!(timed >= 1.0);
    assert_served(load);
    Ok(())
}

/// hydra with a combo list: banned after a few guesses; the rest of its
/// list never reaches the shop.
#[test]
fn hydra_with_a_combo_list_is_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let load = shopper_load(&s);
    let hydra = attacks::hydra(&s, &s.lab.attacker, 60, 3)?;
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_banned(&s, &d, &["attack_tool", "credential_stuffing"]);
    let reached = logged_from(&s.access_log, &s.lab.attacker.v4.to_string());
    assert!(
        reached > 0,
        "hydra ran: {}",
        String::from_utf8_lossy(&hydra.stderr)
    );
    assert!(
        reached < 40,
        "{reached} of hydra's 60 guesses reached the shop"
    );
    assert_served(load);
    Ok(())
}

/// gobuster's content discovery: banned on its user agent or its probes.
#[test]
fn content_discovery_with_gobuster_is_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let load = shopper_load(&s);
    let words = s.dir.join("words.txt");
    // Longer than gobuster can send before its first probe is judged.
    let list: String = [".git/config", ".env", "admin", "backup.zip", "old", "test"]
        .iter()
        .map(|w| w.to_string())
        .chain((0..2000).map(|n| format!("dir{n}")))
        .map(|w| w + "\n")
        .collect();
    std::fs::write(&words, list)?;
    attacks::gobuster(&s, &s.lab.attacker, &words, "2s")?;
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_banned(&s, &d, &["attack_tool", "scanner"]);
    let reached = logged_from(&s.access_log, &s.lab.attacker.v4.to_string());
    assert!(
        (1..1000).contains(&reached),
        "{reached} of 2006 probes reached the shop"
    );
    assert_served(load);
    Ok(())
}

/// sqlmap and wapiti against a form, ffuf and dirb discovering content,
/// and an nmap service scan of the shop's port, each from its own host:
/// each is cut off (by its user agent, its probes or its burst of errors),
/// and the shopper is served. (An nmap service scan of a web port opens
/// with HTTP requests only: the application layer names it.)
#[test]
fn sqlmap_wapiti_ffuf_dirb_and_nmap_are_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let load = shopper_load(&s);
    let words = s.dir.join("words.txt");
    let list: String = ["admin", "backup", "config", ".git/HEAD", "old", "private"]
        .iter()
        .map(|w| w.to_string())
        .chain((0..2000).map(|n| format!("page{n}")))
        .map(|w| w + "\n")
        .collect();
    std::fs::write(&words, list)?;
    let words = words.display().to_string();
    let reports = s.dir.join("wapiti").display().to_string();
    let storefront = s.lab.storefront.v4.to_string();
    let port = ensuresec_tests::shop::PORT.to_string();
    let tools: [(&str, Vec<String>); 5] = [
        (
            "sqlmap",
            [
                "sqlmap",
                "-u",
                &s.url("/search?q=mug"),
                "--batch",
                "--level",
                "1",
                "--risk",
                "1",
                "--timeout",
                "2",
                "--retries",
                "0",
                "--threads",
                "2",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "ffuf",
            [
                "ffuf",
                "-s",
                "-t",
                "4",
                "-timeout",
                "2",
                "-w",
                &words,
                "-u",
                &s.url("/FUZZ"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "dirb",
            ["dirb", &s.url("/"), &words, "-S", "-r", "-z", "20"]
                .map(String::from)
                .to_vec(),
        ),
        (
            "wapiti",
            [
                "wapiti",
                "-u",
                &s.url("/search?q=mug"),
                "--scope",
                "url",
                "-m",
                "xss,sql",
                "--flush-session",
                "--max-scan-time",
                "30",
                "-o",
                &reports,
                "-f",
                "txt",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "nmap",
            ["nmap", "-sV", "-n", "-Pn", "-p", &port, &storefront]
                .map(String::from)
                .to_vec(),
        ),
    ];
    for (n, (tool, args)) in tools.iter().enumerate() {
        let host = s.lab.add_host(
            tool,
            std::net::Ipv4Addr::new(10, 77, 70, 10 + n as u8),
            format!("fd77::70:{n}").parse()?,
        )?;
        let mut run = host
            .ns
            .cmd("timeout")
            .arg("40")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        // nmap waits six seconds for a banner before its first request.
        let within = Duration::from_secs(if *tool == "nmap" { 25 } else { 10 });
        let d = decision_within(&s, &host.v4.to_string(), within);
        // Cut off, the tool only waits out its timeouts: stop it (`timeout`
        // passes SIGTERM on to it).
        // SAFETY: signals our own child.
        unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
        let _ = run.wait();
        let d = d.with_context(|| {
            let log = std::fs::read_to_string(&s.access_log).unwrap_or_default();
            let sent: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&host.v4.to_string()))
                .take(20)
                .collect();
            format!("{tool} sent:\n{}", sent.join("\n"))
        })?;
        let reached = logged_from(&s.access_log, &host.v4.to_string());
        assert!(reached > 0, "{tool} reached the shop");
        assert_eq!(d["action"], "ban", "{tool}: {d}");
        assert!(
            ["attack_tool", "scanner"].contains(&d["detector"].as_str().unwrap_or("")),
            "{tool}: {d}"
        );
        assert_eq!(curl(&host, &s.url("/"), &[]), 0, "{tool}'s host is dropped");
        assert!(
            reached < 1000,
            "{tool}: {reached} requests reached the shop"
        );
    }
    assert_eq!(curl(&s.lab.shopper, &s.url("/"), &[]), 200);
    assert_served(load);
    Ok(())
}

/// A login that works after failures on other accounts: the account is
/// named (as a pseudonym) as affected, and the source banned.
#[test]
fn account_takeover_names_the_taken_account() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let agent = s.lab.start_agent(&s.agent_config("")?)?;
    let load = shopper_load(&s);
    let accounts = shop::accounts();
    for (user, _) in &accounts[..3] {
        let status = curl(
            &s.lab.attacker,
            &s.url("/login"),
            &["-d", &format!("user={user}&pass=nope")],
        );
        assert_eq!(status, 401);
    }
    let (user, pass) = &accounts[3];
    let status = curl(
        &s.lab.attacker,
        &s.url("/login"),
        &["-d", &format!("user={user}&pass={pass}")],
    );
    assert_eq!(status, 302, "the stolen pair works");
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_banned(&s, &d, &["account_takeover"]);
    assert_eq!(d["accounts"].as_array().map(Vec::len), Some(1), "{d}");
    // Clear names appear nowhere the agent writes.
    let written = format!(
        "{}{}",
        agent.log_text(),
        std::fs::read_to_string(ensuresec_agent::detect::app_evidence::path(
            &s.lab.pins.pins
        ))?
    );
    assert!(
        !written.contains("@lab.shop"),
        "an account in clear: {written}"
    );
    assert_served(load);
    Ok(())
}

/// Card testing through the checkout: declines of many cards from one host.
#[test]
fn card_testing_from_one_host_is_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let load = shopper_load(&s);
    for n in 0..8 {
        let card = format!("40000000000000{n:02}");
        let status = curl(
            &s.lab.attacker,
            &s.url("/checkout"),
            &["-d", &format!("card={card}&amount=1.00")],
        );
        if status == 0 {
            break;
        }
        assert_eq!(status, 402);
    }
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_banned(&s, &d, &["card_testing"]);
    assert_served(load);
    Ok(())
}

/// Basic-auth guessing seen in nginx's error log.
#[test]
fn basic_auth_guessing_in_the_error_log_is_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let load = shopper_load(&s);
    for n in 0..12 {
        let status = curl(
            &s.lab.attacker,
            &s.url("/staff/"),
            &["-u", &format!("admin:guess{n}")],
        );
        if status == 0 {
            break;
        }
        assert_eq!(status, 401);
    }
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_banned(&s, &d, &["credential_stuffing"]);
    assert!(s.lines(&s.error_log, "ok")? >= 10.0);
    assert_served(load);
    Ok(())
}
