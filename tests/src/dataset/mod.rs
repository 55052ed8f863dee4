//! The anomaly models' datasets: lab scenarios run with the agent in dry-run
//! (so attacks keep flowing), benign visitors in the background, and a
//! recorder that reads the kernel's tables once a step with the agent's own
//! code: per source (`windows.csv`, the per-source model's) and per
//! protected destination (`destinations.csv`, the aggregate model's).
//! Labels come from who sent the traffic and where it went (the scenario's
//! roles and target), never from a detector; what the threshold detectors
//! decided is recorded beside them, for comparison only.

mod destinations;
mod sources;

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use anyhow::Result;
use ensuresec_agent::{clock, store::Store};

use crate::scenarios::{self, RunOptions, Scenario, Tick};

pub use sources::SPOOFED_PER_STEP;

/// How often a step is taken: the agent's default `[ml] step`.
pub const STEP: Duration = Duration::from_secs(1);

/// The two datasets a run feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sources,
    Destinations,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Sources, Kind::Destinations];

    pub const fn csv(self) -> &'static str {
        match self {
            Kind::Sources => "windows.csv",
            Kind::Destinations => "destinations.csv",
        }
    }

    pub const fn schema_file(self) -> &'static str {
        match self {
            Kind::Sources => "schema.json",
            Kind::Destinations => "schema-destinations.json",
        }
    }

    const fn subject_column(self) -> &'static str {
        match self {
            Kind::Sources => "source",
            Kind::Destinations => "destination",
        }
    }

    pub const fn features(self) -> &'static [&'static str] {
        match self {
            Kind::Sources => &ensuresec_common::vector::FEATURES,
            Kind::Destinations => &ensuresec_common::vector::destination::FEATURES,
        }
    }

    /// Roles whose unlabelled rows are benign traffic.
    const fn benign_roles(self) -> &'static [&'static str] {
        match self {
            Kind::Sources => &["shopper", "crowd", "visitor", "probe", "upstream"],
            Kind::Destinations => &["storefront", "host"],
        }
    }

    /// The columns before the features.
    pub fn leading(self) -> [&'static str; 12] {
        [
            "pass",
            "scenario",
            "family",
            "step",
            "t_s",
            self.subject_column(),
            "role",
            "label",
            "attacking",
            "threshold_source",
            "threshold_destination",
            "packets",
        ]
    }

    /// The CSV header.
    pub fn header(self) -> String {
        let mut cols: Vec<&str> = self.leading().to_vec();
        cols.extend(self.features());
        cols.join(",") + "\n"
    }
}

/// Rows of one dataset.
#[derive(Default)]
pub struct Table {
    pub rows: String,
    pub count: usize,
}

/// What a row says about its source or destination.
struct About<'a> {
    address: &'a str,
    role: &'a str,
    attack: bool,
    /// The detector of a threshold decision on a source, if any.
    on_source: &'a str,
    /// The detector of a threshold decision on a destination, if any.
    on_destination: &'a str,
    packets: u64,
}

impl Table {
    /// Appends a row: the leading columns, then the vector.
    fn push(&mut self, ctx: &StepContext, about: About, vector: &[f32]) {
        let _ = write!(
            self.rows,
            "{},{},{},{},{:.3},{},{},{},{},{},{},{}",
            ctx.pass,
            ctx.scenario.name,
            family(ctx.scenario.name),
            ctx.step,
            ctx.now_s,
            about.address,
            about.role,
            about.attack as u8,
            ctx.tick.attacking as u8,
            about.on_source,
            about.on_destination,
            about.packets,
        );
        for x in vector {
            let _ = write!(self.rows, ",{x}");
        }
        self.rows.push('\n');
        self.count += 1;
    }
}

/// What both recorders need to know about the step being taken.
struct StepContext<'a> {
    pass: usize,
    scenario: &'a Scenario,
    tick: &'a Tick<'a>,
    store: &'a Store,
    window_ns: u64,
    now_ns: u64,
    step: u32,
    now_s: f64,
    /// Decision target -> (detector, seconds into the run it was first seen).
    decisions: &'a HashMap<String, (String, f64)>,
    /// The detector of the first decision on a destination, if any.
    on_destination: &'a str,
}

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
        crate::upstreams::UPSTREAM_V4 | crate::upstreams::UPSTREAM_V6 => "upstream",
        a if a.starts_with("10.77.0.") || a.starts_with("fd77::") => "lab",
        // Neighbour discovery, duplicate address detection and router
        // solicitations of the lab's hosts: on the link, as the agent's
        // per-source model sees them (not scored).
        a if a.parse().is_ok_and(ensuresec_agent::ml::runner::on_link) => "neighbor",
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

