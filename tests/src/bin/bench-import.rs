//! `cargo xtask bench import`: wall time and peak RSS of `ensuresec block
//! import` on a 1M-line plain list, into empty maps and again over the same
//! entries. Writes target/bench/import.json.

use std::{fmt::Write as _, path::PathBuf, time::Instant};

use anyhow::{Result, bail};
use ensuresec_tests::lab::Solo;
use serde::Serialize;

const LINES: usize = 1_000_000;

#[derive(Serialize)]
struct Run {
    case: &'static str,
    lines: usize,
    seconds: f64,
    peak_rss_mib: f64,
}

/// Runs the import and returns (seconds, peak RSS in MiB) of the process.
fn timed_import(solo: &Solo, file: &str) -> Result<(f64, f64)> {
    let start = Instant::now();
    let child = solo
        .cmd(&[
            "block", "import", file, "--format", "plain", "--ttl", "4h", "--reason", "bench",
        ])
        .spawn()?;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out buffer; the pid is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("the import failed (wait status {status})");
    }
    Ok((seconds, usage.ru_maxrss as f64 / 1024.0))
}

fn main() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut rng = fastrand::Rng::with_seed(0x1_0000_5eed);
    let mut seen = std::collections::HashSet::with_capacity(LINES);
    let mut text = String::with_capacity(LINES * 16);
    text.push_str("# bench: 1M random IPv4 addresses\n");
    while seen.len() < LINES {
        let a = std::net::Ipv4Addr::from(rng.u32(0x0100_0000..0xdf00_0000));
        if seen.insert(a) {
            writeln!(text, "{a}")?;
        }
    }
    let file = dir.join("import-1m.txt");
    std::fs::write(&file, text)?;
    let file = file.display().to_string();

    let solo = Solo::new()?;
    let (ok, _, err) = solo.run(&["attach", "--iface", "v0"])?;
    if !ok {
        bail!("attach failed: {err}");
    }
    let mut runs = Vec::new();
    for case in ["into empty maps", "over the same entries"] {
        let (seconds, peak_rss_mib) = timed_import(&solo, &file)?;
        runs.push(Run {
            case,
            lines: LINES,
            seconds,
            peak_rss_mib,
        });
    }
    let start = Instant::now();
    let (ok, out, err) = solo.run(&["status", "-o", "json"])?;
    let status_seconds = start.elapsed().as_secs_f64();
    if !ok {
        bail!("status failed: {err}");
    }
    let status: serde_json::Value = serde_json::from_str(&out)?;
    let listed = status["lists"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|x| x["list"] == "block" && x["family"] == "ipv4" && x["kind"] == "exact")
        })
        .and_then(|x| x["entries"].as_u64())
        .unwrap_or(0);
    if listed != LINES as u64 {
        bail!("{listed} entries listed after importing {LINES}");
    }
    println!(
        "{:<24} {:>9} {:>9} {:>13}",
        "case", "lines", "seconds", "peak RSS MiB"
    );
    for r in &runs {
        println!(
            "{:<24} {:>9} {:>9.2} {:>13.1}",
            r.case, r.lines, r.seconds, r.peak_rss_mib
        );
    }
    println!(
        "status with {LINES} entries listed: {status_seconds:.2} s (an agent sweep reads the same)"
    );
    let path = dir.join("import.json");
    std::fs::write(&path, serde_json::to_string_pretty(&runs)?)?;
    eprintln!("wrote {path:?}");
    Ok(())
}
