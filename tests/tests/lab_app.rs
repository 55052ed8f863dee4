//! Application-level detection in the lab: real attack tools and scripted
//! clients against the lab shop behind nginx; the agent reads nginx's logs
//! and the shop's events, decides, and the attacker's packets are dropped in
//! XDP while shoppers are served. Scenarios run one at a time: they time
//! what they measure.

use std::{sync::Mutex, time::Duration};

use anyhow::{Context as _, Result};
use ensuresec_tests::{
    lab::ShopperLoad,
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

/// A shopper browsing product pages all through a scenario.
fn shopper_load(s: &ShopLab) -> ShopperLoad {
    let pages = (1..=5).map(|n| s.url(&format!("/product/{n}"))).collect();
    ShopperLoad::browse(&s.lab.shopper.ns.name, None, pages)
}

/// At least 99 % of the shopper's requests were answered.
fn assert_served(load: ShopperLoad) {
    let (ok, total) = load.finish();
    assert!(
        total > 20 && ok * 100 >= total * 99,
        "shopper: {ok} of {total} served"
    );
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
        reached < 40,
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
    // Longer than gobuster can send before its first probe is judged.
    let list: String = [".git/config", ".env", "admin", "backup.zip", "old", "test"]
        .iter()
        .map(|w| w.to_string())
        .chain((0..2000).map(|n| format!("dir{n}")))
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
        (1..1000).contains(&reached),
        "{reached} of 2006 probes reached the shop"
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

/// Distributed stuffing: twenty hosts on twenty networks, each failing one
/// login every 10 s, none near its own threshold. The storefront sees the
/// wave (a storefront-wide alert), holds each host to less while it lasts,
/// and every host is cut off; the shopper is served throughout.
#[test]
fn distributed_stuffing_from_twenty_hosts_is_seen_and_each_host_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let hosts: Vec<_> = (0..20u8)
        .map(|h| {
            s.lab.add_host(
                &format!("bot{h}"),
                std::net::Ipv4Addr::new(10, 77, 100 + h, 5),
                format!("fd77::100:{h}").parse().unwrap(),
            )
        })
        .collect::<Result<_>>()?;
    let load = shopper_load(&s);
    let url = s.url("/login");
    let mut bots: Vec<std::process::Child> = hosts
        .iter()
        .enumerate()
        .map(|(h, host)| {
            // Eight guesses, 10 s apart, each for another account.
            let script = format!(
                "sleep 0.{h:02}; for i in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null --max-time 2 -A 'Mozilla/5.0' -d \"user=customer$i@lab.shop&pass=leak{h}x$i\" {url}; sleep 10; done"
            );
            host.ns.cmd("sh").args(["-c", &script]).spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let wave = eventually(Duration::from_secs(100), "every host cut off", || {
        let decisions = s.lab.decisions()?;
        let banned = hosts
            .iter()
            .filter(|h| {
                decisions
                    .iter()
                    .any(|d| d["target"] == h.v4.to_string() && d["action"] == "ban")
            })
            .count();
        let wide = decisions
            .iter()
            .find(|d| d["target"] == format!("storefront:{}", shop::STOREFRONT))
            .cloned();
        Ok((banned == hosts.len()).then_some(wide).flatten())
    })?;
    for bot in &mut bots {
        let _ = bot.kill();
        let _ = bot.wait();
    }
    assert_eq!(wave["action"], "alert", "{wave}");
    assert_eq!(wave["detector"], "credential_stuffing", "{wave}");
    assert!(
        wave["details"]
            .as_str()
            .unwrap_or("")
            .contains("20 clients"),
        "{wave}"
    );
    assert_served(load);
    let decisions = s.lab.decisions()?;
    assert!(
        !decisions
            .iter()
            .any(|d| d["target"] == s.lab.shopper.v4.to_string()),
        "{decisions:?}"
    );
    Ok(())
}

/// sqlmap and wapiti against a form, ffuf and dirb discovering content,
/// each from its own host: each is cut off (by its user agent, its probes or its burst of
/// errors), and the shopper is served.
#[test]
fn sqlmap_wapiti_ffuf_and_dirb_are_cut_off() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
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
    let tools: [(&str, Vec<String>); 4] = [
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
        let d = decision(&s, &host.v4.to_string());
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
    Ok(())
}

/// An HTTP flood with wrk from two hosts and a scraper crawling every
/// product fast are cut off; a flash sale (eight hosts buying at a human
/// pace at once) and a monitoring probe are not.
#[test]
fn floods_and_scrapers_are_cut_off_and_a_flash_sale_is_not() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let crowd: Vec<_> = (0..8u8)
        .map(|h| {
            s.lab.add_host(
                &format!("sale{h}"),
                std::net::Ipv4Addr::new(10, 77, 50, 10 + h),
                format!("fd77::50:{h}").parse().unwrap(),
            )
        })
        .collect::<Result<_>>()?;
    // The flash sale and the monitor: a page and its assets every second or
    // so, for the whole scenario (bounded loops).
    let sale = |host: &ensuresec_tests::lab::Host, rounds: u32| {
        let script = format!(
            "for i in $(seq {rounds}); do for p in / /product/$i /static/shop.css /cart; do curl -s -o /dev/null --max-time 2 -A 'Mozilla/5.0' {}$p; done; sleep 1; done",
            s.url("")
        );
        host.ns.cmd("sh").args(["-c", &script]).spawn()
    };
    let mut buyers: Vec<std::process::Child> = crowd
        .iter()
        .map(|h| sale(h, 20))
        .collect::<std::io::Result<_>>()?;
    let monitor_script = format!(
        "for i in $(seq 20); do curl -s -o /dev/null --max-time 2 -A 'Blackbox Exporter/0.24' {}; sleep 1; done",
        s.url("/")
    );
    let mut monitor = s
        .lab
        .shopper
        .ns
        .cmd("sh")
        .args(["-c", &monitor_script])
        .spawn()?;
    let flooder = s.lab.add_host(
        "flood2",
        std::net::Ipv4Addr::new(10, 77, 66, 7),
        "fd77::66:7".parse()?,
    )?;
    let scraper = s.lab.add_host(
        "scrape",
        std::net::Ipv4Addr::new(10, 77, 66, 8),
        "fd77::66:8".parse()?,
    )?;
    let wrk = |host: &ensuresec_tests::lab::Host| {
        host.ns
            .cmd("wrk")
            .args([
                "-t",
                "1",
                "-c",
                "8",
                "-d",
                "6s",
                "--timeout",
                "2s",
                &s.url("/"),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
    };
    let load = shopper_load(&s);
    let mut floods = [wrk(&s.lab.attacker)?, wrk(&flooder)?];
    let crawl = format!(
        "for round in 1 2 3 4 5 6 7 8; do for i in $(seq 50); do curl -s -o /dev/null --max-time 1 -A 'Mozilla/5.0' {}/product/$i; done; done",
        s.url("")
    );
    let mut crawler = scraper.ns.cmd("sh").args(["-c", &crawl]).spawn()?;
    for (who, host) in [
        ("wrk 1", &s.lab.attacker),
        ("wrk 2", &flooder),
        ("scraper", &scraper),
    ] {
        let d = decision(&s, &host.v4.to_string())?;
        assert_eq!(
            (d["detector"].as_str(), d["action"].as_str()),
            (Some("http_flood"), Some("ban")),
            "{who}: {d}"
        );
    }
    for child in floods.iter_mut().chain([&mut crawler]) {
        let _ = child.kill();
        let _ = child.wait();
    }
    for buyer in &mut buyers {
        buyer.wait()?;
    }
    assert_served(load);
    monitor.wait()?;
    // The crowd's and the monitor's requests all reached the agent...
    let crowd_lines: usize = crowd
        .iter()
        .map(|h| logged_from(&s.access_log, &h.v4.to_string()))
        .sum();
    assert!(crowd_lines >= 8 * 20 * 4 * 9 / 10, "{crowd_lines}");
    eventually(
        Duration::from_secs(5),
        "the agent to read the crowd's lines",
        || Ok((s.lines(&s.access_log, "ok")? >= crowd_lines as f64).then_some(())),
    )?;
    // ...and none of them was decided on.
    let decided: Vec<String> = s
        .lab
        .decisions()?
        .iter()
        .map(|d| d["target"].as_str().unwrap_or("").to_string())
        .collect();
    for h in crowd.iter().chain([&s.lab.shopper]) {
        assert!(
            !decided.contains(&h.v4.to_string()),
            "{} was decided on: {decided:?}",
            h.v4
        );
    }
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