/// Records one scenario run's steps into both datasets.
pub struct Recorder<'a> {
    pass: usize,
    scenario: &'a Scenario,
    sources: sources::Sources,
    store: Option<Store>,
    window_ns: u64,
    next: Duration,
    step: u32,
    decisions: HashMap<String, (String, f64)>,
    pub tables: [Table; 2],
}

impl<'a> Recorder<'a> {
    pub fn new(pass: usize, scenario: &'a Scenario) -> Self {
        Self {
            pass,
            scenario,
            sources: sources::Sources::default(),
            store: None,
            window_ns: 1_000_000_000,
            next: Duration::ZERO,
            step: 0,
            decisions: HashMap::new(),
            tables: [Table::default(), Table::default()],
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
        let ctx = StepContext {
            pass: self.pass,
            scenario: self.scenario,
            tick: t,
            store: self.store.as_ref().expect("opened above"),
            window_ns: self.window_ns,
            now_ns: clock::mono_ns(),
            step: self.step,
            now_s,
            decisions: &self.decisions,
            on_destination: &on_destination,
        };
        let [sources, dests] = &mut self.tables;
        self.sources.record(&ctx, sources)?;
        destinations::record(&ctx, dests)?;
        self.step += 1;
        Ok(())
    }
}

/// Runs `scenario` once for the datasets and returns its rows of each.
pub fn record(pass: usize, scenario: &Scenario) -> Result<[Table; 2]> {
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
    Ok(recorder.tables)
}

/// The schema file written next to a dataset's CSV.
pub fn schema(kind: Kind, passes: usize, scenarios: &[&str]) -> serde_json::Value {
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
            "destination",
            "protected destination address: an identifier, never a feature",
        ),
        (
            "role",
            match kind {
                Kind::Sources => {
                    "shopper, crowd, visitor, probe, upstream (benign); attacker, spoofed (the attack tool's sources)"
                }
                Kind::Destinations => {
                    "storefront (the attacks' target, IPv4 or IPv6) or host (another protected address)"
                }
            },
        ),
        (
            "label",
            match kind {
                Kind::Sources => {
                    "1 when an attacker or spoofed source sent this while the attack tool ran, else 0"
                }
                Kind::Destinations => {
                    "1 when this is the attack's target address while the attack tool ran, else 0"
                }
            },
        ),
        ("attacking", "1 while the attack tool was running"),
        (
            "threshold_source",
            "detector of a threshold decision on this source (on any source, for a destination) by the end of the step (dry-run), for comparison only",
        ),
        (
            "threshold_destination",
            match kind {
                Kind::Sources => {
                    "detector of a threshold decision on a destination by then, for comparison only"
                }
                Kind::Destinations => {
                    "detector of a threshold decision on this address by then, for comparison only"
                }
            },
        ),
        (
            "packets",
            "packets in the step or window (also in log_pps); for reading, not a feature",
        ),
    ]);
    let mut columns: Vec<serde_json::Value> = kind
        .leading()
        .iter()
        .map(|c| serde_json::json!({"name": c, "role": "metadata", "about": about[c]}))
        .collect();
    columns.extend(
        kind.features()
            .iter()
            .map(|f| serde_json::json!({"name": f, "role": "feature", "type": "float32"})),
    );
    let mut schema = serde_json::json!({
        "file": kind.csv(),
        "generated_by": "cargo xtask dataset",
        "step_seconds": STEP.as_secs_f64(),
        // The agent's default `[detect] window`, which the lab runs with.
        "window_seconds": 1.0,
        "passes": passes,
        "scenarios": scenarios,
        "benign_roles": kind.benign_roles(),
        "features": kind.features(),
        "columns": columns,
    });
    if kind == Kind::Sources {
        schema["spoofed_rows_per_step"] = SPOOFED_PER_STEP.into();
    }
    schema
}
