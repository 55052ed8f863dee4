//! What the application inputs do with benign, proxied, posted, broken and
//! interrupted input in the lab: shoppers never decided on, a trusted proxy,
//! the events listener's checks, bad lines and restarts, the allowlist and
//! dry run.

use std::{sync::Mutex, time::Duration};

use anyhow::Result;
use ensuresec_tests::{
    shop::{self, GOOD_CARDS, ShopLab, assert_banned, curl, decision},
    wait::eventually,
};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn shop_lab() -> Result<ShopLab> {
    ShopLab::new(env!("CARGO_BIN_EXE_lab-shop"))
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
    // Requests the proxy relays without naming a client (no header, only
    // proxies, a hop it cannot read) are counted and pinned on no one, even
    // a probe for secrets that would ban anyone else at once.
    // (The plain request just above is the first such line.)
    let before = eventually(
        Duration::from_secs(5),
        "the proxy's own request counted",
        || {
            let n = s.lines(&s.access_log, "unattributed")?;
            Ok((n >= 1.0).then_some(n))
        },
    )?;
    for header in [
        None,
        Some("X-Forwarded-For: unknown"),
        Some(&*format!("X-Forwarded-For: {proxy}")),
    ] {
        let mut args = vec![];
        if let Some(h) = header {
            args.extend(["-H", h]);
        }
        assert_eq!(curl(&s.lab.shopper, &s.url("/.env"), &args), 404);
    }
    eventually(Duration::from_secs(5), "the relayed probes counted", || {
        Ok((s.lines(&s.access_log, "unattributed")? >= before + 3.0).then_some(()))
    })?;
    let decided: Vec<Value> = s.lab.decisions()?;
    assert!(
        !decided.iter().any(|d| d["target"] == proxy.as_str()),
        "{decided:?}"
    );
    assert_eq!(
        curl(&s.lab.shopper, &s.url("/"), &[]),
        200,
        "the proxy is still served"
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

/// Bad lines are counted and skipped (the agent keeps reading); lines written
/// while the agent is down are read by the next one, each exactly once; a
/// log deleted and recreated (nginx reopening its logs) is followed.
#[test]
fn bad_lines_restarts_and_a_recreated_log_lose_nothing() -> Result<()> {
    use std::io::Write as _;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let config = s.agent_config("")?;
    let mut first = s.lab.start_agent(&config)?;
    {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&s.access_log)?;
        log.write_all(b"garbage that is no request\n")?;
        log.write_all(b"\x00\xff\xfe\x01binary\xc3\x28\n")?;
        log.write_all(b"{\"remote_addr\":\"10.0.0.1\",\"status\":200}\n")?;
        log.write_all(&[b'x'; 100_000])?;
        log.write_all(b"\n")?;
        // A valid line from a skewed clock: read and counted like any other.
        log.write_all(b"shop.lab 10.77.1.10 - - [01/Jan/1999:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"Mozilla/5.0\" \"-\"\n")?;
    }
    eventually(Duration::from_secs(5), "the bad lines counted", || {
        let malformed = s.lines(&s.access_log, "malformed")?;
        let long = s.lines(&s.access_log, "too_long")?;
        let ok = s.lines(&s.access_log, "ok")?;
        Ok((malformed == 3.0 && long == 1.0 && ok == 1.0).then_some(()))
    })?;
    first.stop(libc::SIGTERM)?;
    // Twelve failed logins while no agent runs (nginx logs them, the shop
    // writes their events).
    for n in 1..=12 {
        let status = curl(
            &s.lab.attacker,
            &s.url("/login"),
            &["-d", &format!("user=customer{n}@lab.shop&pass=x")],
        );
        assert_eq!(status, 401);
    }
    let _second = s.lab.start_agent(&config)?;
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_eq!(d["detector"], "credential_stuffing", "{d}");
    eventually(
        Duration::from_secs(5),
        "the downtime's lines read once",
        || {
            let access = s.lines(&s.access_log, "ok")?;
            let events = s.lines(&s.events_log, "ok")?;
            Ok((access == 12.0 && events == 12.0).then_some(()))
        },
    )?;
    // logrotate without copytruncate: the log is removed, nginx reopens.
    std::fs::remove_file(&s.access_log)?;
    let pid = std::fs::read_to_string(s.dir.join("nginx.pid"))?
        .trim()
        .parse::<i32>()?;
    // SAFETY: signals the lab's own nginx master.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    eventually(Duration::from_secs(5), "nginx to recreate its log", || {
        Ok(s.access_log.exists().then_some(()))
    })?;
    for n in 1..=5 {
        assert_eq!(
            curl(&s.lab.shopper, &s.url(&format!("/product/{n}")), &[]),
            200
        );
    }
    eventually(Duration::from_secs(5), "the recreated log followed", || {
        Ok((s.lines(&s.access_log, "ok")? == 17.0).then_some(()))
    })?;
    Ok(())
}

/// The allowlist wins over application detections, and a detector in dry
/// run records an alert and drops nothing.
#[test]
fn the_allowlist_and_dry_run_hold_for_application_detections() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let trusted = s.lab.shopper.v4.to_string();
    let config = s.agent_config(&format!(
        "[storefront.scanner]\ndry_run = true\n\n[allowlist]\nentries = [\"{trusted}\"]\n"
    ))?;
    let _agent = s.lab.start_agent(&config)?;
    // The allowlisted host runs a tool's user agent: counted, never decided.
    assert_eq!(
        curl(&s.lab.shopper, &s.url("/"), &["-A", "sqlmap/1.7.2#stable"]),
        200
    );
    // The attacker probes for secrets: the scanner is in dry run.
    assert_eq!(curl(&s.lab.attacker, &s.url("/.git/config"), &[]), 404);
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_eq!(
        (d["detector"].as_str(), d["action"].as_str()),
        (Some("scanner"), Some("alert")),
        "{d}"
    );
    assert_eq!(
        curl(&s.lab.attacker, &s.url("/"), &[]),
        200,
        "nothing dropped"
    );
    eventually(
        Duration::from_secs(5),
        "the allowlisted host's line read",
        || Ok((s.lines(&s.access_log, "ok")? >= 3.0).then_some(())),
    )?;
    let decided: Vec<Value> = s.lab.decisions()?;
    assert!(
        !decided.iter().any(|d| d["target"] == trusted.as_str()),
        "{decided:?}"
    );
    Ok(())
}
