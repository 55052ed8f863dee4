//! The anomaly model's dataset: lab scenarios run with the agent in dry-run
//! (so attacks keep flowing), benign visitors in the background, and a
//! recorder that reads the kernel's per-source table once a second with the
//! agent's own `Stepper` and feature vector. Labels come from who sent the
//! traffic (the scenario's roles), never from a detector; what the threshold
//! detectors decided is recorded beside them, for comparison only.

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use anyhow::Result;
use ensuresec_agent::{clock, ml::steps::Stepper, store::Store};
use ensuresec_common::vector;

use crate::scenarios::{self, RunOptions, Scenario, Tick};

/// How often a step is taken: the agent's default `[ml] step`.
pub const STEP: Duration = Duration::from_secs(1);

/// Rows kept per step from spoofed sources: a random-source flood creates
/// thousands of one-packet sources a second, which would drown the rest.
pub const SPOOFED_PER_STEP: usize = 50;

/// The columns before the features.
pub const LEADING: [&str; 12] = [
    "pass",
    "scenario",
    "family",
    "step",
    "t_s",
    "source",
    "role",
    "label",
    "attacking",
    "threshold_source",
    "threshold_destination",
    "packets",
];

/// Whether the scenario's tool sends from random (spoofed) addresses: then
/// the attacker host's own address only carries its browsing.
fn spoofs(scenario: &Scenario) -> bool {
    scenario
        .attack
        .as_ref()
        .is_some_and(|a| a.tool == "t50" || a.args.iter().any(|x| x == "--rand-source"))
}

/// Who a source is in the lab, from its address.
pub fn role(address: &str, scenario: &Scenario) -> &'static str {
    let attacker = address == "10.77.66.6" || address == "fd77::66:6";
    match address {
        _ if attacker && scenario.attack.is_some() && !spoofs(scenario) => "attacker",
        _ if attacker => "probe",
        a if a.starts_with("10.77.1.") => "shopper",
        a if a.starts_with("10.77.2.") => "crowd",
        a if a.starts_with("10.77.3.") || a.starts_with("fd77::3:") => "visitor",
        a if a.starts_with("10.77.0.") || a.starts_with("fd77::") => "lab",
        // Neighbour discovery and router solicitations of the lab's hosts.
        a if a.starts_with("fe80:") => "neighbor",
        _ => "spoofed",
    }
}

/// Attack families: tools that do the same thing count as one family, so that
/// holding a family out holds out all of it.
pub fn family(scenario: &str) -> &str {
    match scenario {
        "masscan" | "port-scan" | "slow-scan" => "port-scan",
        "t50-flood" | "spoofed-syn-flood" | "spoofed-syn-unserved" | "many-sources" => {
            "spoofed-syn"
        }
        "reflection" | "reflection-burst" => "reflection",
        s => s,
    }
}

/// Records one scenario run's steps as CSV rows.
pub struct Recorder<'a> {
    pass: usize,
    scenario: &'a Scenario,
    stepper: Stepper,
    store: Option<Store>,
    window_ns: u64,
    next: Duration,
    step: u32,
    /// Decision target -> (detector, seconds into the run it was first seen).
    decisions: HashMap<String, (String, f64)>,
    pub rows: String,
    pub count: usize,
}

impl<'a> Recorder<'a> {
    pub fn new(pass: usize, scenario: &'a Scenario) -> Self {
        Self {
            pass,
            scenario,
            stepper: Stepper::new(),
            store: None,
            window_ns: 1_000_000_000,
            next: Duration::ZERO,
            step: 0,
            decisions: HashMap::new(),
            rows: String::new(),
            count: 0,
        }
    }

