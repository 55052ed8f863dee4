use std::net::IpAddr;

use super::*;
use crate::app::client::ClientRules;

fn detector(max_clients: usize) -> AppDetector {
    let rules = ClientRules::default();
    AppDetector::new(
        vec![Storefront::new("shop".into(), AppDetectors::default())],
        move |a| rules.group(a),
        max_clients,
    )
}

fn client(text: &str) -> Client {
    Client {
        addr: text.parse().unwrap(),
        via_proxy: false,
    }
}

fn page(path: &str, status: u16) -> Observation<'_> {
    Observation::Request {
        target: path,
        status,
        user_agent: "Mozilla/5.0",
        asset: signatures::is_asset(path),
        hits: Hits::default(),
        login_failed: false,
    }
}

fn at<'a>(who: &str, now: f64, what: Observation<'a>) -> Seen<'a> {
    Seen {
        storefront: 0,
        client: client(who),
        now,
        what,
    }
}

fn account(n: u8) -> Option<Pseudonym> {
    Some(Pseudonym([n; 16]))
}

/// Feeds `events` and returns the detectors that fired, in order.
fn run(d: &mut AppDetector, events: Vec<Seen<'_>>) -> Vec<Detector> {
    events
        .iter()
        .flat_map(|s| d.observe(s))
        .map(|f| f.detector)
        .collect()
}

#[test]
fn stuffing_trips_on_failures_or_on_accounts_and_a_shopper_does_not() {
    let mut d = detector(1000);
    let shopper: Vec<_> = (0..3)
        .map(|i| {
            at(
                "192.0.2.1",
                i as f64,
                Observation::LoginFailed {
                    account: account(1),
                },
            )
        })
        .collect();
    assert!(run(&mut d, shopper).is_empty());
    let spray: Vec<_> = (0..4)
        .map(|i| {
            at(
                "192.0.2.2",
                i as f64,
                Observation::LoginFailed {
                    account: account(i),
                },
            )
        })
        .collect();
    assert_eq!(
        run(&mut d, spray),
        [Detector::CredentialStuffing],
        "4 accounts"
    );
    let guessing: Vec<_> = (0..12)
        .map(|i| {
            at(
                "192.0.2.3",
                i as f64,
                Observation::LoginFailed { account: None },
            )
        })
        .collect();
    assert_eq!(
        run(&mut d, guessing),
        [Detector::CredentialStuffing],
        "once a window"
    );
}

#[test]
fn a_login_after_failures_on_other_accounts_is_a_takeover_of_that_account() {
    let mut d = detector(1000);
    let mut events: Vec<_> = (1..=3)
        .map(|i| {
            at(
                "198.51.100.9",
                i as f64,
                Observation::LoginFailed {
                    account: account(i),
                },
            )
        })
        .collect();
    events.push(at(
        "198.51.100.9",
        5.0,
        Observation::LoginOk {
            account: account(7),
        },
    ));
    let found: Vec<AppFinding> = events.iter().flat_map(|s| d.observe(s)).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].detector, Detector::AccountTakeover);
    assert_eq!(found[0].accounts, vec![Pseudonym([7; 16])]);
    assert!(
        found[0].evidence.contains("3 other accounts"),
        "{}",
        found[0].evidence
    );
    // A shopper who mistyped their own password, then logged in: nothing.
    let own = vec![
        at(
            "198.51.100.10",
            1.0,
            Observation::LoginFailed {
                account: account(3),
            },
        ),
        at(
            "198.51.100.10",
            2.0,
            Observation::LoginOk {
                account: account(3),
            },
        ),
    ];
    assert!(run(&mut d, own).is_empty());
}

#[test]
fn card_testing_trips_on_declines_cards_or_small_amounts() {
    let mut d = detector(1000);
    let pay = |who: &'static str, t: f64, declined: bool, card: u8, amount: f64| {
        at(
            who,
            t,
            Observation::Payment {
                declined,
                card: account(card),
                amount: Some(amount),
            },
        )
    };
    // Two cards declined, the third works: a shopper, not a tester.
    let shopper = vec![
        pay("192.0.2.1", 0.0, true, 1, 80.0),
        pay("192.0.2.1", 5.0, true, 2, 80.0),
        pay("192.0.2.1", 9.0, false, 3, 80.0),
    ];
    assert!(run(&mut d, shopper).is_empty());
    let cards: Vec<_> = (0..3)
        .map(|i| pay("192.0.2.2", i as f64, true, i, 50.0))
        .collect();
    assert_eq!(run(&mut d, cards), [Detector::CardTesting], "three cards");
    let small: Vec<_> = (0..5)
        .map(|i| pay("192.0.2.3", i as f64, false, 9, 1.0))
        .collect();
    assert_eq!(
        run(&mut d, small),
        [Detector::CardTesting],
        "five one-euro charges"
    );
}

