//! `cargo xtask bench journal`: how fast the journal takes decisions (the
//! agent's writer thread, batched, fed as the engine feeds it), what one
//! decision costs the engine's thread, and how long an agent starting on
//! new maps takes to restore 1M blocks, 10k prefixes and 1k decisions from
//! the journal, and `ensuresec explain` then. Writes
//! target/bench/journal.json.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ensuresec_agent::{
    clock,
    detect::outcome::Outcome,
    journal::{
        Journal, StateChange, outcomes,
        retention::Retention,
        state::{DecisionRow, ListRow},
        writer::{self, JournalMetrics},
    },
    store::decisions::DecisionTarget,
};
use ensuresec_common::decisions::{Action, DecisionRecord, Detector};
use ensuresec_tests::{lab::Solo, wait::eventually};
use serde::Serialize;

const DECISIONS: usize = 500_000;
const BLOCKS: usize = 1_000_000;
const PREFIXES: usize = 10_000;
const RESTORED_DECISIONS: usize = 1_000;

#[derive(Serialize)]
struct Report {
    decisions: usize,
    write_seconds: f64,
    decisions_per_second: f64,
    /// What handing one decision to the journal costs the engine's thread.
    engine_ns_per_decision: f64,
    restore_blocks: usize,
    restore_prefixes: usize,
    restore_decisions: usize,
    restore_seconds: f64,
    /// From `ensuresec run` to its metrics answering, restore included.
    agent_start_seconds: f64,
    /// `ensuresec explain` (the whole command) with the maps and journal
    /// full: a blocked address, a banned one.
    explain_block_ms: f64,
    explain_ban_ms: f64,
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("es-bench-journal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temp dir");
    d
}

fn ban(i: usize) -> Outcome {
    let addr = Ipv4Addr::from(0x0b00_0000 + i as u32);
    let now = clock::mono_ns();
    Outcome::Decided {
        target: DecisionTarget::source(addr.into()),
        record: DecisionRecord {
            detector: Detector::SynFlood as u32,
            action: Action::Ban as u32,
            strikes: 1,
            created_secs: clock::unix_secs(),
            first_seen_ns: now,
            decided_ns: now,
            expires_at_ns: now + 600_000_000_000,
            evidence: [5200, 5000, 0, 0],
            ..Default::default()
        },
        does: "drops everything".into(),
        evidence: "5200 >= 5000 per window".into(),
        place: ensuresec_agent::detect::outcome::Place::Unknown,
    }
}

