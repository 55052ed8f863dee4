//! `cargo xtask eval --captures DIR [NAME...]`: replays each public capture
//! named in `tests/eval/captures.toml` into a fresh lab at its recorded
//! timing (the `replay` binary) and prints, per capture, whether ensuresec
//! decided, by which detectors, how long after the attack's first packet
//! (the replay's start, or `attack_starts_s` into the capture), and what
//! share of the capture it dropped. An attack passes when it is decided
//! within a second (attacks are replayed for a minute at most), a low-rate
//! one (`slow_s`) within its replay; a benign capture when nothing is
//! decided. The table goes
//! to stdout (Markdown), the rows to `--json FILE` if asked, and with
//! `--ml --card FILE` into the model card's section on public captures.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Manifest {
    capture: Vec<Entry>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Entry {
    file: String,
    blob: String,
    class: String,
    kind: Kind,
    role: String,
    /// Seconds into the capture of the attack's first packet, where the
    /// capture opens with other traffic (times are counted from there).
    #[serde(default)]
    attack_starts_s: f64,
    /// A low-rate attack, whose first second holds a few packets that
    /// tell nothing: replayed this long, and decided within it.
    #[serde(default)]
    slow_s: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Attack,
    Benign,
}

#[derive(Serialize)]
struct Row {
    file: String,
    class: String,
    kind: Kind,
    role: String,
    /// Why the capture was not replayed (missing, altered), if it was not.
    skipped: Option<String>,
    packets: u64,
    sources: u64,
    /// Detectors that decided, in the order they first did.
    detectors: Vec<String>,
    /// Seconds from the attack's first packet (the replay's start, unless
    /// the manifest says the attack starts later) to the first decision.
    first_decision_s: Option<f64>,
    decisions: usize,
    dropped_share: f64,
    pass: bool,
}

/// An attack must be decided within this long of its first packet.
const WITHIN_S: f64 = 1.0;

/// Attacks are replayed for at most this long (one capture lasts 14
/// minutes); benign captures in full, since any decision fails them.
const ATTACK_SECONDS: &str = "60";

fn usage() -> ! {
    eprintln!(
        "usage: eval --captures DIR [--manifest FILE] [--json OUT] [--ml [--card MODEL_CARD.md]] [NAME...]"
    );
    std::process::exit(2);
}

