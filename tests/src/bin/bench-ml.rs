//! `cargo xtask bench ml`: the anomaly model's throughput with tract on one
//! core at batch 1, 64 and 256 (target/bench/ml.json), and what scoring adds
//! to the agent's CPU with about 10,000 active sources (the many-sources lab
//! scenario with the model off, on with its defaults, and on scoring every
//! source; target/bench/ml-agent.json).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Result;
use ensuresec_agent::ml::model::{Model, Subject};
use ensuresec_common::vector::WIDTH;
use ensuresec_tests::scenarios::{self, RunOptions, Tick};
use serde::Serialize;

#[derive(Serialize)]
struct Throughput {
    batch: usize,
    vectors_per_second: f64,
}

#[derive(Serialize)]
struct AgentRow {
    setting: &'static str,
    agent_cpu_share: f64,
    agent_peak_rss_mib: f64,
    steps: f64,
    sources_scored_per_step: f64,
    flagged_per_step: f64,
    mean_step_ms: f64,
}

/// Pins the calling thread to one CPU, so that the number is per core.
fn pin_to_one_core() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn throughput(model: &Model, batch: usize) -> Result<f64> {
    // Vectors spread over the range features take (rates up to e^12, shares 0..1).
    let mut x = ndarray::Array2::<f32>::zeros((batch, WIDTH));
    for (i, v) in x.iter_mut().enumerate() {
        *v = ((i * 7919) % 1000) as f32 / 1000.0 * if i % WIDTH < 2 { 12.0 } else { 1.0 };
    }
    for _ in 0..50 {
        model.score(x.view())?;
    }
    let started = Instant::now();
    let mut vectors = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        model.score(x.view())?;
        vectors += batch;
    }
    Ok(vectors as f64 / started.elapsed().as_secs_f64())
}

/// A metric's value, whatever its labels (only the per-source model runs).
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0)
}

fn agent_run(setting: &'static str, ml: &str) -> Result<AgentRow> {
    let mut s = scenarios::find("many-sources", false)?;
    s.duration = Duration::from_secs(10);
    let mut page = String::new();
    let mut last = Duration::ZERO;
    let mut on_tick = |t: &Tick| -> Result<()> {
        if t.elapsed >= last + Duration::from_secs(2) {
            last = t.elapsed;
            page = t.lab.metrics().unwrap_or_default();
        }
        Ok(())
    };
    eprintln!("bench ml: many-sources with {setting}");
    let r = scenarios::run_with(
        &s,
        RunOptions {
            config_before: ml,
            visitors: false,
            on_tick: Some(&mut on_tick),
        },
    )?;
    let steps = metric(&page, "ensuresec_ml_step_seconds_count");
    Ok(AgentRow {
        setting,
        agent_cpu_share: r.agent_cpu_share,
        agent_peak_rss_mib: r.agent_peak_rss_mib,
        steps,
        sources_scored_per_step: metric(&page, "ensuresec_ml_scored_total") / steps.max(1.0),
        flagged_per_step: metric(&page, "ensuresec_ml_flagged_total") / steps.max(1.0),
        mean_step_ms: metric(&page, "ensuresec_ml_step_seconds_sum") / steps.max(1.0) * 1e3,
    })
}

fn write(dir: &Path, name: &str, value: &impl Serialize) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)? + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let model_path = root.join("models/ensuresec-ae.onnx");
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;

    let bench = std::thread::spawn(move || -> Result<Vec<Throughput>> {
        pin_to_one_core();
        let model = Model::load(&model_path, Subject::Source)?;
        [1, 64, 256]
            .into_iter()
            .map(|batch| {
                Ok(Throughput {
                    batch,
                    vectors_per_second: throughput(&model, batch)?,
                })
            })
            .collect()
    });
    let rows = bench.join().expect("bench thread")?;
    println!("{:>6} {:>14}", "batch", "vectors/s");
    for r in &rows {
        println!("{:>6} {:>14.0}", r.batch, r.vectors_per_second);
    }
    write(&dir, "ml.json", &rows)?;

    let model = format!(
        "[ml]\nmodel = \"{}\"\n",
        root.join("models/ensuresec-ae.onnx").display()
    );
    let agent = vec![
        agent_run("model off", "")?,
        agent_run("model on (min_packets 2)", &model)?,
        agent_run(
            "model on, every source scored (min_packets 1)",
            &format!("{model}min_packets = 1\n"),
        )?,
    ];
    println!(
        "{:<46} {:>6} {:>8} {:>12} {:>13} {:>9}",
        "agent", "cpu", "rss MiB", "scored/step", "flagged/step", "step ms"
    );
    for a in &agent {
        println!(
            "{:<46} {:>5.1}% {:>8.1} {:>12.0} {:>13.0} {:>9.2}",
            a.setting,
            a.agent_cpu_share * 100.0,
            a.agent_peak_rss_mib,
            a.sources_scored_per_step,
            a.flagged_per_step,
            a.mean_step_ms
        );
    }
    write(&dir, "ml-agent.json", &agent)?;
    Ok(())
}