/// Decisions through the writer thread; (seconds, engine ns per decision).
fn writes() -> Result<(f64, f64)> {
    let dir = temp_dir("writes");
    let registry = prometheus::Registry::new();
    let metrics = JournalMetrics::register(&registry)?;
    let retention = Retention {
        max_age: Duration::from_secs(86_400),
        max_bytes: 8 << 30,
    };
    let (writer, sink) = writer::start(Journal::open(&dir)?, metrics.clone(), retention);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = writer.spawn(stop.clone());
    let listener = outcomes::listener(sink);
    let outcomes: Vec<Outcome> = (0..DECISIONS).map(ban).collect();
    let start = Instant::now();
    let mut engine = Duration::ZERO;
    let mut sent = 0u64;
    for chunk in outcomes.chunks(1000) {
        let t = Instant::now();
        for o in chunk {
            listener(o);
        }
        engine += t.elapsed();
        // Each decision is written as two records (its entry, its row).
        // The channel is bounded and a full one drops: a producer faster
        // than the disk waits here instead, so that what is timed is the
        // writes.
        sent += chunk.len() as u64;
        while metrics.written.get() / 2 + 60_000 < sent {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let expected = 2 * DECISIONS as u64;
    eventually(Duration::from_secs(120), "every decision written", || {
        Ok((metrics.written.get() >= expected).then_some(()))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    if metrics.dropped.get() > 0 {
        bail!("{} records dropped", metrics.dropped.get());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(listener);
    thread.join().ok();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((seconds, engine.as_nanos() as f64 / DECISIONS as f64))
}

/// A journal holding 1M blocks, 10k prefixes and 1k decisions; returns one
/// of the blocked addresses.
fn prefilled(dir: &std::path::Path) -> Result<Ipv4Addr> {
    let mut journal = Journal::open(dir)?;
    let mut rng = fastrand::Rng::with_seed(0x7e57_0ba7);
    let expires = Some(clock::unix_ms() + 4 * 3_600_000);
    let mut seen = std::collections::HashSet::with_capacity(BLOCKS);
    let mut changes = Vec::with_capacity(BLOCKS + PREFIXES);
    while seen.len() < BLOCKS {
        let a = Ipv4Addr::from(rng.u32(0x0100_0000..0xdf00_0000));
        if seen.insert(a) {
            changes.push(StateChange::List(ListRow {
                target: a.to_string(),
                allow: false,
                block: true,
                block_expires_ms: expires,
                reason: Some("bench".into()),
                added_secs: clock::unix_secs(),
                operation: None,
            }));
        }
    }
    for i in 0..PREFIXES {
        let net = Ipv4Addr::from(0xe000_0000u32.wrapping_sub(((i as u32) + 1) << 8));
        changes.push(StateChange::List(ListRow {
            target: format!("{net}/24"),
            allow: false,
            block: true,
            block_expires_ms: None,
            reason: Some("bench prefix".into()),
            added_secs: clock::unix_secs(),
            operation: None,
        }));
    }
    let now_ms = clock::unix_ms();
    for i in 0..RESTORED_DECISIONS {
        changes.push(StateChange::Decision(DecisionRow {
            target: Ipv4Addr::from(0xdf10_0000 + i as u32).to_string(),
            detector: Detector::SynFlood as u32,
            action: Action::Ban as u32,
            strikes: 1,
            rate: 0,
            limit_classes: 0,
            drop_classes: 0,
            created_secs: clock::unix_secs(),
            first_seen_ms: now_ms,
            decided_ms: now_ms,
            expires_ms: now_ms + 3_600_000,
            evidence: [1, 1, 0, 0],
            storefront: None,
        }));
    }
    journal.write(&[], &changes)?;
    Ok(*seen.iter().next().expect("a block"))
}

/// The fastest of five `ensuresec explain` runs (process start included),
/// in ms.
fn explain_ms(solo: &Solo, addr: &str) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let (ok, out, err) = solo.run(&["explain", addr])?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if !ok || !out.contains("dropped") {
            bail!("explain {addr}: {out} {err}");
        }
        best = best.min(ms);
    }
    Ok(best)
}

/// (restore seconds, agent start seconds, explain ms of a blocked address,
/// of a banned one).
fn restore() -> Result<(f64, f64, f64, f64)> {
    let solo = Solo::new()?;
    let state = solo.workdir.join("state");
    let blocked = prefilled(&state)?;
    let config = solo.file(
        "agent.toml",
        &format!(
            "[[interface]]\nname = \"v0\"\nmode = \"generic\"\n\n[agent]\nstate_dir = \"{}\"\n",
            state.display()
        ),
    )?;
    let start = Instant::now();
    let mut agent = solo
        .cmd(&["run", "--config", &config])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let up = eventually(Duration::from_secs(120), "the agent's metrics", || {
        let ok = solo
            .ns
            .cmd("curl")
            .args(["-sf", "--max-time", "1", "http://127.0.0.1:9968/metrics"])
            .output()?
            .status
            .success();
        Ok(ok.then(|| start.elapsed().as_secs_f64()))
    });
    let (ok, out, err) = solo.run(&["journal", "-o", "json"])?;
    let explained = up.as_ref().ok().map(|_| {
        Ok::<_, anyhow::Error>((
            explain_ms(&solo, &blocked.to_string())?,
            explain_ms(&solo, &Ipv4Addr::from(0xdf10_0000u32).to_string())?,
        ))
    });
    let _ = agent.kill();
    let _ = agent.wait();
    let up = up?;
    let (explain_block_ms, explain_ban_ms) = explained.expect("the agent came up")?;
    if !ok {
        bail!("journal: {err}");
    }
    let entries: serde_json::Value = serde_json::from_str(&out)?;
    let restore = entries
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "restore"))
        .context("no restore entry in the journal")?;
    let restored = &restore["detail"]["restored"];
    if restored["blocks"] != (BLOCKS + PREFIXES) as u64
        || restored["decisions"] != RESTORED_DECISIONS as u64
    {
        bail!("restored {restored}");
    }
    let seconds = restore["detail"]["seconds"]
        .as_f64()
        .context("restore seconds")?;
    Ok((seconds, up, explain_block_ms, explain_ban_ms))
}

fn main() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let (write_seconds, engine_ns) = writes()?;
    let (restore_seconds, agent_start_seconds, explain_block_ms, explain_ban_ms) = restore()?;
    let report = Report {
        decisions: DECISIONS,
        write_seconds,
        decisions_per_second: DECISIONS as f64 / write_seconds,
        engine_ns_per_decision: engine_ns,
        restore_blocks: BLOCKS,
        restore_prefixes: PREFIXES,
        restore_decisions: RESTORED_DECISIONS,
        restore_seconds,
        agent_start_seconds,
        explain_block_ms,
        explain_ban_ms,
    };
    println!(
        "journal writes: {DECISIONS} decisions in {write_seconds:.2} s = {:.0}/s (target >= 50000/s); {engine_ns:.0} ns each on the engine's thread",
        report.decisions_per_second
    );
    println!(
        "restore into new maps: {BLOCKS} blocks + {PREFIXES} prefixes + {RESTORED_DECISIONS} decisions in {restore_seconds:.2} s (target <= 5 s); agent up after {agent_start_seconds:.2} s"
    );
    println!(
        "explain with 1M entries: {explain_block_ms:.0} ms for a blocked address, {explain_ban_ms:.0} ms for a banned one (target <= 100 ms)"
    );
    let path = dir.join("journal.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    eprintln!("wrote {path:?}");
    Ok(())
}
