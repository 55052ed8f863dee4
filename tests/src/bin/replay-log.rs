//! `cargo xtask replay --log FILE --format FORMAT [--speed X|max] [--config FILE]`:
//! feeds a recorded access, error or event log through the agent's own
//! pipeline, detectors and decision plan, counting by the log's own
//! timestamps, and prints what ensuresec made of it as JSON. Nothing is sent
//! anywhere: the clients in the log are the report's targets, whatever
//! network they are on. `--speed X` paces the lines at X times their
//! recorded rate (as a live server would write them); `max` (the default)
//! does not wait.

use std::{
    collections::{BTreeSet, HashMap},
    io::{BufRead, BufReader},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ensuresec_agent::{
    app::{
        detect::{AppFinding, AppTarget},
        metrics::AppMetrics,
        parse::Format,
        pipeline::{LineResult, Pipeline, TimeBase},
        pseudonym::Hasher,
        record::Record,
        settings::{AppSection, AppSettings, EventsConfig, LogConfig, LogInput, StorefrontConfig},
    },
    config::{Config, Validated},
    detect::{
        engine::{app_target, plan_app},
        plan::Plan,
    },
};
use serde::Serialize;

#[derive(Serialize)]
struct Detection {
    detector: &'static str,
    target: String,
    storefront: String,
    seconds_after_start: f64,
    evidence: String,
}

#[derive(Serialize)]
struct Decision {
    action: &'static str,
    target: String,
    ttl_seconds: u64,
    detector: &'static str,
}

#[derive(Serialize)]
struct Report {
    log: String,
    format: &'static str,
    speed: String,
    lines_read: u64,
    lines_malformed: u64,
    lines_too_long: u64,
    lines_unmapped: u64,
    sources: usize,
    detections: Vec<Detection>,
    decisions: Vec<Decision>,
    log_seconds: f64,
    seconds: f64,
}

fn usage() -> ! {
    eprintln!(
        "usage: replay-log --log FILE --format combined|vhost_combined|json|nginx_error|events [--speed X|max] [--config FILE]"
    );
    std::process::exit(2);
}

/// The storefront every line is counted for when no config says otherwise.
const STOREFRONT: &str = "replay";

/// The agent's settings from `--config`, or defaults with one storefront
/// that every line of the log belongs to.
fn settings(
    config: Option<&PathBuf>,
    log: &PathBuf,
    format: Format,
) -> Result<(Validated, LogInput)> {
    let validated = match config {
        Some(path) => Config::load(path)?,
        None => Config::parse(std::path::Path::new("(defaults)"), "")?,
    };
    if let Some(input) = validated.app.logs.iter().find(|l| &l.path == log) {
        return Ok((validated.clone(), input.clone()));
    }
    let mut section: AppSection = validated.raw.app.clone();
    section.start_at = ensuresec_agent::app::settings::StartAt::Beginning;
    let mut fronts = validated.raw.storefronts.clone();
    let storefront = match fronts.first() {
        Some(f) if fronts.len() == 1 => f.name.clone(),
        Some(_) => bail!(
            "{} is not a [[logs]] entry of the config: which storefront is it?",
            log.display()
        ),
        None => {
            fronts.push(StorefrontConfig {
                name: STOREFRONT.into(),
                ..Default::default()
            });
            STOREFRONT.into()
        }
    };
    let logs = [LogConfig {
        path: log.clone(),
        format,
        storefront: Some(storefront),
        json: None,
    }];
    let app = AppSettings::validate(&section, &fronts, &logs, &EventsConfig::default())
        .map_err(|e| anyhow::anyhow!(e))?;
    let input = app.logs[0].clone();
    let mut validated = validated;
    validated.app = app;
    Ok((validated, input))
}

/// Reads one line of at most `max` bytes into `buf`; `Ok(None)` at the end,
/// `Ok(Some(false))` for a longer line (skipped to its newline).
/// Reads a line into `buf` (at most `max` bytes kept); `consumed` counts the
/// bytes read, newline included.
fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
    consumed: &mut u64,
) -> Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok((!buf.is_empty() || too_long).then_some(!too_long));
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long && buf.len() + take <= max {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            too_long = true;
            buf.clear();
        }
        reader.consume(take + done as usize);
        *consumed += (take + done as usize) as u64;
        if done {
            return Ok(Some(!too_long));
        }
    }
}

fn client_of(record: &Record<'_>, settings: &AppSettings) -> Option<IpAddr> {
    match record {
        Record::Request(r) => settings
            .clients
            .resolve(r.peer, r.forwarded_for.as_deref())
            .map(|c| c.addr),
        Record::Error(e) => settings.clients.direct(e.client).map(|c| c.addr),
        Record::Event(e) => settings.clients.direct(e.ip).map(|c| c.addr),
        Record::Other => None,
    }
}

