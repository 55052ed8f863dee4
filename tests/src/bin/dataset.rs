//! `cargo xtask dataset [--passes N] [--out DIR] [SCENARIO...]`: runs the lab
//! scenarios (all by default) N times over, each with benign visitors and the
//! agent in dry-run, and writes DIR/windows.csv (one row per source per
//! one-second step) with DIR/schema.json, and DIR/destinations.csv (one row
//! per protected address per step) with DIR/schema-destinations.json.

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
    let mut texts = dataset::Kind::ALL.map(|k| k.header());
    for pass in 0..passes {
        for s in &chosen {
            let tables = dataset::record(pass, s)
                .with_context(|| format!("pass {pass}, scenario {}", s.name))?;
            println!(
                "pass {pass} {:<20} {:>6} source rows {:>4} destination rows",
                s.name, tables[0].count, tables[1].count
            );
            for (text, table) in texts.iter_mut().zip(&tables) {
                text.push_str(&table.rows);
            }
        }
    }
    // Written once at the end, so that a failed run leaves no half dataset.
    let names: Vec<&str> = chosen.iter().map(|s| s.name).collect();
    for (kind, text) in dataset::Kind::ALL.into_iter().zip(texts) {
        let csv = out.join(kind.csv());
        std::fs::write(&csv, text).with_context(|| format!("writing {}", csv.display()))?;
        let schema = serde_json::to_string_pretty(&dataset::schema(kind, passes, &names))?;
        std::fs::write(out.join(kind.schema_file()), schema + "\n")?;
        println!("wrote {} and {}", csv.display(), kind.schema_file());
    }
    Ok(())
}