#[test]
fn scanners_trip_on_a_sure_signature_on_errors_or_on_several_weak_signatures() {
    let mut d = detector(1000);
    let sigs = std::cell::RefCell::new(signatures::Signatures::new(&[], &[]));
    let probe = |path: &'static str, status: u16| Observation::Request {
        target: path,
        status,
        user_agent: "Mozilla/5.0",
        asset: false,
        hits: sigs.borrow_mut().check(path, "Mozilla/5.0"),
        login_failed: false,
    };
    let sure = d.observe(&at("203.0.113.1", 0.0, probe("/.git/config", 404)));
    assert_eq!(sure.len(), 1);
    assert!(
        sure[0].evidence.contains("git-repo"),
        "{}",
        sure[0].evidence
    );
    assert!(
        sure[0].evidence.contains("/.git/config"),
        "{}",
        sure[0].evidence
    );
    let errors: Vec<_> = (0..40)
        .map(|i| at("203.0.113.2", i as f64 / 10.0, page("/nope", 404)))
        .collect();
    assert_eq!(run(&mut d, errors), [Detector::Scanner]);
    let weak: Vec<_> = ["/db.sql", "/backup.zip", "/phpmyadmin/"]
        .into_iter()
        .enumerate()
        .map(|(i, p)| at("203.0.113.3", i as f64, probe(p, 404)))
        .collect();
    assert_eq!(run(&mut d, weak), [Detector::Scanner]);
    let shopper: Vec<_> = (0..20)
        .map(|i| at("203.0.113.4", i as f64, page("/gone", 404)))
        .collect();
    assert!(run(&mut d, shopper).is_empty());
    // A probe the shop answered: named as a possible exposure.
    let exposed = d.observe(&at("203.0.113.5", 0.0, probe("/.env", 200)));
    assert!(
        exposed[0]
            .evidence
            .contains("answered 2xx (possible exposure) /.env"),
        "{}",
        exposed[0].evidence
    );
    assert!(
        !sure[0].evidence.contains("answered 2xx"),
        "a 404 exposes nothing"
    );
}

#[test]
fn attack_tools_trip_at_once_and_libraries_do_not() {
    let mut d = detector(1000);
    let sigs = std::cell::RefCell::new(signatures::Signatures::new(&[], &[]));
    let with = |agent: &'static str| Observation::Request {
        target: "/",
        status: 200,
        user_agent: agent,
        asset: false,
        hits: sigs.borrow_mut().check("/", agent),
        login_failed: false,
    };
    assert_eq!(
        run(&mut d, vec![at("192.0.2.5", 0.0, with("sqlmap/1.7"))]),
        [Detector::AttackTool]
    );
    assert!(run(&mut d, vec![at("192.0.2.6", 0.0, with("curl/8.0"))]).is_empty());
}

#[test]
fn floods_trip_on_pages_and_assets_count_a_tenth() {
    let mut d = detector(1000);
    // A shopper's busy ten seconds: 100 pages and 1,000 assets.
    let mut shopper: Vec<_> = (0..100)
        .map(|i| at("192.0.2.7", i as f64 / 10.0, page("/p", 200)))
        .collect();
    shopper.extend((0..1000).map(|i| at("192.0.2.7", i as f64 / 100.0, page("/a.css", 200))));
    assert!(run(&mut d, shopper).is_empty());
    let flood: Vec<_> = (0..400)
        .map(|i| at("192.0.2.8", i as f64 / 40.0, page("/", 200)))
        .collect();
    assert_eq!(run(&mut d, flood), [Detector::HttpFlood]);
}

#[test]
fn an_ipv6_network_counts_as_one_client() {
    let mut d = detector(1000);
    let spray: Vec<Seen<'_>> = (0..4u8)
        .map(|i| Seen {
            storefront: 0,
            client: Client {
                addr: IpAddr::from([0x20, 1, 0xd, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, i + 1]),
                via_proxy: false,
            },
            now: i as f64,
            what: Observation::LoginFailed {
                account: account(i),
            },
        })
        .collect();
    let found: Vec<AppFinding> = spray.iter().flat_map(|s| d.observe(s)).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].target,
        AppTarget::Client("2001:db8:0:1::/64".parse::<IpNet>().unwrap())
    );
}

#[test]
fn memory_stays_bounded_and_keeps_the_clients_that_tripped() {
    let mut d = detector(100);
    run(
        &mut d,
        vec![
            at(
                "198.51.100.1",
                0.0,
                Observation::LoginFailed { account: None }
            );
            10
        ],
    );
    for i in 0..10_000u32 {
        let addr = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        d.observe(&Seen {
            storefront: 0,
            client: Client {
                addr,
                via_proxy: false,
            },
            now: 1.0,
            what: page("/", 200),
        });
        assert!(d.clients() <= 100);
    }
    assert!(d.shed > 9_000, "{}", d.shed);
    let again = run(
        &mut d,
        vec![at(
            "198.51.100.1",
            2.0,
            Observation::LoginFailed { account: None },
        )],
    );
    assert!(
        again.is_empty(),
        "still remembered as having fired: not asked twice"
    );
    d.forget_idle(10_000.0);
    assert_eq!(d.clients(), 0);
}