fn logged_time(record: &Record<'_>) -> Option<f64> {
    match record {
        Record::Request(r) => r.time,
        Record::Error(e) => e.time,
        Record::Event(e) => Some(e.time.unix_timestamp_nanos() as f64 / 1e9),
        Record::Other => None,
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let log = PathBuf::from(value("--log").unwrap_or_else(|| usage()));
    let format_name = value("--format").unwrap_or_else(|| usage());
    let format = Format::from_name(&format_name)
        .with_context(|| format!("`{format_name}` is not a log format (combined, vhost_combined, json, nginx_error, events)"))?;
    let speed = value("--speed").unwrap_or_else(|| "max".into());
    let pace: Option<f64> = match speed.as_str() {
        "max" => None,
        s => Some(
            s.parse()
                .ok()
                .filter(|x: &f64| *x > 0.0)
                .with_context(|| format!("--speed {s}: a positive number or max"))?,
        ),
    };
    let config = value("--config").map(PathBuf::from);
    let (validated, input) = settings(config.as_ref(), &log, format)?;
    let app = Arc::new(validated.app.clone());
    let found = Arc::new(Mutex::new(Vec::<AppFinding>::new()));
    let sink_found = found.clone();
    let mut pipeline = Pipeline::new(
        app.clone(),
        // A key of this run only: nothing of the log is kept.
        Hasher::ephemeral()?,
        AppMetrics::new()?,
        TimeBase::Log,
        Box::new(move |f| sink_found.lock().expect("findings lock").push(f)),
    );
    let file = std::fs::File::open(&log).with_context(|| format!("opening {}", log.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let started = Instant::now();
    let (mut read, mut malformed, mut too_long, mut unmapped) = (0u64, 0u64, 0u64, 0u64);
    let mut sources = BTreeSet::new();
    let (mut first, mut last): (Option<f64>, f64) = (None, 0.0);
    let mut buf = Vec::new();
    let mut consumed = 0;
    loop {
        let line_at = consumed;
        let Some(whole) = read_line(&mut reader, &mut buf, app.section.max_line, &mut consumed)?
        else {
            break;
        };
        read += 1;
        if !whole {
            too_long += 1;
            pipeline.too_long(&input);
            continue;
        }
        if let Ok(record) = input.parser.parse(&buf) {
            if let Some(c) = client_of(&record, &app) {
                sources.insert(c);
            }
            if let Some(t) = logged_time(&record) {
                let t0 = *first.get_or_insert(t);
                last = last.max(t);
                if let Some(x) = pace {
                    let due = started + Duration::from_secs_f64(((t - t0) / x).max(0.0));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        match pipeline.line(&input, &buf, 0, line_at) {
            LineResult::Malformed(_) => malformed += 1,
            LineResult::Unmapped => unmapped += 1,
            _ => {}
        }
    }
    let start = first.unwrap_or(0.0);
    let findings = std::mem::take(&mut *found.lock().expect("findings lock"));
    // Decide as the engine would: escalating bans per target, nothing new
    // while a ban still holds.
    let mut strikes: HashMap<String, u32> = HashMap::new();
    let mut banned_until: HashMap<String, f64> = HashMap::new();
    let mut decisions = Vec::new();
    let mut detections = Vec::new();
    for f in &findings {
        let decided_on = app_target(f, 0);
        let target = match f.target {
            AppTarget::Storefront => format!("storefront:{}", f.storefront),
            _ => decided_on.to_string(),
        };
        detections.push(Detection {
            detector: f.detector.name(),
            target: target.clone(),
            storefront: f.storefront.to_string(),
            seconds_after_start: f.seen_at - start,
            evidence: f.evidence.clone(),
        });
        if banned_until.get(&target).is_some_and(|t| *t > f.seen_at) {
            continue;
        }
        let strike = strikes.entry(target.clone()).or_default();
        let plan = plan_app(&validated.detect, f, &decided_on, *strike + 1);
        if let Plan::Ban { ttl } = plan {
            *strike += 1;
            banned_until.insert(target.clone(), f.seen_at + ttl.as_secs_f64());
        }
        decisions.push(Decision {
            action: plan.action().name(),
            target,
            ttl_seconds: plan.ttl().as_secs(),
            detector: f.detector.name(),
        });
    }
    let report = Report {
        log: log.display().to_string(),
        format: format.name(),
        speed,
        lines_read: read,
        lines_malformed: malformed,
        lines_too_long: too_long,
        lines_unmapped: unmapped,
        sources: sources.len(),
        detections,
        decisions,
        log_seconds: last - start,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
