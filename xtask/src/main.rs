//! `cargo xtask`: set-up, tests, benchmarks and the lab demo.

mod bootstrap;
mod lab_run;
mod run;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ensuresec developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent).
    Bootstrap,
    /// Bootstrap, then run the lab demo: a storefront, a shopper and an attacker.
    Demo,
    /// One attack on the lab shop end to end: incidents, fail-safe, notices
    /// as real receivers got them, explain, rollback, a simulated reboot.
    Response,
    /// Bootstrap, then fmt check, clippy, unit, kernel and namespace tests.
    Test,
    /// Bootstrap, then run a lab scenario and print its JSON report (`list` lists them).
    Lab {
        #[arg(default_value = "list")]
        scenario: String,
    },
    /// Bootstrap, then replay a capture (pcap or pcapng) into the lab's storefront
    /// with ensuresec running, or a web server or shop event log through the
    /// agent's pipeline; prints a JSON report.
    Replay {
        /// A capture (pcap or pcapng), replayed into the lab's storefront.
        #[arg(long, conflicts_with = "log", required_unless_present = "log")]
        pcap: Option<std::path::PathBuf>,
        /// An access, error or event log, fed through the agent's pipeline.
        #[arg(long, requires = "format")]
        log: Option<std::path::PathBuf>,
        /// The log's format: combined, vhost_combined, json, nginx_error, events.
        #[arg(long)]
        format: Option<String>,
        /// An agent config whose [app], [[storefront]] and [detect] apply.
        #[arg(long, requires = "log")]
        config: Option<std::path::PathBuf>,
        /// A multiplier of the recorded timing, or `max`.
        #[arg(long)]
        speed: Option<String>,
        /// Also run the committed anomaly models (per source and aggregate).
        #[arg(long, requires = "pcap")]
        ml: bool,
    },
    /// Bootstrap, then replay every public capture named in
    /// tests/eval/captures.toml at its recorded timing and print, per capture,
    /// whether ensuresec decided, by which detector and how fast.
    Eval {
        /// Where the captures are (fetched by the developers; see the README).
        #[arg(long, default_value = "../shared/captures")]
        captures: std::path::PathBuf,
        /// Also write the rows as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Also run the committed anomaly models (per source and aggregate).
        #[arg(long)]
        ml: bool,
        /// With --ml: write the table into this model card's section on
        /// public captures (models/MODEL_CARD.md).
        #[arg(long, requires = "ml")]
        card: Option<std::path::PathBuf>,
        /// Only captures whose path contains one of these.
        names: Vec<String>,
    },
    /// Bootstrap, then record the anomaly models' datasets from the lab
    /// (models/data: windows.csv and schema.json per source,
    /// destinations.csv and schema-destinations.json per destination).
    Dataset {
        /// Passes over the scenarios (later passes are the test split).
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[arg(long, default_value = "models/data")]
        out: std::path::PathBuf,
        /// Scenarios to run (all by default).
        scenarios: Vec<String>,
    },
    /// Train both anomaly models from the datasets (Python venv in target/):
    /// writes models/ensuresec-ae.onnx and ensuresec-aggregate-ae.onnx, their
    /// test vectors and evaluations, and MODEL_CARD.md.
    Train {
        #[arg(long, default_value = "models/data")]
        dataset: std::path::PathBuf,
    },
    /// Bootstrap, then random and mutated frames through the XDP filter with
    /// BPF_PROG_TEST_RUN, each checked against the reference parser: prints
    /// aborts, disagreements and packets per second.
    Fuzz {
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Seed of the frames (random by default; the report gives it).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Bootstrap, then a benchmark; results go to target/bench/.
    Bench {
        #[arg(value_enum)]
        which: Bench,
        /// `detect`: the scenarios to run (all by default); `rig`, `ring`: their options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        scenarios: Vec<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Bench {
    /// ns per packet of the XDP paths with BPF_PROG_TEST_RUN.
    Xdp,
    /// Packets per second on live frames through a veth pair: ensuresec
    /// beside xdp-filter, nftables and iptables with an ipset (`rig
    /// --smoke` for a short run; `--entries`, `--rounds`, `--seconds`).
    Rig,
    /// Trip events per second the agent's ring buffer reader drains, with
    /// the kernel's drops, from 1 to 8M distinct sources (`--seconds`,
    /// `--smoke`).
    Ring,
    /// The agent under a spoofed flood at the rig's rate with 100,000
    /// active sources: time to ban a real attacker beside it, agent CPU and
    /// RSS (`--rounds`, `--seconds`).
    Flood,
    /// Time and peak RSS of importing a 1M-line blocklist.
    Import,
    /// Journal: decisions written per second, and an agent restoring 1M
    /// blocks, 10k prefixes and 1k decisions into new maps.
    Journal,
    /// Every lab scenario at full rate: time-to-mitigate, shoppers, agent cost.
    Detect,
    /// Anomaly model: vectors/s on one core at batch 1, 64, 256, and the
    /// agent's added CPU with about 10,000 active sources.
    Ml,
    /// The application pipeline on one core over 10M-line combined and JSON
    /// logs (100k clients): lines/s and peak RSS, beside fail2ban-regex.
    Logs,
    /// Application scenarios in the lab, ensuresec beside fail2ban on the
    /// same logs: detected, time to mitigate, requests after, benign banned.
    App,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = run::workspace_root();
    bootstrap::bootstrap(&root)?;
    match cli.task {
        Task::Bootstrap => Ok(()),
        Task::Demo => lab_bin(&root, "lab-demo", &[]),
        Task::Response => lab_bin(&root, "lab-response", &[]),
        Task::Test => {
            run::cargo(&root, &["fmt", "--all", "--check"])?;
            run::cargo(
                &root,
                &[
                    "clippy",
                    "--workspace",
                    "--exclude",
                    "ensuresec-ebpf",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            )?;
            run::cargo_nightly_ebpf(&root, "clippy", &["--", "-D", "warnings"])?;
            run::cargo(&root, &["build", "-p", "ensuresec-agent"])?;
            // The eBPF crate builds for bpfel-unknown-none only (clippy'd above).
            run::cargo(
                &root,
                &[
                    "test",
                    "--workspace",
                    "--exclude",
                    "ensuresec-ebpf",
                    "--no-fail-fast",
                ],
            )
        }
        Task::Lab { scenario } => lab_bin(&root, "lab", &[&scenario]),
        Task::Replay {
            pcap,
            log,
            format,
            config,
            speed,
            ml,
        } => {
            let absolute = |p: &std::path::Path| {
                std::fs::canonicalize(p)
                    .map(|p| p.display().to_string())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            };
            let (bin, mut args) = match (pcap, log) {
                (Some(pcap), _) => ("replay", vec!["--pcap".to_string(), absolute(&pcap)?]),
                (None, Some(log)) => {
                    let mut args = vec!["--log".to_string(), absolute(&log)?];
                    args.extend(["--format".to_string(), format.unwrap_or_default()]);
                    if let Some(c) = config {
                        args.extend(["--config".to_string(), absolute(&c)?]);
                    }
                    ("replay-log", args)
                }
                (None, None) => anyhow::bail!("--pcap FILE or --log FILE --format FORMAT"),
            };
            if let Some(s) = speed {
                args.extend(["--speed".to_string(), s]);
            }
            if ml {
                args.push("--ml".to_string());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lab_bin(&root, bin, &args)
        }
        Task::Eval {
            captures,
            json,
            ml,
            card,
            names,
        } => {
            let captures = std::fs::canonicalize(&captures)
                .map_err(|e| anyhow::anyhow!("{}: {e}", captures.display()))?;
            let mut args = vec!["--captures".to_string(), captures.display().to_string()];
            if let Some(j) = json {
                let j = if j.is_absolute() {
                    j
                } else {
                    std::env::current_dir()?.join(j)
                };
                args.extend(["--json".to_string(), j.display().to_string()]);
            }
            if ml {
                args.push("--ml".to_string());
            }
            if let Some(c) = card {
                let c = std::fs::canonicalize(&c)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", c.display()))?;
                args.extend(["--card".to_string(), c.display().to_string()]);
            }
            args.extend(names);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lab_bin(&root, "eval", &args)
        }
        Task::Dataset {
            passes,
            out,
            scenarios,
        } => {
            let out = root.join(out).display().to_string();
            let passes = passes.to_string();
            let mut args = vec!["--passes", &passes, "--out", &out];
            args.extend(scenarios.iter().map(String::as_str));
            lab_bin(&root, "dataset", &args)
        }
        Task::Train { dataset } => train::train(&root, &dataset),
        Task::Fuzz { packets, seed } => {
            let packets = packets.to_string();
            let seed = seed.map(|s| s.to_string());
            let mut args = vec!["--packets", &packets];
            if let Some(s) = &seed {
                args.extend(["--seed", s]);
            }
            lab_bin(&root, "fuzz", &args)
        }
        Task::Bench { which, scenarios } => {
            let bin = match which {
                Bench::Xdp => "bench-xdp",
                Bench::Rig => "bench-rig",
                Bench::Ring => "bench-ring",
                Bench::Flood => "bench-flood",
                Bench::Import => "bench-import",
                Bench::Journal => "bench-journal",
                Bench::Detect => "bench-detect",
                Bench::Ml => "bench-ml",
                Bench::Logs => "bench-logs",
                Bench::App => {
                    // The scenarios run the lab shop beside the bench.
                    run::cargo(
                        &root,
                        &[
                            "build",
                            "--release",
                            "-p",
                            "ensuresec-tests",
                            "--bin",
                            "lab-shop",
                        ],
                    )?;
                    "bench-app"
                }
            };
            let names: Vec<&str> = scenarios.iter().map(String::as_str).collect();
            lab_bin(&root, bin, &names)
        }
    }
}

/// Builds the agent, then runs one of the lab's binaries (ensuresec-tests)
/// with `args`, leaving no lab behind.
fn lab_bin(root: &std::path::Path, bin: &str, args: &[&str]) -> Result<()> {
    lab_run::lab_bin(root, bin, args)
}
