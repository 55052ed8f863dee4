//! `cargo xtask`: set-up, tests, benchmarks and the lab demo.

mod bootstrap;
mod run;

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
    /// Bootstrap, then fmt check, clippy, unit, kernel and namespace tests.
    Test,
    /// Bootstrap, then run a lab scenario and print its JSON report (`list` lists them).
    Lab {
        #[arg(default_value = "list")]
        scenario: String,
    },
    /// Bootstrap, then replay a capture (pcap or pcapng) into the lab's storefront
    /// with ensuresec running; prints a JSON report.
    Replay {
        #[arg(long)]
        pcap: std::path::PathBuf,
        /// A multiplier of the recorded timing, or `max`.
        #[arg(long)]
        speed: Option<String>,
    },
    /// Bootstrap, then a benchmark; results go to target/bench/.
    Bench {
        #[arg(value_enum)]
        which: Bench,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Bench {
    /// ns per packet of the XDP paths with BPF_PROG_TEST_RUN.
    Xdp,
    /// Time and peak RSS of importing a 1M-line blocklist.
    Import,
    /// Every lab scenario at full rate: time-to-mitigate, shoppers, agent cost.
    Detect,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = run::workspace_root();
    bootstrap::bootstrap(&root)?;
    match cli.task {
        Task::Bootstrap => Ok(()),
        Task::Demo => {
            run::cargo(&root, &["build", "--release", "-p", "ensuresec-agent"])?;
            run::cargo(
                &root,
                &[
                    "run",
                    "--release",
                    "-p",
                    "ensuresec-tests",
                    "--bin",
                    "lab-demo",
                ],
            )
        }
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
        Task::Lab { scenario } => {
            run::cargo(&root, &["build", "--release", "-p", "ensuresec-agent"])?;
            run::cargo(
                &root,
                &[
                    "run",
                    "--release",
                    "-p",
                    "ensuresec-tests",
                    "--bin",
                    "lab",
                    "--",
                    &scenario,
                ],
            )
        }
        Task::Replay { pcap, speed } => {
            run::cargo(&root, &["build", "--release", "-p", "ensuresec-agent"])?;
            let pcap = std::fs::canonicalize(&pcap)
                .map_err(|e| anyhow::anyhow!("{}: {e}", pcap.display()))?;
            let pcap = pcap.display().to_string();
            let mut args = vec![
                "run",
                "--release",
                "-p",
                "ensuresec-tests",
                "--bin",
                "replay",
                "--",
                "--pcap",
                &pcap,
            ];
            if let Some(s) = &speed {
                args.extend(["--speed", s]);
            }
            run::cargo(&root, &args)
        }
        Task::Bench { which } => {
            run::cargo(&root, &["build", "--release", "-p", "ensuresec-agent"])?;
            let bin = match which {
                Bench::Xdp => "bench-xdp",
                Bench::Import => "bench-import",
                Bench::Detect => "bench-detect",
            };
            run::cargo(
                &root,
                &["run", "--release", "-p", "ensuresec-tests", "--bin", bin],
            )
        }
    }
}