/// Twenty hosts from twenty networks, each failing a login every 10 s: no
/// one host reaches its threshold soon, but the storefront sees the wave,
/// alerts, and holds each host to less while it lasts.
#[test]
fn a_wave_of_failed_logins_alerts_the_storefront_and_tightens_each_client() {
    let mut d = detector(1000);
    let mut found = Vec::new();
    for round in 0..6u32 {
        for h in 0..20u32 {
            let addr = IpAddr::from((0xc600_0000u32 + (h << 12) + 1).to_be_bytes());
            let seen = Seen {
                storefront: 0,
                client: Client {
                    addr,
                    via_proxy: false,
                },
                now: round as f64 * 10.0 + h as f64 * 0.2,
                what: Observation::LoginFailed {
                    account: account(round as u8),
                },
            };
            found.extend(d.observe(&seen));
        }
    }
    let wide: Vec<&AppFinding> = found
        .iter()
        .filter(|f| f.target == AppTarget::Storefront)
        .collect();
    assert_eq!(wide.len(), 1, "one alert for the wave");
    assert_eq!(
        wide[0].config.action,
        crate::detect::detector::Action::Alert
    );
    assert!(
        wide[0].evidence.contains("20 clients"),
        "{}",
        wide[0].evidence
    );
    let banned: std::collections::BTreeSet<String> = found
        .iter()
        .filter_map(|f| match f.target {
            AppTarget::Client(net) => Some(net.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        banned.len(),
        20,
        "each host, at its third failure: {banned:?}"
    );
    assert!(
        !found
            .iter()
            .any(|f| matches!(f.target, AppTarget::Network(_))),
        "no shared network"
    );
}

/// A wave whose clients sit in one /24 is decided on that network.
#[test]
fn a_wave_from_one_network_is_decided_on_the_network() {
    let mut d = detector(1000);
    let found: Vec<AppFinding> = (0..60u32)
        .flat_map(|i| {
            let addr = IpAddr::from((0xcb00_7100u32 + 1 + i % 25).to_be_bytes());
            d.observe(&Seen {
                storefront: 0,
                client: Client {
                    addr,
                    via_proxy: false,
                },
                now: i as f64,
                what: Observation::Payment {
                    declined: true,
                    card: account(i as u8),
                    amount: Some(40.0),
                },
            })
        })
        .collect();
    let nets: Vec<AppTarget> = found
        .iter()
        .filter(|f| matches!(f.target, AppTarget::Network(_)))
        .map(|f| f.target)
        .collect();
    assert_eq!(
        nets,
        [AppTarget::Network("203.0.113.0/24".parse().unwrap())]
    );
}

/// What shoppers do that looks like probing at first sight: the same page
/// with a weak signature in its path three times, a page whose scripts live
/// under a folder a signature names, forty missing product images, two of
/// their own addresses tried before the right one.
#[test]
fn ordinary_browsing_that_looks_like_probing_is_not() {
    let mut d = detector(1000);
    let sigs = std::cell::RefCell::new(signatures::Signatures::new(&[], &[]));
    let req = |path: &'static str, status: u16| Observation::Request {
        target: path,
        status,
        user_agent: "Mozilla/5.0",
        asset: signatures::is_asset(path),
        hits: sigs.borrow_mut().check(path, "Mozilla/5.0"),
        login_failed: false,
    };
    let mut seen: Vec<Seen<'_>> = (0..3)
        .map(|i| at("192.0.2.20", i as f64, req("/backup-plans", 200)))
        .collect();
    seen.extend((0..3).map(|i| at("192.0.2.21", i as f64, req("/cgi-bin/shop.js", 200))));
    seen.extend((0..40).map(|i| at("192.0.2.22", i as f64 / 10.0, req("/img/missing.png", 404))));
    for n in 1..=2 {
        seen.push(at(
            "192.0.2.23",
            n as f64,
            Observation::LoginFailed {
                account: account(n),
            },
        ));
    }
    seen.push(at(
        "192.0.2.23",
        3.0,
        Observation::LoginOk {
            account: account(3),
        },
    ));
    assert!(run(&mut d, seen).is_empty());
}

/// One IPv6 host rotating through its /64 is one client to a wave too.
#[test]
fn a_host_rotating_within_its_network_is_no_wave() {
    let mut d = detector(1000);
    let found: Vec<AppFinding> = (0..60u8)
        .flat_map(|i| {
            let addr = IpAddr::from([0x20, 1, 0xd, 0xb8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, i + 1]);
            d.observe(&Seen {
                storefront: 0,
                client: Client {
                    addr,
                    via_proxy: false,
                },
                now: i as f64,
                what: Observation::LoginFailed { account: None },
            })
        })
        .collect();
    assert!(
        found.iter().all(|f| f.target != AppTarget::Storefront),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.detector == Detector::CredentialStuffing),
        "the /64 itself trips"
    );
}
