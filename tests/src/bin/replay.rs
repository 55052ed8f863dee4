//! `cargo xtask replay --pcap FILE [--speed X|max] [--ml]`: replays a capture
//! into the lab's storefront with ensuresec running, every packet aimed at
//! the storefront (answers to conversations the capture also opens are left
//! out: the storefront plays the answering side), and prints what ensuresec
//! made of it as JSON. `--ml` also runs the committed anomaly models (per
//! source and aggregate, alerting).

use std::{
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, bail};
use ensuresec_tests::{
    capture::{self, access_log, http},
    lab::Lab,
    scenarios,
};
use serde::Serialize;

#[derive(Serialize)]
struct Detection {
    detector: String,
    target: String,
    seconds_after_start: f64,
}

#[derive(Serialize)]
struct Decision {
    action: String,
    target: String,
    ttl_seconds: u64,
}

#[derive(Serialize)]
struct Report {
    capture: String,
    speed: String,
    packets_replayed: u64,
    packets_skipped: usize,
    /// Frames that answer a conversation the capture also opens: the
    /// storefront answers for itself.
    answers_left_out: usize,
    /// HTTP requests in the capture, written to the access log the agent
    /// follows at their recorded times.
    requests_logged: usize,
    sources: usize,
    detections: Vec<Detection>,
    decisions: Vec<Decision>,
    packets_dropped: u64,
    seconds: f64,
}

const CONFIG: &str =
    "[[protect]]\nprefix = \"10.77.0.0/16\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

