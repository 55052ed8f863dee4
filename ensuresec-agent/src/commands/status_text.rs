//! `ensuresec status` for a person: the lines and tables of a `Status`.

use super::status::{JournalStatus, Status};
use super::status_journal::print_response;
use crate::{detect::state::DetectState, ml::state::MlState, output};

/// Prints `s` as text; `state_dir` is where the journal was looked for.
pub fn print(s: &Status, state_dir: &std::path::Path) {
    println!("pin directory: {}", s.pin_dir);
    match s.agent_pid {
        Some(pid) => println!("agent: running (pid {pid})"),
        None => {
            println!("agent: not running (the filter works without it; TTLs expire in the kernel)")
        }
    }
    match &s.journal {
        Some(JournalStatus { error: Some(e), .. }) => println!("journal: {e}"),
        Some(j) => println!(
            "journal: {} ({} entries, {:.1} MiB, newest {})",
            j.path,
            j.entries,
            j.bytes as f64 / (1u64 << 20) as f64,
            j.last_entry_at.as_deref().unwrap_or("-")
        ),
        None => println!(
            "journal: none in {} (the agent creates it; nothing survives a reboot without it)",
            state_dir.display()
        ),
    }
    if let Some(h) = &s.health {
        if h.issues.is_empty() {
            println!("health: ok");
        }
        for i in &h.issues {
            println!("health: {}: {}", i.what, i.detail);
        }
    }
    if let Some(r) = &s.response {
        print_response(r);
    }
    println!();
    let mut rows = vec![vec![
        "INTERFACE".into(),
        "MODE".into(),
        "PROGRAM".into(),
        "STATE".into(),
    ]];
    for i in &s.interfaces {
        rows.push(vec![
            i.iface.clone(),
            i.mode.into(),
            i.program_id.map_or("-".into(), |p| p.to_string()),
            i.state.into(),
        ]);
    }
    print!("{}", output::table(&rows));
    println!();
    let policy = if s.port_policy.enabled {
        format!("on (tcp {}; udp {})", s.port_policy.tcp, s.port_policy.udp)
    } else {
        "off".to_string()
    };
    println!("port policy: {policy}");
    println!("detection: {}", describe_detection(s));
    println!(
        "kernel memory: {:.1} MiB in {} maps (status -o json gives each)",
        s.maps_kernel_bytes as f64 / (1u64 << 20) as f64,
        s.maps.len()
    );
    if let Some(m) = &s.anomaly_model {
        println!("anomaly model: {}", describe_model(m));
    }
    if let Some(m) = &s.aggregate_model {
        println!("aggregate anomaly model: {}", describe_model(m));
    }
    println!();
    let mut rows = vec![
        ["LIST", "FAMILY", "KIND", "ENTRIES", "EXPIRED", "CAPACITY"]
            .map(String::from)
            .to_vec(),
    ];
    for l in &s.lists {
        rows.push(vec![
            l.list.into(),
            l.family.into(),
            l.kind.into(),
            l.entries.to_string(),
            l.expired.to_string(),
            l.capacity.to_string(),
        ]);
    }
    print!("{}", output::table(&rows));
    println!();
    let mut rows = vec![
        ["VERDICT", "REASON", "PACKETS", "BYTES"]
            .map(String::from)
            .to_vec(),
    ];
    for c in s.counters.iter().filter(|c| c.packets > 0) {
        rows.push(vec![
            c.verdict.into(),
            c.reason.into(),
            c.packets.to_string(),
            c.bytes.to_string(),
        ]);
    }
    print!("{}", output::table(&rows));
}

/// The detection line: what the agent protects, or why nothing is decided.
fn describe_detection(s: &Status) -> String {
    let dry = |d: &DetectState| if d.dry_run { " (dry run)" } else { "" };
    match (s.agent_pid, &s.detecting, s.detection) {
        (Some(_), Some(d), true) if !d.protect.is_empty() => {
            format!("on for {}{}", d.protect.join(", "), dry(d))
        }
        (Some(_), Some(d), false) if !d.protect.is_empty() => format!(
            "the agent protects {} but the kernel's feature counting is off (starting?)",
            d.protect.join(", ")
        ),
        (Some(_), Some(_), _) => "off (the agent's config has no [[protect]] block)".into(),
        (Some(_), None, _) => "the agent is starting".into(),
        (None, _, true) => {
            "features are counted in the kernel, but no agent runs to decide on them".into()
        }
        (None, _, false) => "off (no agent with [[protect]] blocks runs)".into(),
    }
}

/// "loaded ae15-... (threshold 0.0073; 1200 scored, 3 flagged)", or the error.
fn describe_model(m: &MlState) -> String {
    let counts = format!("{} scored, {} flagged", m.scored, m.flagged);
    match (m.state.as_str(), &m.error, &m.version) {
        ("loaded", _, Some(v)) => format!(
            "{v} from {} (threshold {}; {counts})",
            m.model.display(),
            m.threshold.map_or("-".into(), |t| t.to_string())
        ),
        ("error", Some(e), Some(v)) => format!("{e}; still scoring with {v} ({counts})"),
        ("error", Some(e), None) => format!("{e}; not scoring, threshold detectors only"),
        _ => format!("no usable model at {} yet", m.model.display()),
    }
}
