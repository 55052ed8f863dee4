//! Application-level detection in the lab: real attack tools and scripted
//! clients against the lab shop behind nginx; the agent reads nginx's logs
//! and the shop's events, decides, and the attacker's packets are dropped in
//! XDP while shoppers are served. Scenarios run one at a time: they time
//! what they measure.

use std::{sync::Mutex, time::Duration};

use anyhow::Result;
use ensuresec_tests::{
    shop::{self, GOOD_CARDS, ShopLab, curl, logged_from},
    wait::eventually,
};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn shop_lab() -> Result<ShopLab> {
    ShopLab::new(env!("CARGO_BIN_EXE_lab-shop"))
}

/// The decision on `target` with its evidence (written just after it),
/// waited for.
fn decision(s: &ShopLab, target: &str) -> Result<Value> {
    eventually(
        Duration::from_secs(10),
        &format!("a decision on {target}"),
        || {
            Ok(s.lab
                .decisions()?
                .into_iter()
                .find(|d| d["target"] == target && !d["details"].is_null()))
        },
    )
}

/// A decision made on application evidence: a ban naming the storefront,
/// and the attacker's packets dropped from then on.
fn assert_banned(s: &ShopLab, d: &Value, detectors: &[&str]) {
    assert!(
        detectors.contains(&d["detector"].as_str().unwrap_or("")),
        "{d}"
    );
    assert_eq!(d["action"], "ban", "{d}");
    assert_eq!(d["storefront"], shop::STOREFRONT, "{d}");
    assert_eq!(
        curl(&s.lab.attacker, &s.url("/"), &[]),
        0,
        "the attacker is dropped"
    );
    assert_eq!(
        curl(&s.lab.shopper, &s.url("/"), &[]),
        200,
        "the shopper is served"
    );
}

/// Failed logins for many accounts from one host with a browser's user
/// agent: credential stuffing, banned, evidence naming the login path.
#[test]
fn credential_stuffing_from_one_host_is_dropped_in_xdp() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
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
    Ok(())
}

/// hydra with a combo list: banned after a few guesses; the rest of its
/// list never reaches the shop.
#[test]
fn hydra_with_a_combo_list_is_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let combo = s.dir.join("combo.txt");
    let pairs: String = (1..=60)
        .map(|n| format!("customer{}@lab.shop:leaked-{n}\n", n % 20 + 1))
        .collect();
    std::fs::write(&combo, pairs)?;
    let target = s.lab.storefront.v4.to_string();
    let hydra = s
        .lab
        .attacker
        .ns
        .cmd("timeout")
        .args(["30", "hydra", "-C"])
        .arg(&combo)
        .args(["-s", "8000", "-t", "4", "-w", "3", &target])
        .args([
            "http-post-form",
            "/login:user=^USER^&pass=^PASS^:F=Invalid login",
        ])
        .output()?;
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_banned(&s, &d, &["attack_tool", "credential_stuffing"]);
    let reached = logged_from(&s.access_log, &s.lab.attacker.v4.to_string());
    assert!(
        reached > 0,
        "hydra ran: {}",
        String::from_utf8_lossy(&hydra.stderr)
    );
    assert!(
        reached < 20,
        "{reached} of hydra's 60 guesses reached the shop"
    );
    Ok(())
}

/// gobuster's content discovery: banned on its user agent or its probes.
#[test]
fn content_discovery_with_gobuster_is_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let words = s.dir.join("words.txt");
    let list: String = [".git/config", ".env", "admin", "backup.zip", "old", "test"]
        .iter()
        .map(|w| w.to_string())
        .chain((0..200).map(|n| format!("dir{n}")))
        .map(|w| w + "\n")
        .collect();
    std::fs::write(&words, list)?;
    s.lab
        .attacker
        .ns
        .cmd("timeout")
        .args([
            "30",
            "gobuster",
            "dir",
            "-q",
            "-t",
            "4",
            "--timeout",
            "2s",
            "-u",
        ])
        .arg(s.url("/"))
        .arg("-w")
        .arg(&words)
        .output()?;
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_banned(&s, &d, &["attack_tool", "scanner"]);
    let reached = logged_from(&s.access_log, &s.lab.attacker.v4.to_string());
    assert!(
        (1..100).contains(&reached),
        "{reached} of 206 probes reached the shop"
    );
    Ok(())
}