    pub fn tick(&mut self, t: &Tick) -> Result<()> {
        if t.elapsed < self.next {
            return Ok(());
        }
        self.next = t.elapsed + STEP;
        if self.store.is_none() {
            let store = Store::open(&t.lab.pins.pins)?;
            self.window_ns = store.detect_config()?.window_ns.max(1);
            self.store = Some(store);
        }
        let store = self.store.as_ref().expect("opened above");
        let steps = self.stepper.step(store, clock::mono_ns(), self.window_ns)?;
        let now_s = t.elapsed.as_secs_f64();
        for d in t.lab.decisions()? {
            let (Some(target), Some(detector)) = (d["target"].as_str(), d["detector"].as_str())
            else {
                continue;
            };
            self.decisions
                .entry(target.to_string())
                .or_insert((detector.to_string(), now_s));
        }
        let on_destination = self
            .decisions
            .iter()
            .find(|(target, _)| target.contains('/'))
            .map_or("", |(_, (d, _))| d.as_str())
            .to_string();
        let mut spoofed = 0;
        let mut order: Vec<usize> = (0..steps.len()).collect();
        fastrand::shuffle(&mut order);
        for i in order {
            let s = &steps[i];
            let address = ensuresec_agent::store::decisions::key_addr(&s.source).to_string();
            let role = role(&address, self.scenario);
            if role == "lab" {
                continue;
            }
            if role == "spoofed" {
                spoofed += 1;
                if spoofed > SPOOFED_PER_STEP {
                    continue;
                }
            }
            let attack = matches!(role, "attacker" | "spoofed") && t.attacking;
            let on_source = self.decisions.get(&address).map_or("", |(d, _)| d.as_str());
            let v = vector::of(&s.counts, s.secs);
            let _ = write!(
                self.rows,
                "{},{},{},{},{:.3},{},{},{},{},{},{},{}",
                self.pass,
                self.scenario.name,
                family(self.scenario.name),
                self.step,
                now_s,
                address,
                role,
                attack as u8,
                t.attacking as u8,
                on_source,
                on_destination,
                s.counts.packets,
            );
            for x in v {
                let _ = write!(self.rows, ",{x}");
            }
            self.rows.push('\n');
            self.count += 1;
        }
        self.step += 1;
        Ok(())
    }
}

/// The CSV header.
pub fn header() -> String {
    let mut cols: Vec<&str> = LEADING.to_vec();
    cols.extend(vector::FEATURES);
    cols.join(",") + "\n"
}

/// Runs `scenario` once for the dataset and returns its rows.
pub fn record(pass: usize, scenario: &Scenario) -> Result<(String, usize)> {
    let mut recorder = Recorder::new(pass, scenario);
    let mut on_tick = |t: &Tick| recorder.tick(t);
    scenarios::run_with(
        scenario,
        RunOptions {
            config_before: "[detect]\ndry_run = true\n",
            visitors: true,
            on_tick: Some(&mut on_tick),
        },
    )?;
    Ok((recorder.rows, recorder.count))
}

/// The schema file written next to the CSV.
pub fn schema(passes: usize, scenarios: &[&str]) -> serde_json::Value {
    let about: HashMap<&str, &str> = HashMap::from([
        (
            "pass",
            "which pass over the scenarios; passes run one after another, so a higher pass is later in time",
        ),
        ("scenario", "lab scenario (cargo xtask lab list)"),
        (
            "family",
            "attack family: scenarios with the same kind of attack share one",
        ),
        ("step", "step index within the run"),
        (
            "t_s",
            "seconds since the run started, at the end of the step",
        ),
        ("source", "source address: an identifier, never a feature"),
        (
            "role",
            "shopper, crowd, visitor, probe, neighbor (benign); attacker, spoofed (the attack tool's sources)",
        ),
        (
            "label",
            "1 when an attacker or spoofed source sent this while the attack tool ran, else 0",
        ),
        ("attacking", "1 while the attack tool was running"),
        (
            "threshold_source",
            "detector of a threshold decision on this source by the end of the step (dry-run), for comparison only",
        ),
        (
            "threshold_destination",
            "detector of a threshold decision on a destination by then, for comparison only",
        ),
        (
            "packets",
            "packets in the step (also in log_pps); for reading, not a feature",
        ),
    ]);
    let mut columns: Vec<serde_json::Value> = LEADING
        .iter()
        .map(|c| serde_json::json!({"name": c, "role": "metadata", "about": about[c]}))
        .collect();
    columns.extend(
        vector::FEATURES
            .iter()
            .map(|f| serde_json::json!({"name": f, "role": "feature", "type": "float32"})),
    );
    serde_json::json!({
        "file": "windows.csv",
        "generated_by": "cargo xtask dataset",
        "step_seconds": STEP.as_secs_f64(),
        "passes": passes,
        "scenarios": scenarios,
        "spoofed_rows_per_step": SPOOFED_PER_STEP,
        "features": vector::FEATURES,
        "columns": columns,
    })
}
