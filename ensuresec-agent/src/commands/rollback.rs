//! `ensuresec rollback`: lift every decision a detector made since a time,
//! or undo an operator's import, shown first and journaled as one operation.

use anyhow::{Context as _, Result, anyhow, bail};
use ensuresec_common::decisions::Detector;
use serde::Serialize;
use serde_json::json;

use super::{decisions::lifted_by_hand, journal::parse_since, operator::OperatorLog};
use crate::{
    cli::{OutputFormat, RollbackArgs},
    clock,
    detect::decide::{action_name, describe_action},
    journal::{Entry, Kind},
    output,
    pins::PinDir,
    recover::rollback,
    store::{Store, decisions::DecisionTarget},
};

#[derive(Serialize)]
struct Planned {
    target: String,
    action: &'static str,
    does: String,
    decided_at: String,
}

pub fn run(pins: &PinDir, log: &mut OperatorLog, args: &RollbackArgs) -> Result<()> {
    match (args.operation, &args.detector, &args.since) {
        (Some(op), None, None) => undo_import(pins, log, op, args.dry_run),
        (None, Some(detector), Some(since)) => by_detector(pins, log, detector, since, args),
        _ => bail!("rollback takes --detector D --since T, or --operation ID"),
    }
}

fn by_detector(
    pins: &PinDir,
    log: &mut OperatorLog,
    detector: &str,
    since: &str,
    args: &RollbackArgs,
) -> Result<()> {
    let detector_id = Detector::from_name(detector).ok_or_else(|| {
        let names: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
        anyhow!("`{detector}` is not a detector ({})", names.join(", "))
    })?;
    let since_ms = parse_since(since)?;
    let store = Store::open(pins)?;
    // Held from the listing to the lifts: what is shown is what is lifted.
    let w = store.write()?;
    let planned = rollback::decisions_of(&store, detector_id, since_ms / 1000)?;
    let d = detector_id.name();
    let rows: Vec<Planned> = planned
        .iter()
        .map(|(k, r)| Planned {
            target: DecisionTarget(*k).to_string(),
            action: action_name(r.action),
            does: describe_action(r),
            decided_at: clock::rfc3339(r.created_secs),
        })
        .collect();
    let mut table = vec![
        ["TARGET", "ACTION", "DOES", "DECIDED"]
            .map(String::from)
            .to_vec(),
    ];
    table.extend(rows.iter().map(|r| {
        vec![
            r.target.clone(),
            r.action.into(),
            r.does.clone(),
            r.decided_at.clone(),
        ]
    }));
    output::print(args.output, &rows, table);
    if args.dry_run || planned.is_empty() {
        if args.output == OutputFormat::Table {
            let verb = if args.dry_run {
                "would be lifted (dry run)"
            } else {
                "to lift"
            };
            println!(
                "{} decisions of {d} since {} {verb}",
                planned.len(),
                clock::rfc3339_ms(since_ms)
            );
        }
        return Ok(());
    }
    let lifted = rollback::lift(&w, &planned)?;
    let command = format!("rollback --detector {d} --since {since}");
    let summary =
        json!({"detector": d, "since": clock::rfc3339_ms(since_ms), "lifted": lifted.len()});
    let operation = log.operation(&command, &summary);
    let mut entries = vec![{
        let mut e = log.entry(Kind::Rollback, d).detail(summary);
        e.target = None;
        e.detector = Some(d.to_string());
        e.operation = operation;
        e
    }];
    let mut changes = Vec::new();
    for (key, record) in &lifted {
        let (mut entry, state): (Entry, _) = lifted_by_hand(log, key, record);
        entry.operation = operation;
        entries.push(entry);
        changes.extend(state);
    }
    log.record(&entries, &changes);
    if args.output == OutputFormat::Table {
        println!("lifted {} decisions of {d}", lifted.len());
    }
    Ok(())
}

fn undo_import(pins: &PinDir, log: &mut OperatorLog, op: i64, dry_run: bool) -> Result<()> {
    let journal = log
        .journal()
        .context("rollback --operation needs the journal, which could not be opened")?;
    let operation = journal
        .operation(op)?
        .ok_or_else(|| anyhow!("the journal has no operation {op}"))?;
    if !operation.command.starts_with("block import") {
        bail!(
            "operation {op} is `{}`: only an import can be undone this way",
            operation.command
        );
    }
    let store = Store::open(pins)?;
    let w = store.write()?;
    let undo = rollback::plan_undo(&store, journal, op)?;
    println!(
        "operation {op} ({}, by {} at {}): {} blocks it added to remove, {} it replaced to put back, {} gone since",
        operation.command,
        operation.actor,
        clock::rfc3339_ms(operation.at_ms),
        undo.removed.len(),
        undo.restored.len(),
        undo.gone
    );
    if dry_run {
        println!("dry run: nothing changed");
        return Ok(());
    }
    rollback::apply_undo(&w, &undo)?;
    let reasons = w.reasons()?;
    let mut changes = Vec::with_capacity(undo.removed.len() + undo.restored.len());
    for t in undo.removed.iter().chain(&undo.restored) {
        changes.push(super::operator::list_change(&store, &reasons, &t.parse()?)?);
    }
    let mut entry = log.entry(Kind::Rollback, &operation.command).detail(json!({
        "operation": op,
        "removed": undo.removed.len(),
        "restored": undo.restored.len(),
        "gone": undo.gone,
    }));
    entry.target = None;
    entry.operation = Some(op);
    log.record(&[entry], &changes);
    println!("undone");
    Ok(())
}
