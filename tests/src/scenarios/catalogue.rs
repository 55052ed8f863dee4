//! The lab's scenarios: what each attacker runs (real tools, real
//! arguments), what catches it, and what the agent is configured with.

use std::time::Duration;

use anyhow::{Context as _, Result};

/// Where an attack tool aims: `{target}` in its arguments.
pub(super) const TARGET: &str = "{target}";
/// The storefront interface's MAC address, for tools with their own stack.
pub(super) const TARGET_MAC: &str = "{target_mac}";

/// One tool run from the attacker host.
#[derive(Clone, Debug)]
pub struct Attack {
    pub tool: &'static str,
    pub args: Vec<String>,
    /// The detector expected to catch it.
    pub detector: &'static str,
    /// Expected decision target: the attacker, or the storefront's port for
    /// aggregate measures (`{target}:80/tcp`).
    pub decision_on: Option<&'static str>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub shoppers: usize,
    pub attack: Option<Attack>,
    /// Load tools from extra shopper addresses (a flash crowd), with args.
    pub crowd: Vec<Vec<String>>,
    /// Extra storefront addresses (a hosting server with many shops).
    pub storefront_addresses: usize,
    pub duration: Duration,
    /// How soon after the attack starts its detection must come.
    pub detect_within: Duration,
    pub config: &'static str,
}

pub(super) fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub(super) fn hping(detector: &'static str, a: &[&str]) -> Option<Attack> {
    let mut v = args(a);
    v.push("-q".into());
    v.push(TARGET.into());
    Some(Attack {
        tool: "hping3",
        args: v,
        detector,
        decision_on: None,
    })
}

const MANY_SOURCES: &str = "[[protect]]\nprefix = \"10.77.0.0/16\"\n[protect.syn_flood]\naggregate = 100000\n[[protect]]\nprefix = \"fd77::/64\"\n";

const PROTECT: &str =
    "[[protect]]\nprefix = \"10.77.0.0/16\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

const SLOWLORIS: &str = "[[protect]]\nprefix = \"10.77.0.0/16\"\n[protect.half_open]\naction = \"ban\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

/// A scenario's length: halved (at least 4 s) when `fast`.
pub(super) fn secs(fast: bool, full: u64) -> Duration {
    Duration::from_secs(if fast { (full / 2).max(4) } else { full })
}

/// A tool's packet count: halved when `fast`.
pub(super) fn n(fast: bool, full: u32) -> String {
    (if fast { full / 2 } else { full }).to_string()
}

/// Three shoppers, ten seconds, the storefront protected with defaults.
pub(super) fn base(
    fast: bool,
    name: &'static str,
    about: &'static str,
    attack: Option<Attack>,
) -> Scenario {
    Scenario {
        name,
        about,
        shoppers: 3,
        attack,
        crowd: Vec::new(),
        storefront_addresses: 0,
        duration: secs(fast, 10),
        detect_within: Duration::from_secs(6),
        config: PROTECT,
    }
}

