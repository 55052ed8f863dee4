//! The application scenarios `bench app` plays against the lab shop, each
//! once per system under test: who attacks, and who must stay served.

use std::{net::Ipv4Addr, path::Path};

use anyhow::Result;

use crate::{attacks, lab::Host, shop::ShopLab};

/// Every scenario, cheapest first.
pub const ALL: &[&str] = &[
    "stuffing",
    "hydra",
    "content_discovery",
    "basic_auth_guessing",
    "account_takeover",
    "card_testing",
    "sqlmap",
    "http_flood",
    "scraper",
    "card_testing_many",
    "distributed_stuffing",
    "flash_sale",
];

/// Scenarios slow enough to run once per system.
pub fn runs(scenario: &str, runs: usize) -> usize {
    match scenario {
        "flash_sale" | "distributed_stuffing" | "card_testing_many" => 1,
        _ => runs,
    }
}

/// Whether the lab's attacker host is the attacker (probed for its cut-off).
pub fn by_the_attacker(scenario: &str) -> bool {
    !matches!(
        scenario,
        "flash_sale" | "distributed_stuffing" | "card_testing_many"
    )
}

/// Who attacked in a scenario.
pub enum Attackers {
    /// The lab's attacker host alone.
    TheAttacker,
    /// Hosts of their own (each must be cut off).
    Many(Vec<Host>),
    /// Nobody: only benign clients.
    None,
}

pub struct Played {
    pub attackers: Attackers,
    /// Clients that must never be decided on.
    pub benign: Vec<Host>,
}

/// `n` hosts of their own, the `h`-th at `v4(h)`.
pub fn hosts(shop: &ShopLab, tag: &str, n: u8, v4: impl Fn(u8) -> Ipv4Addr) -> Result<Vec<Host>> {
    (0..n)
        .map(|h| {
            let a = v4(h).octets();
            let v6 = format!("fd77::{:x}:{:x}", a[2], a[3]).parse()?;
            shop.lab.add_host(&format!("{tag}{h}"), v4(h), v6)
        })
        .collect()
}

/// Waits for every one of `children`.
fn wait_all(children: Vec<std::process::Child>) -> Result<()> {
    for mut c in children {
        c.wait()?;
    }
    Ok(())
}

/// Runs `scenario` to its end.
pub fn play(shop: &ShopLab, scenario: &str) -> Result<Played> {
    let lab = &shop.lab;
    let attacker = &lab.attacker;
    let one = || Played {
        attackers: Attackers::TheAttacker,
        benign: Vec::new(),
    };
    match scenario {
        "stuffing" => attacks::stuffing(attacker, &shop.url("/login"), 60, 0.05).map(|_| one()),
        "basic_auth_guessing" => {
            attacks::basic_auth_guessing(shop, attacker, 40, 0.05).map(|_| one())
        }
        "card_testing" => attacks::card_testing(shop, attacker, 40, 0.05).map(|_| one()),
        "account_takeover" => attacks::account_takeover(shop, attacker).map(|_| one()),
        "hydra" => attacks::hydra(shop, attacker, 60, 2).map(|_| one()),
        // dirb's own common word list (Debian package dirb), as a real
        // discovery run would use.
        "content_discovery" => attacks::gobuster(
            shop,
            attacker,
            Path::new("/usr/share/dirb/wordlists/common.txt"),
            "1s",
        )
        .map(|_| one()),
        "sqlmap" => attacks::sqlmap(shop, attacker).map(|_| one()),
        "http_flood" => wait_all(vec![attacks::wrk(shop, attacker, 6)?]).map(|_| one()),
        "scraper" => wait_all(vec![attacks::crawl(shop, attacker, 8)?]).map(|_| one()),
        "card_testing_many" => {
            let many = hosts(shop, "card", 12, |h| Ipv4Addr::new(10, 77, 90, 10 + h))?;
            for host in &many {
                attacks::card_testing(shop, host, 2, 0.0)?;
            }
            Ok(Played {
                attackers: Attackers::Many(many),
                benign: Vec::new(),
            })
        }
        "distributed_stuffing" => {
            let many = hosts(shop, "bot", 20, |h| Ipv4Addr::new(10, 77, 100 + h, 5))?;
            wait_all(attacks::distributed_stuffing(shop, &many, 8)?)?;
            Ok(Played {
                attackers: Attackers::Many(many),
                benign: Vec::new(),
            })
        }
        "flash_sale" => {
            let crowd = hosts(shop, "sale", 8, |h| Ipv4Addr::new(10, 77, 50, 10 + h))?;
            wait_all(attacks::flash_sale(shop, &crowd, 15)?)?;
            Ok(Played {
                attackers: Attackers::None,
                benign: crowd,
            })
        }
        other => anyhow::bail!("no scenario {other}"),
    }
}
