//! Application-level detection against many clients at once: distributed
//! stuffing from twenty hosts, card testing from a dozen, floods and a
//! scraper beside a flash sale and a monitor, shoppers and a stuffer behind
//! a real reverse proxy. Scenarios run one at a time: they time what they
//! measure.

use std::{net::Ipv4Addr, sync::Mutex, time::Duration};

use anyhow::Result;
use ensuresec_tests::{
    app_scenarios, attacks,
    lab::{KillOnDrop, ShopperLoad},
    shop::{
        self, ReverseProxy, ShopLab, assert_served, curl, decided_on, decision, logged_from,
        shopper_load,
    },
    wait::eventually,
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn shop_lab() -> Result<ShopLab> {
    ShopLab::new(env!("CARGO_BIN_EXE_lab-shop"))
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
    let hosts = app_scenarios::hosts(&s, "bot", 20, |h| Ipv4Addr::new(10, 77, 100 + h, 5))?;
    let load = shopper_load(&s);
    let bots = KillOnDrop(attacks::distributed_stuffing(&s, &hosts, 8)?);
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
    drop(bots);
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

/// An HTTP flood with wrk and ab from two hosts and a scraper crawling every
/// product fast are cut off; a flash sale (eight hosts buying at a human
/// pace at once) and a monitoring probe are not.
#[test]
fn floods_and_scrapers_are_cut_off_and_a_flash_sale_is_not() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let crowd = app_scenarios::hosts(&s, "sale", 8, |h| Ipv4Addr::new(10, 77, 50, 10 + h))?;
    // The flash sale and the monitor: a page and its assets every second or
    // so, for the whole scenario (bounded loops).
    let sale = |host: &ensuresec_tests::lab::Host, rounds: u32| {
        let script = format!(
            "for i in $(seq {rounds}); do for p in / /product/$i /static/shop.css /cart; do curl -s -o /dev/null --max-time 2 -A 'Mozilla/5.0' {}$p; done; sleep 1; done",
            s.url("")
        );
        host.ns.cmd("sh").args(["-c", &script]).spawn()
    };
    let buyers = KillOnDrop(
        crowd
            .iter()
            .map(|h| sale(h, 20))
            .collect::<std::io::Result<_>>()?,
    );
    let monitor_script = format!(
        "for i in $(seq 20); do curl -s -o /dev/null --max-time 2 -A 'Blackbox Exporter/0.24' {}; sleep 1; done",
        s.url("/")
    );
    let monitor = KillOnDrop(vec![
        s.lab
            .shopper
            .ns
            .cmd("sh")
            .args(["-c", &monitor_script])
            .spawn()?,
    ]);
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
    let load = shopper_load(&s);
    // ApacheBench from the second host, going on through errors (-r).
    let ab = flooder
        .ns
        .cmd("ab")
        .args(["-r", "-q", "-c", "8", "-t", "6", "-s", "2", &s.url("/")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let attackers = KillOnDrop(vec![
        attacks::wrk(&s, &s.lab.attacker, 6)?,
        ab,
        attacks::crawl(&s, &scraper, 8)?,
    ]);
    for (who, host) in [
        ("wrk", &s.lab.attacker),
        ("ab", &flooder),
        ("scraper", &scraper),
    ] {
        let d = decision(&s, &host.v4.to_string())?;
        assert_eq!(
            (d["detector"].as_str(), d["action"].as_str()),
            (Some("http_flood"), Some("ban")),
            "{who}: {d}"
        );
    }
    drop(attackers);
    buyers.wait()?;
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
    let decided = s.lab.decisions()?;
    for h in crowd.iter().chain([&s.lab.shopper]) {
        assert!(
            !decided_on(&decided, h.v4),
            "{} was decided on: {decided:?}",
            h.v4
        );
    }
    Ok(())
}

/// Card testing from twelve hosts of one network, two declined cards each:
/// no host comes near its own thresholds, the storefront sees a wave of
/// declines (a storefront-wide alert), and the network the hosts share is
/// banned, every one of them cut off; the shopper is served.
#[test]
fn card_testing_from_many_hosts_of_one_network_is_cut_off_as_a_network() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let _agent = s.lab.start_agent(&s.agent_config("")?)?;
    let hosts = app_scenarios::hosts(&s, "card", 12, |h| Ipv4Addr::new(10, 77, 90, 10 + h))?;
    let load = shopper_load(&s);
    let mut declined = 0;
    for (h, host) in hosts.iter().enumerate() {
        for n in 0..2 {
            let card = format!("4000{h:02}{n}000000001");
            match curl(
                host,
                &s.url("/checkout"),
                &["-d", &format!("card={card}&amount=1.00")],
            ) {
                402 => declined += 1,
                0 => break,
                other => panic!("checkout answered {other}"),
            }
        }
    }
    assert!(declined >= 20, "{declined} declines reached the shop");
    let net = decision(&s, "10.77.90.0/24")?;
    assert_eq!(
        (net["detector"].as_str(), net["action"].as_str()),
        (Some("card_testing"), Some("ban")),
        "{net}"
    );
    let wave = decision(&s, &format!("storefront:{}", shop::STOREFRONT))?;
    assert_eq!(wave["action"], "alert", "{wave}");
    for host in &hosts {
        assert_eq!(curl(host, &s.url("/"), &[]), 0, "{} is cut off", host.v4);
    }
    assert_served(load);
    let decided = s.lab.decisions()?;
    assert!(!decided_on(&decided, s.lab.shopper.v4), "{decided:?}");
    Ok(())
}

/// Shoppers and a stuffer behind a real reverse proxy (nginx on its own
/// host, in `trusted_proxies`): the stuffer's decision names its own
/// address and is an alert (XDP sees only the proxy's packets), the proxy
/// is never decided on, and the shoppers behind it are served throughout.
#[test]
fn shoppers_behind_a_real_reverse_proxy_are_served_and_the_proxy_kept() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = shop_lab()?;
    let edge = s.lab.add_host(
        "edge",
        std::net::Ipv4Addr::new(10, 77, 80, 2),
        "fd77::80:2".parse()?,
    )?;
    let config = s.agent_config_with(&format!("trusted_proxies = [\"{}\"]\n", edge.v4), "")?;
    let _agent = s.lab.start_agent(&config)?;
    let proxy = ReverseProxy::start(&s, &edge)?;
    let via = |path: &str| format!("http://{}:{}{path}", edge.v4, proxy.port);
    let pages = (1..=5).map(|n| via(&format!("/product/{n}"))).collect();
    let load = ShopperLoad::browse(&s.lab.shopper.ns.name, None, pages);
    attacks::stuffing(&s.lab.attacker, &via("/login"), 15, 0.05)?;
    let d = decision(&s, &s.lab.attacker.v4.to_string())?;
    assert_eq!(
        (d["detector"].as_str(), d["action"].as_str()),
        (Some("credential_stuffing"), Some("alert")),
        "{d}"
    );
    assert!(
        d["details"]
            .as_str()
            .unwrap_or_default()
            .contains("trusted proxy"),
        "{d}"
    );
    // The shop sees the shopper through the proxy, named in X-Forwarded-For.
    let relayed = || -> Result<usize> {
        let log = std::fs::read_to_string(&s.access_log)?;
        let (edge, shopper) = (
            format!(" {} ", edge.v4),
            format!("\"{}\"", s.lab.shopper.v4),
        );
        Ok(log
            .lines()
            .filter(|l| l.contains(&edge) && l.ends_with(&shopper))
            .count())
    };
    eventually(
        Duration::from_secs(20),
        "the shopper's requests through the proxy",
        || Ok((relayed()? > 30).then_some(())),
    )?;
    assert_served(load);
    let decided = s.lab.decisions()?;
    for kept in [edge.v4, s.lab.shopper.v4] {
        assert!(
            !decided_on(&decided, kept),
            "{kept} was decided on: {decided:?}"
        );
    }
    Ok(())
}