/// Every scenario. `fast` shortens them for tests; full ones are for the lab
/// and the benchmark.
pub fn all(fast: bool) -> Vec<Scenario> {
    let n = |full: u32| n(fast, full);
    let base = |name, about, attack| base(fast, name, about, attack);
    let mut all = vec![
        base(
            "browsing",
            "three shoppers browsing product pages, cart and checkout",
            None,
        ),
        Scenario {
            crowd: (0..6)
                .map(|_| args(&["-t", "1", "-c", "40", "-d", if fast { "4s" } else { "8s" }]))
                .collect(),
            ..base(
                "flash-crowd",
                "many new shoppers at once: six addresses with 40 connections each at full speed",
                None,
            )
        },
        base(
            "syn-flood",
            "hping3 SYN flood from one source",
            hping(
                "syn_flood",
                &["-S", "-p", "80", "-i", "u100", "-c", &n(40_000)],
            ),
        ),
        base(
            "udp-flood",
            "hping3 UDP flood from one source",
            hping(
                "udp_flood",
                &["--udp", "-p", "9999", "-i", "u10", "-c", &n(80_000)],
            ),
        ),
        base(
            "icmp-flood",
            "hping3 ICMP echo flood",
            hping("icmp_flood", &["--icmp", "-i", "u1000", "-c", &n(8_000)]),
        ),
        base(
            "ack-flood",
            "hping3 bare ACK flood at port 80, as fast as it sends, for 4 s (2 s in the short run)",
            // hping3's shortest interval (`-i u10`) sends about 10,000 a
            // second here, the threshold itself: --flood is well above it,
            // and `timeout` bounds it (--flood ignores -c).
            Some(Attack {
                tool: "timeout",
                args: args(&[
                    if fast { "2" } else { "4" },
                    "hping3",
                    "-A",
                    "-p",
                    "80",
                    "--flood",
                    "-q",
                    TARGET,
                ]),
                detector: "ack_rst_flood",
                decision_on: None,
            }),
        ),
        base(
            "fragment-flood",
            "hping3 UDP split into 16-byte fragments",
            hping(
                "fragment_flood",
                &[
                    "--udp",
                    "-p",
                    "9999",
                    "-d",
                    "120",
                    "-f",
                    "-i",
                    "u1000",
                    "-c",
                    &n(8_000),
                ],
            ),
        ),
        base(
            "port-scan",
            "nmap SYN scan of ports 1-5000 at up to 2,000 probes/s",
            Some(Attack {
                tool: "nmap",
                // Paced so that the scan outlasts its detection: unpaced, a
                // 1,000-port scan on a veth can end before the decision
                // reaches the kernel, leaving nothing to drop.
                args: args(&[
                    "-sS",
                    "-n",
                    "-Pn",
                    "-p",
                    "1-5000",
                    "--max-retries",
                    "0",
                    "--max-rate",
                    "2000",
                    "-T4",
                    TARGET,
                ]),
                detector: "port_scan",
                decision_on: None,
            }),
        ),
        base(
            "masscan",
            "masscan of ports 1-2000 at 2,000 packets/s",
            Some(Attack {
                tool: "masscan",
                // masscan has its own stack: it needs the interface and the
                // storefront's MAC (it sends every frame to the "router").
                args: args(&[
                    "-p1-2000",
                    "--rate",
                    "2000",
                    "--wait",
                    "0",
                    "--interface",
                    "eth0",
                    "--router-mac",
                    TARGET_MAC,
                    TARGET,
                ]),
                detector: "port_scan",
                decision_on: None,
            }),
        ),
        Scenario {
            storefront_addresses: 12,
            ..base(
                "host-sweep",
                "nmap ping sweep over a hosting server's storefront addresses",
                Some(Attack {
                    tool: "nmap",
                    // nmap's own host discovery (ICMP echo and timestamp,
                    // SYN to 443, ACK to 80), at a pace that lets the
                    // decision land while the sweep still runs.
                    args: args(&["-sn", "-n", "--send-ip", "--max-rate", "50", "10.77.0.1-13"]),
                    detector: "host_sweep",
                    decision_on: None,
                }),
            )
        },
        Scenario {
            // half_open alerts by default; this host's operator bans.
            config: SLOWLORIS,
            ..base(
                "slowloris",
                "slowhttptest holding 300 connections with slow headers",
                Some(Attack {
                    tool: "slowhttptest",
                    args: args(&[
                        "-H",
                        "-c",
                        "300",
                        "-r",
                        "60",
                        "-i",
                        "5",
                        "-l",
                        if fast { "6" } else { "12" },
                        "-x",
                        "24",
                        "-p",
                        "3",
                        "-u",
                        "http://{target}/",
                    ]),
                    detector: "half_open",
                    decision_on: None,
                }),
            )
        },
        base(
            "t50-flood",
            "t50 SYN flood; t50 spoofs random sources by default: a destination budget",
            Some(Attack {
                tool: "t50",
                args: args(&[
                    TARGET,
                    "--protocol",
                    "TCP",
                    "--syn",
                    "--dport",
                    "80",
                    "--threshold",
                    // t50 sends as fast as it can: 20,000 SYNs can be gone
                    // in the tenth of a second a decision takes, leaving
                    // nothing for the budget to drop.
                    &n(200_000),
                ]),
                detector: "syn_flood",
                decision_on: Some("{target}:80/tcp"),
            }),
        ),
        Scenario {
            // The storefront's aggregate SYN threshold is raised so that the
            // run stays below every threshold however fast hping3 goes here.
            config: MANY_SOURCES,
            ..base(
                "many-sources",
                "SYNs from about 10,000 random sources a second, below every threshold: the agent's cost with many active sources",
                Some(Attack {
                    detector: "none",
                    ..hping(
                        "none",
                        &[
                            "-S",
                            "-p",
                            "80",
                            "--rand-source",
                            "-i",
                            "u80",
                            "-c",
                            &n(60_000),
                        ],
                    )
                    .expect("an attack")
                }),
            )
        },
        base(
            "spoofed-syn-flood",
            "hping3 SYN flood from random spoofed sources: a destination budget, no bans",
            Some(Attack {
                decision_on: Some("{target}:80/tcp"),
                ..hping(
                    "syn_flood",
                    &[
                        "-S",
                        "-p",
                        "80",
                        "--rand-source",
                        "-i",
                        "u10",
                        "-c",
                        &n(60_000),
                    ],
                )
                .expect("an attack")
            }),
        ),
    ];
    all.extend(super::unsolicited::scenarios(fast));
    all.extend(super::low_and_slow::scenarios(fast));
    all
}

pub fn find(name: &str, fast: bool) -> Result<Scenario> {
    all(fast)
        .into_iter()
        .find(|s| s.name == name)
        .with_context(|| {
            let names: Vec<&str> = all(fast).iter().map(|s| s.name).collect();
            format!("no scenario `{name}`; scenarios: {}", names.join(", "))
        })
}