/// The file's git blob id, as its source repository names it.
fn blob_id(path: &Path) -> Result<String> {
    let out = Command::new("git")
        .arg("hash-object")
        .arg(path)
        .output()
        .context("running git hash-object")?;
    if !out.status.success() {
        bail!(
            "git hash-object {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn replay(bin: &Path, capture: &Path, entry: &Entry, ml: bool) -> Result<serde_json::Value> {
    let mut cmd = Command::new(bin);
    cmd.arg("--pcap").arg(capture);
    if ml {
        cmd.arg("--ml");
    }
    if entry.kind == Kind::Attack {
        let seconds = entry
            .slow_s
            .map_or(ATTACK_SECONDS.to_string(), |s| s.to_string());
        cmd.args(["--duration", &seconds]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("replay failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("reading replay's report")
}

fn row(entry: &Entry, report: &serde_json::Value) -> Row {
    let mut detectors: Vec<String> = Vec::new();
    let mut first: Option<f64> = None;
    for d in report["detections"].as_array().into_iter().flatten() {
        let name = d["detector"].as_str().unwrap_or_default().to_string();
        if !detectors.contains(&name) {
            detectors.push(name);
        }
        let at = d["seconds_after_start"].as_f64().unwrap_or(f64::MAX) - entry.attack_starts_s;
        first = Some(first.map_or(at, |f: f64| f.min(at)));
    }
    let packets = report["packets_replayed"].as_u64().unwrap_or(0);
    let dropped = report["packets_dropped"].as_u64().unwrap_or(0);
    let decisions = report["detections"].as_array().map_or(0, Vec::len);
    let pass = match entry.kind {
        Kind::Attack => {
            let within = entry.slow_s.map_or(WITHIN_S, f64::from);
            first.is_some_and(|t| t <= within)
        }
        Kind::Benign => decisions == 0,
    };
    Row {
        file: entry.file.clone(),
        class: entry.class.clone(),
        kind: entry.kind,
        role: entry.role.clone(),
        skipped: None,
        packets,
        sources: report["sources"].as_u64().unwrap_or(0),
        detectors,
        first_decision_s: first,
        decisions,
        dropped_share: if packets == 0 {
            0.0
        } else {
            dropped as f64 / packets as f64
        },
        pass,
    }
}

fn skipped(entry: &Entry, why: String) -> Row {
    Row {
        file: entry.file.clone(),
        class: entry.class.clone(),
        kind: entry.kind,
        role: entry.role.clone(),
        skipped: Some(why),
        packets: 0,
        sources: 0,
        detectors: Vec::new(),
        first_decision_s: None,
        decisions: 0,
        dropped_share: 0.0,
        pass: false,
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| capture | role | packets | sources | decided by | first decision | decisions | dropped | verdict |\n|---|---|---:|---:|---|---:|---:|---:|---|\n",
    );
    for r in rows {
        let verdict = match (&r.skipped, r.pass, r.kind) {
            (Some(why), _, _) => format!("skipped: {why}"),
            (None, true, Kind::Attack) => "detected".into(),
            // Decided, but after the bound: named apart from a miss.
            (None, false, Kind::Attack) if r.first_decision_s.is_some() => "LATE".into(),
            (None, false, Kind::Attack) => "MISSED".into(),
            (None, true, Kind::Benign) => "no decision".into(),
            (None, false, Kind::Benign) => "FALSE DECISION".into(),
        };
        let name = Path::new(&r.file)
            .file_name()
            .map_or(r.file.clone(), |n| n.to_string_lossy().into_owned());
        out += &format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:.1} % | {verdict} |\n",
            r.role,
            r.packets,
            r.sources,
            if r.detectors.is_empty() {
                "-".into()
            } else {
                r.detectors.join(", ")
            },
            r.first_decision_s
                .map_or("-".into(), |t| format!("{:.0} ms", t * 1000.0)),
            r.decisions,
            r.dropped_share * 100.0,
        );
    }
    out
}

/// Markers of the model card's section that `--card` fills.
const CARD_BEGIN: &str = "<!-- eval:begin -->";
const CARD_END: &str = "<!-- eval:end -->";

/// The model an evaluation file (models/*evaluation.json) describes, as the
/// card names it: "`version` (threshold T)". `train.py` keeps a card's
/// section only while it names the models it trains.
fn model_named(file: &str) -> Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let (Some(version), Some(threshold)) = (
        v["model"]["version"].as_str(),
        v["model"]["threshold"].as_f64(),
    ) else {
        bail!("{}: no model version and threshold", path.display());
    };
    Ok(format!("`{version}` (threshold {threshold:.4})"))
}

/// Puts the table between the card's markers, naming the models measured.
fn fill_card(card: &Path, table: &str, summary: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(card).with_context(|| format!("reading {}", card.display()))?;
    let (Some(begin), Some(end)) = (text.find(CARD_BEGIN), text.find(CARD_END)) else {
        bail!(
            "{} has no {CARD_BEGIN} ... {CARD_END} section",
            card.display()
        );
    };
    if end < begin {
        bail!("{}: {CARD_END} comes before {CARD_BEGIN}", card.display());
    }
    let section = format!(
        "{CARD_BEGIN}\nMeasured by `cargo xtask eval --ml` with models {} (per source) and {} (aggregate), alerting, beside the threshold detectors and the application layer: `ml` and `ml_aggregate` in \"decided by\" are the models'. The captures and their sources are listed in `tests/eval/captures.toml`.\n\n{table}\n{summary}\n",
        model_named("evaluation.json")?,
        model_named("aggregate_evaluation.json")?,
    );
    let filled = format!("{}{section}{}", &text[..begin], &text[end..]);
    std::fs::write(card, filled).with_context(|| format!("writing {}", card.display()))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut manifest, mut json, mut only) = (None, None, None, Vec::new());
    let (mut ml, mut card) = (false, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--card" => card = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--captures" => dir = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--manifest" => manifest = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--json" => json = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--ml" => ml = true,
            name if !name.starts_with('-') => only.push(name.to_string()),
            _ => usage(),
        }
    }
    let dir = dir.unwrap_or_else(|| usage());
    if card.is_some() && !ml {
        bail!("--card reports the models: it needs --ml");
    }
    let manifest = manifest
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("eval/captures.toml"));
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let Manifest { capture } =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let bin = std::env::current_exe()?
        .parent()
        .context("the binary's directory")?
        .join("replay");
    let mut rows = Vec::new();
    for entry in capture
        .iter()
        .filter(|e| only.is_empty() || only.iter().any(|o| e.file.contains(o.as_str())))
    {
        let path = dir.join(&entry.file);
        if !path.exists() {
            rows.push(skipped(entry, "missing".into()));
            continue;
        }
        let blob = match blob_id(&path) {
            Ok(blob) => blob,
            Err(e) => {
                rows.push(skipped(entry, format!("{e:#}")));
                continue;
            }
        };
        if blob != entry.blob {
            rows.push(skipped(entry, format!("blob {blob}, not {}", entry.blob)));
            continue;
        }
        eprintln!("eval: {}", entry.file);
        match replay(&bin, &path, entry, ml) {
            Ok(report) => rows.push(row(entry, &report)),
            Err(e) => rows.push(skipped(entry, format!("{e:#}"))),
        }
    }
    let table = table(&rows);
    print!("{table}");
    let passed = rows.iter().filter(|r| r.pass).count();
    let skipped = rows.iter().filter(|r| r.skipped.is_some()).count();
    let summary = format!(
        "{passed} of {} captures pass ({skipped} not replayed: missing, altered or failed)",
        rows.len()
    );
    println!("\n{summary}");
    if let Some(card) = card {
        fill_card(&card, &table, &summary)?;
    }
    if let Some(out) = json {
        std::fs::write(&out, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
