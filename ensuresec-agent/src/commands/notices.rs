//! `ensuresec notices list`: the notices queued, delivered and given up,
//! from the journal's outbox (the agent need not run).

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{cli::OutputFormat, clock, journal::Journal, output};

#[derive(Serialize)]
struct Row {
    id: i64,
    channel: String,
    incident: i64,
    event: String,
    key: String,
    state: &'static str,
    queued: String,
    delivered: Option<String>,
    attempts: u32,
    next_try: Option<String>,
    last_error: Option<String>,
}

pub fn list(state_dir: &std::path::Path, limit: usize, format: OutputFormat) -> Result<()> {
    let journal = Journal::open_read_only(state_dir)?.with_context(|| {
        format!(
            "no journal in {} (the agent has not run with this state directory)",
            state_dir.display()
        )
    })?;
    let rows: Vec<Row> = journal
        .notices(limit)?
        .into_iter()
        .map(|n| {
            let state = match (n.delivered_ms, n.failed_ms) {
                (Some(_), _) => "delivered",
                (None, Some(_)) => "given up",
                (None, None) => "pending",
            };
            Row {
                id: n.id,
                channel: n.channel,
                incident: n.incident,
                event: n.event,
                key: n.key,
                state,
                queued: clock::rfc3339_ms(n.created_ms),
                delivered: n.delivered_ms.map(clock::rfc3339_ms),
                attempts: n.attempts,
                next_try: (state == "pending").then(|| clock::rfc3339_ms(n.next_ms)),
                last_error: n.last_error,
            }
        })
        .collect();
    let mut table = vec![
        [
            "ID",
            "CHANNEL",
            "INCIDENT",
            "EVENT",
            "STATE",
            "QUEUED",
            "ATTEMPTS",
            "LAST ERROR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &rows {
        table.push(vec![
            r.id.to_string(),
            r.channel.clone(),
            format!("#{}", r.incident),
            r.event.clone(),
            r.state.into(),
            r.queued.clone(),
            r.attempts.to_string(),
            r.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    if format == OutputFormat::Table && rows.is_empty() {
        eprintln!("no notices");
    }
    output::print(format, &rows, table);
    Ok(())
}