/// A login that works after failures on other accounts: the account is
/// named (as a pseudonym) as affected, and the source banned.
#[test]
fn account_takeover_names_the_taken_account() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let agent = s.lab.start_agent(&s.agent_config("")?)?;
    let accounts = shop::accounts();
    for (user, _) in &accounts[..2] {
        let status = curl(
            &s.lab.attacker,
            &s.url("/login"),
            &["-d", &format!("user={user}&pass=nope")],
        );
        assert_eq!(status, 401);
    }
    let (user, pass) = &accounts[2];
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
    Ok(())
}

/// Card testing through the checkout: declines of many cards from one host.
#[test]
fn card_testing_from_one_host_is_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
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
    Ok(())
}

/// Basic-auth guessing seen in nginx's error log.
#[test]
fn basic_auth_guessing_in_the_error_log_is_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
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
    Ok(())
}

/// Shoppers browse, mistype a password once, have a card declined once,
/// and buy: the agent reads all of it and decides nothing.
#[test]
fn shoppers_are_never_decided_on() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let shopper = &s.lab.shopper;
    let mut served = 0;
    let mut total = 0;
    let mut ok = |status: u16, want: u16| {
        total += 1;
        served += (status == want) as u32;
    };
    for n in 1..=20 {
        ok(curl(shopper, &s.url(&format!("/product/{n}")), &[]), 200);
        ok(curl(shopper, &s.url("/static/shop.css"), &[]), 200);
    }
    let (user, pass) = &shop::accounts()[4];
    ok(
        curl(
            shopper,
            &s.url("/login"),
            &["-d", &format!("user={user}&pass=typo")],
        ),
        401,
    );
    ok(
        curl(
            shopper,
            &s.url("/login"),
            &["-d", &format!("user={user}&pass={pass}")],
        ),
        302,
    );
    ok(
        curl(
            shopper,
            &s.url("/checkout"),
            &["-d", "card=4000000000000002&amount=59.90"],
        ),
        402,
    );
    ok(
        curl(
            shopper,
            &s.url("/checkout"),
            &["-d", &format!("card={}&amount=59.90", GOOD_CARDS[0])],
        ),
        200,
    );
    ok(curl(shopper, &s.url6("/product/3"), &[]), 200);
    assert_eq!(served, total, "the shopper was served");
    // Every line reached the agent...
    eventually(
        Duration::from_secs(5),
        "the agent to read the shopper's lines",
        || {
            let access = s.lines(&s.access_log, "ok")?;
            let events = s.lines(&s.events_log, "ok")?;
            Ok((access >= total as f64 && events >= 4.0).then_some(()))
        },
    )?;
    // ...and none of it was taken for an attack.
    assert_eq!(s.lab.decisions()?, Vec::<Value>::new());
    assert_eq!(s.lines(&s.access_log, "malformed")?, 0.0);
    Ok(())
}

