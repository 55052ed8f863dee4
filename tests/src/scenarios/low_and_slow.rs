//! Floods and scans too slow for any window, caught over a source's
//! horizon: a service scan of one port, SYNs that never complete, a paced
//! port scan.

use std::time::Duration;

use super::catalogue::{Attack, Scenario, TARGET, args, base, hping, n, secs};

/// `slow_syn` alerts by default; this host's operator bans.
const SLOW_SYN_BAN: &str = "[[protect]]\nprefix = \"10.77.0.0/16\"\n[protect.slow_syn]\naction = \"ban\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

pub(super) fn scenarios(fast: bool) -> Vec<Scenario> {
    vec![
        Scenario {
            // nmap's first probe sends nothing and waits six seconds for a
            // banner; the protocols it then tries come within a second.
            detect_within: Duration::from_secs(9),
            duration: secs(fast, 20),
            ..base(
                fast,
                "service-scan",
                "nmap -sV on one port, the storefront's PROXY-protocol port, which hangs up on anything else: one protocol after another",
                Some(Attack {
                    tool: "nmap",
                    args: args(&["-sV", "-n", "-Pn", "-p", "7001", TARGET]),
                    detector: "service_scan",
                    decision_on: None,
                }),
            )
        },
        Scenario {
            config: SLOW_SYN_BAN,
            ..base(
                fast,
                "slow-syn",
                "hping3 SYNs at 25 a second from one source to a port nobody serves, never completed: an eighth of the window's threshold, a flood over the horizon",
                hping(
                    "slow_syn",
                    &["-S", "-p", "9069", "-i", "u40000", "-c", &n(fast, 500)],
                ),
            )
        },
        base(
            fast,
            "slow-scan",
            "nmap SYN scan of 100 ports at 8 probes a second: below the window's scan threshold, a scan over the horizon",
            Some(Attack {
                tool: "nmap",
                args: args(&[
                    "-sS",
                    "-n",
                    "-Pn",
                    "-p",
                    "1-100",
                    "--max-retries",
                    "0",
                    "--max-rate",
                    "8",
                    TARGET,
                ]),
                detector: "slow_scan",
                decision_on: None,
            }),
        ),
    ]
}