fn usage() -> ! {
    eprintln!("usage: replay --pcap FILE [--speed X|max] [--duration SECONDS] [--ml]");
    std::process::exit(2);
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The storefront and the access log the capture's HTTP requests go to.
fn app_config(state: &Path, log: &Path, v4: Ipv4Addr, v6: Ipv6Addr) -> String {
    format!(
        "[app]\nstate_dir = \"{}\"\n[[storefront]]\nname = \"replayed\"\nhosts = [\"{v4}\", \"{v6}\"]\n[[logs]]\npath = \"{}\"\nformat = \"combined\"\nstorefront = \"replayed\"\n",
        state.display(),
        log.display()
    )
}

/// Appends each request's log line to `log` when its time comes: `begin`
/// plus its offset from the capture's `start`, divided by `factor` (`None`:
/// at once), stamped with the wall clock as a live server would. Stops when
/// `done` is set.
fn feed_log(
    requests: &[http::Request],
    start: Duration,
    log: &Path,
    factor: Option<f64>,
    begin: Instant,
    done: &AtomicBool,
    logged: &AtomicUsize,
) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().append(true).open(log)?;
    for r in requests {
        if let Some(factor) = factor {
            let due = begin + r.time.saturating_sub(start).div_f64(factor);
            while Instant::now() < due {
                if done.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep((due - Instant::now()).min(Duration::from_millis(20)));
            }
        }
        if done.load(Ordering::Relaxed) {
            return Ok(());
        }
        writeln!(file, "{}", access_log::combined(r, SystemTime::now()))?;
        logged.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `[ml]` with both committed models.
fn ml_config() -> String {
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    format!(
        "[ml]\nmodel = \"{}\"\naggregate_model = \"{}\"\n",
        models.join("ensuresec-ae.onnx").display(),
        models.join("ensuresec-aggregate-ae.onnx").display()
    )
}

fn mac_bytes(text: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()?;
    parts
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC {text}"))
}

/// "Actual: N packets" from tcpreplay's summary.
fn replayed(stdout: &str) -> Option<u64> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("Actual:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut pcap, mut speed, mut duration, mut ml) = (None, "recorded".to_string(), None, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pcap" => pcap = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--speed" => speed = args.next().unwrap_or_else(|| usage()),
            "--duration" => {
                let text = args.next().unwrap_or_else(|| usage());
                let secs: u64 = text
                    .parse()
                    .with_context(|| format!("--duration takes whole seconds, not `{text}`"))?;
                duration = Some(secs.max(1));
            }
            "--ml" => ml = true,
            _ => usage(),
        }
    }
    let pcap = pcap.unwrap_or_else(|| usage());
    // tcpreplay's timing, and the factor the log lines keep pace with.
    let (mut timing, factor): (Vec<String>, Option<f64>) = match speed.as_str() {
        "recorded" => (vec![], Some(1.0)),
        "max" => (vec!["--topspeed".into()], None),
        x => {
            let factor: f64 = x
                .parse()
                .with_context(|| format!("--speed takes a number or `max`, not `{x}`"))?;
            if !(factor > 0.0 && factor.is_finite()) {
                bail!("--speed must be positive, not `{x}`");
            }
            (vec![format!("--multiplier={factor}")], Some(factor))
        }
    };
    // Stop sending after this long (tcpreplay's own limit).
    timing.extend(duration.map(|d| format!("--duration={d}")));
    let lab = Lab::new()?;
    let aimed = lab.workdir.join("aimed.pcap");
    let prepared = capture::prepare(
        &pcap,
        &aimed,
        mac_bytes(&lab.storefront.mac()?)?,
        lab.storefront.v4,
        lab.storefront.v6,
    )?;
    eprintln!(
        "replay: {} packets from {} sources ({} skipped: no IP; {} answers left out), {} HTTP requests",
        prepared.packets,
        prepared.sources,
        prepared.skipped,
        prepared.answers,
        prepared.requests.len()
    );
    let mut config = CONFIG.to_string();
    if ml {
        config += &ml_config();
    }
    let access_log = lab.workdir.join("access.log");
    if !prepared.requests.is_empty() {
        std::fs::write(&access_log, "")?;
        let state = lab.workdir.join("app-state");
        config += &app_config(&state, &access_log, lab.storefront.v4, lab.storefront.v6);
    }
    let _agent = lab.start_agent(&lab.agent_config(&config)?)?;

    // Note when each decision first appears while the capture plays.
    let start = Instant::now();
    let seen: Arc<Mutex<Vec<Detection>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let logged = AtomicUsize::new(0);
    let watcher = {
        let (seen, done) = (seen.clone(), done.clone());
        let lab = &lab;
        let stop = done.clone();
        std::thread::scope(|scope| -> Result<Report> {
            // Stops the watcher and the log feeder however this returns: the
            // scope waits for them.
            let _stop = StopOnDrop(&stop);
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Ok(list) = lab.decisions() {
                        let mut seen = seen.lock().expect("lock");
                        for d in list {
                            let target = d["target"].as_str().unwrap_or_default().to_string();
                            if !seen.iter().any(|s| s.target == target) {
                                seen.push(Detection {
                                    detector: d["detector"].as_str().unwrap_or_default().into(),
                                    target,
                                    seconds_after_start: start.elapsed().as_secs_f64(),
                                });
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let feeder = (!prepared.requests.is_empty()).then(|| {
                let (done, logged, requests) = (&stop, &logged, &prepared.requests);
                let (log, first) = (&access_log, prepared.start);
                scope.spawn(move || feed_log(requests, first, log, factor, start, done, logged))
            });
            let out = lab
                .attacker
                .ns
                .cmd("tcpreplay")
                .arg("--intf1=eth0")
                .args(&timing)
                .arg(&aimed)
                .output()
                .context("running tcpreplay")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() && replayed(&stdout).is_none() {
                bail!("tcpreplay failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            // Let the last windows and the socket scan be looked at.
            std::thread::sleep(Duration::from_millis(1500));
            stop.store(true, Ordering::Relaxed);
            if let Some(feeder) = feeder {
                feeder
                    .join()
                    .map_err(|_| anyhow::anyhow!("the log feeder panicked"))?
                    .context("writing the access log")?;
            }
            let dropped = scenarios::dropped(&scenarios::packets(lab)?);
            let decisions = lab
                .decisions()?
                .into_iter()
                .map(|d| Decision {
                    action: d["action"].as_str().unwrap_or_default().into(),
                    target: d["target"].as_str().unwrap_or_default().into(),
                    ttl_seconds: d["ttl_seconds"].as_u64().unwrap_or(0),
                })
                .collect();
            Ok(Report {
                capture: pcap.display().to_string(),
                speed: speed.clone(),
                packets_replayed: replayed(&stdout).unwrap_or(prepared.packets as u64),
                packets_skipped: prepared.skipped,
                answers_left_out: prepared.answers,
                requests_logged: logged.load(Ordering::Relaxed),
                sources: prepared.sources,
                detections: Vec::new(),
                decisions,
                packets_dropped: dropped,
                seconds: start.elapsed().as_secs_f64(),
            })
        })?
    };
    let mut report = watcher;
    report.detections = std::mem::take(&mut *seen.lock().expect("lock"));
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
