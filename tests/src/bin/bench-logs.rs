//! `cargo xtask bench logs`: the application pipeline (parse, count, decide)
//! on one core over a generated 10M-line `combined` log and the same as JSON
//! lines, with 100k distinct clients; lines per second and peak RSS of the
//! process. In the same run, `fail2ban-regex` (Debian's fail2ban) with its
//! shipped nginx-botsearch filter on the same combined file, as the
//! reference. Writes target/bench/logs.json. `--lines N` for a shorter run.

use std::{
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use ensuresec_agent::app::{
    metrics::AppMetrics,
    parse::Format,
    pipeline::{Pipeline, TimeBase},
    pseudonym::Hasher,
    settings::{AppSection, AppSettings, EventsConfig, LogConfig, StorefrontConfig},
};
use serde::Serialize;

const CLIENTS: u32 = 100_000;

#[derive(Serialize)]
struct Row {
    system: &'static str,
    format: &'static str,
    lines: u64,
    seconds: f64,
    lines_per_second: f64,
    peak_rss_mib: f64,
    /// ensuresec: findings (detections handed to the engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    detections: Option<u64>,
    /// fail2ban-regex: lines its filter matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_lines: Option<u64>,
}

/// Writes `lines` requests from `CLIENTS` clients (a few of them attacking:
/// probes, failed logins, bursts of 404s) as combined or JSON lines.
fn generate(path: &Path, lines: u64, json: bool) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(0x10_95);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let start = 1_796_115_600u64;
    let pages = [
        "/",
        "/product/12",
        "/product/7?color=blue",
        "/cart",
        "/static/app.js",
        "/static/logo.png",
        "/search?q=mug",
    ];
    for i in 0..lines {
        let t = start + i / 2_000;
        let (h, m, s) = ((t / 3600) % 24, (t / 60) % 60, t % 60);
        let client = rng.u32(0..CLIENTS);
        let ip = format!(
            "10.{}.{}.{}",
            client >> 16,
            (client >> 8) & 255,
            client & 255
        );
        let attacker = client.is_multiple_of(997);
        let (method, path, status) = match (attacker, rng.u8(0..10)) {
            (true, 0..=3) => ("POST", "/login", 401),
            (true, 4..=6) => ("GET", "/.env", 404),
            (true, _) => ("GET", "/wp-login.php", 404),
            (false, 0) => ("POST", "/login", 302),
            (false, _) => ("GET", pages[rng.usize(0..pages.len())], 200),
        };
        let agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        if json {
            writeln!(
                out,
                "{{\"time\":\"2026-12-01T{h:02}:{m:02}:{s:02}+00:00\",\"remote_addr\":\"{ip}\",\"host\":\"shop.example\",\"request_method\":\"{method}\",\"request_uri\":\"{path}\",\"status\":\"{status}\",\"body_bytes_sent\":\"512\",\"http_referer\":\"\",\"http_user_agent\":\"{agent}\",\"http_x_forwarded_for\":\"\"}}"
            )?;
        } else {
            writeln!(
                out,
                "{ip} - - [01/Dec/2026:{h:02}:{m:02}:{s:02} +0000] \"{method} {path} HTTP/1.1\" {status} 512 \"-\" \"{agent}\""
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The worker: the pipeline over `path`, one thread; prints lines and findings.
fn work(path: &Path, format: Format) -> Result<()> {
    let section = AppSection::default();
    let fronts = [StorefrontConfig {
        name: "bench".into(),
        ..Default::default()
    }];
    let logs = [LogConfig {
        path: path.to_path_buf(),
        format,
        storefront: Some("bench".into()),
        json: None,
    }];
    let settings = Arc::new(
        AppSettings::validate(&section, &fronts, &logs, &EventsConfig::default())
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let input = settings.logs[0].clone();
    let findings = Arc::new(Mutex::new(0u64));
    let counted = findings.clone();
    let mut pipeline = Pipeline::new(
        settings,
        Hasher::ephemeral()?,
        AppMetrics::new()?,
        TimeBase::Log,
        Box::new(move |_| *counted.lock().expect("lock") += 1),
    );
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut line = Vec::with_capacity(512);
    let mut lines = 0u64;
    let mut offset = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let line_at = offset;
        offset += n as u64;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        pipeline.line(&input, &line, 0, line_at);
        lines += 1;
    }
    println!("{lines} {}", *findings.lock().expect("lock"));
    Ok(())
}

/// Runs `cmd`, returning (seconds, peak RSS MiB, stdout).
fn measured(cmd: &mut Command) -> Result<(f64, f64, String)> {
    let start = Instant::now();
    let child = cmd.stdout(std::process::Stdio::piped()).spawn()?;
    let pid = child.id() as i32;
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.expect("piped"), &mut stdout)?;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out buffer; the pid is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if waited < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (wait status {status})");
    }
    Ok((seconds, usage.ru_maxrss as f64 / 1024.0, stdout))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--work") {
        let format = Format::from_name(&args[3]).context("format")?;
        return work(Path::new(&args[2]), format);
    }
    let lines: u64 = match args.iter().position(|a| a == "--lines") {
        Some(i) => args.get(i + 1).context("--lines N")?.parse()?,
        None => 10_000_000,
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    for (format, json) in [(Format::Combined, false), (Format::Json, true)] {
        let file = dir.join(format!("bench-{}.log", format.name()));
        eprintln!("generating {lines} {} lines", format.name());
        generate(&file, lines, json)?;
        // One core, as the agent's log thread has.
        let (seconds, rss, out) = measured(
            Command::new("taskset")
                .args(["-c", "0"])
                .arg(&me)
                .args(["--work"])
                .arg(&file)
                .arg(format.name()),
        )?;
        let mut parts = out
            .split_whitespace()
            .map(|n| n.parse::<u64>().unwrap_or(0));
        let (read, findings) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if read != lines {
            bail!("the pipeline read {read} of {lines} lines");
        }
        rows.push(Row {
            system: "ensuresec",
            format: format.name(),
            lines,
            seconds,
            lines_per_second: lines as f64 / seconds,
            peak_rss_mib: rss,
            detections: Some(findings),
            matched_lines: None,
        });
        if !json {
            eprintln!("fail2ban-regex on the same file (nginx-botsearch)");
            let (seconds, rss, out) = measured(
                Command::new("taskset")
                    .args(["-c", "0", "fail2ban-regex", "--print-no-missed"])
                    .arg(&file)
                    .arg("/etc/fail2ban/filter.d/nginx-botsearch.conf"),
            )?;
            let matched = out
                .lines()
                .find(|l| l.starts_with("Lines:"))
                .and_then(|l| l.split(',').find(|p| p.contains("matched")))
                .and_then(|p| p.split_whitespace().next().and_then(|n| n.parse().ok()))
                .unwrap_or(0);
            rows.push(Row {
                system: "fail2ban",
                format: format.name(),
                lines,
                seconds,
                lines_per_second: lines as f64 / seconds,
                peak_rss_mib: rss,
                detections: None,
                matched_lines: Some(matched),
            });
        }
        std::fs::remove_file(&file)?;
    }
    let report = serde_json::to_string_pretty(&rows)?;
    std::fs::write(dir.join("logs.json"), &report)?;
    println!("{report}");
    Ok(())
}
