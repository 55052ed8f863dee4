//! `ensuresec journal`: what the agent decided and operators changed, read
//! from the journal (the agent need not run).

use anyhow::{Context as _, Result, bail};

use crate::{
    cli::{JournalArgs, OutputFormat},
    clock,
    journal::{Journal, query::Filter},
    output,
};

/// `2h` (that long ago) or an RFC 3339 time, as wall-clock ms.
pub fn parse_since(text: &str) -> Result<u64> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(clock::unix_ms().saturating_sub(ago.as_millis() as u64));
    }
    let at = humantime::parse_rfc3339_weak(text).with_context(|| {
        format!("--since `{text}` is neither a time ago (2h, 3d) nor an RFC 3339 time")
    })?;
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64)
}

/// One line's summary of an entry's details.
fn summary(detail: &serde_json::Value) -> String {
    let Some(map) = detail.as_object() else {
        return detail.to_string();
    };
    let mut parts = Vec::new();
    for key in [
        "does", "evidence", "reason", "ttl", "file", "entries", "why", "error", "kind", "state",
        "incident", "channel", "event",
    ] {
        match map.get(key) {
            Some(serde_json::Value::String(s)) => parts.push(format!("{key}: {s}")),
            Some(serde_json::Value::Null) | None => {}
            Some(v) => parts.push(format!("{key}: {v}")),
        }
    }
    parts.join("; ")
}

pub fn show(state_dir: &std::path::Path, args: &JournalArgs) -> Result<()> {
    let filter = Filter {
        since_ms: args.since.as_deref().map(parse_since).transpose()?,
        address: args.address.clone(),
        detector: args.detector.clone(),
        limit: Some(args.limit),
    };
    let Some(journal) = Journal::open_read_only(state_dir)? else {
        bail!(
            "no journal in {} (the agent has not run with this state directory; --state-dir names another)",
            state_dir.display()
        );
    };
    let rows = journal.entries(&filter)?;
    let mut table = vec![
        [
            "TIME", "KIND", "BY", "TARGET", "DETECTOR", "ACTION", "DETAIL",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &rows {
        let e = &r.entry;
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        table.push(vec![
            clock::rfc3339_ms(e.at_ms),
            e.kind.to_string(),
            e.actor.clone(),
            dash(&e.target),
            dash(&e.detector),
            dash(&e.action),
            summary(&e.detail),
        ]);
    }
    if args.output == OutputFormat::Table && rows.is_empty() {
        eprintln!("no journal entries match");
    }
    output::print(args.output, &rows, table);
    Ok(())
}
