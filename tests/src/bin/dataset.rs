//! `cargo xtask dataset [--passes N] [--out DIR] [SCENARIO...]`: runs the lab
//! scenarios (all by default) N times over, each with benign visitors and the
//! agent in dry-run, and writes DIR/windows.csv (one row per source per
//! one-second step) and DIR/schema.json.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use ensuresec_tests::{dataset, scenarios};

fn main() -> Result<()> {
    let mut passes = 5usize;
    let mut out = PathBuf::from("models/data");
    let mut names: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--passes" => {
                passes = args
                    .next()
                    .context("--passes needs a number")?
                    .parse()
                    .context("--passes needs a number")?
            }
            "--out" => out = args.next().context("--out needs a directory")?.into(),
            flag if flag.starts_with('-') => {
                bail!("unknown flag {flag}; use --passes N, --out DIR, SCENARIO...")
            }
            name => names.push(name.to_string()),
        }
    }
    if passes == 0 {
        bail!("--passes must be at least 1");
    }
    let all = scenarios::all(false);
    let chosen: Vec<&scenarios::Scenario> = if names.is_empty() {
        all.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                all.iter().find(|s| s.name == n).with_context(|| {
                    let known: Vec<&str> = all.iter().map(|s| s.name).collect();
                    format!("no scenario `{n}`; scenarios: {}", known.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let csv = out.join("windows.csv");
    let mut text = dataset::header();
    for pass in 0..passes {
        for s in &chosen {
            let (rows, count) = dataset::record(pass, s)
                .with_context(|| format!("pass {pass}, scenario {}", s.name))?;
            println!("pass {pass} {:<20} {count:>6} rows", s.name);
            text.push_str(&rows);
        }
    }
    // Written once at the end, so that a failed run leaves no half dataset.
    std::fs::write(&csv, text).with_context(|| format!("writing {}", csv.display()))?;
    let names: Vec<&str> = chosen.iter().map(|s| s.name).collect();
    let schema = serde_json::to_string_pretty(&dataset::schema(passes, &names))?;
    std::fs::write(out.join("schema.json"), schema + "\n")?;
    println!("wrote {} and schema.json", csv.display());
    Ok(())
}
