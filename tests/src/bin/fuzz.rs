//! `cargo xtask fuzz --packets N [--seed S]`: random and mutated frames
//! through the XDP filter against the reference; prints a JSON report and
//! fails on any abort or disagreement.

use anyhow::{Context as _, Result, bail};

fn main() -> Result<()> {
    let mut packets: u64 = 1_000_000;
    let mut seed: u64 = fastrand::u64(..);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--packets" => {
                packets = value
                    .parse()
                    .with_context(|| format!("--packets {value}"))?
            }
            "--seed" => seed = value.parse().with_context(|| format!("--seed {value}"))?,
            other => bail!("unknown argument {other} (--packets N, --seed S)"),
        }
    }
    let report = ensuresec_tests::fuzz::run(packets, seed)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.clean() {
        bail!(
            "{} aborts, {} verdicts and {} counter phases disagree with the reference (seed {seed})",
            report.aborts,
            report.mismatches,
            report.counter_mismatches
        );
    }
    Ok(())
}