/// Behind a trusted proxy, the client is the right-most untrusted address of
/// X-Forwarded-For: its decision is recorded, not enforced (XDP sees the
/// proxy), and the proxy itself is never banned. From anyone else the header
/// is ignored.
#[test]
fn a_client_behind_a_trusted_proxy_is_recorded_and_the_proxy_is_kept() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let proxy = s.lab.shopper.v4.to_string();
    let config = s.agent_config_with(&format!("trusted_proxies = [\"{proxy}\"]\n"), "")?;
    let _agent = s.lab.start_agent(&config)?;
    let behind = "203.0.113.50";
    let xff = format!("X-Forwarded-For: 198.51.100.1, {behind}");
    let status = curl(
        &s.lab.shopper,
        &s.url("/"),
        &["-H", &xff, "-A", "sqlmap/1.7.2#stable"],
    );
    assert_eq!(status, 200);
    // The same header from an untrusted host names that host.
    curl(
        &s.lab.attacker,
        &s.url("/"),
        &[
            "-H",
            "X-Forwarded-For: 192.0.2.99",
            "-A",
            "sqlmap/1.7.2#stable",
        ],
    );
    let d = decision(&s, behind)?;
    assert_eq!(d["action"], "alert", "{d}");
    assert!(
        d["details"]
            .as_str()
            .unwrap_or_default()
            .contains("trusted proxy"),
        "{d}"
    );
    let forged = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_eq!(forged["action"], "ban", "{forged}");
    let targets: Vec<String> = s
        .lab
        .decisions()?
        .iter()
        .map(|d| d["target"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!targets.contains(&proxy), "{targets:?}");
    assert!(!targets.contains(&"192.0.2.99".to_string()), "{targets:?}");
    assert_eq!(
        curl(&s.lab.shopper, &s.url("/"), &[]),
        200,
        "the proxy is served"
    );
    Ok(())
}

/// Shop events POSTed to the agent: refused without the token (401) or when
/// too large (413); a batch with one bad line is refused whole (400, naming
/// the line) and nothing of it is counted; a good batch is taken and acted on.
#[test]
fn posted_shop_events_are_authenticated_bounded_and_all_or_nothing() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let token = "lab-events-token-0123456789";
    let token_file = s.dir.join("events.token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let config = s.agent_config(&format!(
        "[events]\nlisten = \"127.0.0.1:9969\"\ntoken_file = \"{}\"\nmax_body = 4096\n",
        token_file.display()
    ))?;
    let _agent = s.lab.start_agent(&config)?;
    let body_file = s.dir.join("events-body");
    let post = |auth: Option<&str>, body: &str| -> Result<(u16, String)> {
        std::fs::write(&body_file, body)?;
        let mut cmd = s.lab.storefront.ns.cmd("curl");
        cmd.args([
            "-s",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "5",
            "--data-binary",
        ])
        .arg(format!("@{}", body_file.display()));
        if let Some(a) = auth {
            cmd.args(["-H", &format!("Authorization: Bearer {a}")]);
        }
        let out = cmd.arg("http://127.0.0.1:9969/v1/events").output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((code.trim().parse()?, body.to_string()))
    };
    let attacker = s.lab.attacker.v4.to_string();
    let declined = |n: u32| {
        format!(
            "{{\"time\":\"2026-12-01T10:00:0{n}Z\",\"type\":\"payment_declined\",\"ip\":\"{attacker}\",\"storefront\":\"{}\",\"card\":\"card-{n}\",\"amount\":1.0}}\n",
            shop::STOREFRONT
        )
    };
    let good: String = (0..6).map(declined).collect();
    assert_eq!(post(None, &good)?.0, 401);
    assert_eq!(post(Some("wrong-token-wrong-token"), &good)?.0, 401);
    assert_eq!(post(Some(token), &"x".repeat(5000))?.0, 413);
    let broken = format!("{}{{\"type\":\"login_ok\"}}\n{}", declined(1), declined(2));
    let (code, body) = post(Some(token), &broken)?;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("line 2") && body.contains("time"), "{body}");
    assert_eq!(
        s.lines(std::path::Path::new("events"), "ok")?,
        0.0,
        "nothing of it was taken"
    );
    let (code, body) = post(Some(token), &good)?;
    assert_eq!(code, 202, "{body}");
    let d = decision(&s, &attacker)?;
    assert_banned(&s, &d, &["card_testing"]);
    assert_eq!(s.lines(std::path::Path::new("events"), "ok")?, 6.0);
    Ok(())
}
