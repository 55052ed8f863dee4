//! `ensuresec decisions list|rm`: the agent's automatic decisions, read from
//! their pinned map, so they work with the agent down.

use std::time::Duration;

use anyhow::{Result, anyhow};
use ensuresec_common::{
    decisions::{DecisionKey, DecisionRecord, SCOPE_SOURCE},
    ttl::format_remaining,
};
use serde::Serialize;

use crate::{
    app::detect::LineAt,
    cli::OutputFormat,
    clock,
    detect::{
        app_evidence,
        decide::{self, action_name, detector_name},
        evidence,
    },
    journal::{Entry, Kind, StateChange},
    output,
    pins::PinDir,
    store::{
        Store,
        decisions::{DecisionTarget, key_addr},
    },
};

use super::operator::OperatorLog;

#[derive(Serialize)]
pub struct DecisionRow {
    pub target: String,
    /// The storefront an application detection was made for.
    pub storefront: Option<String>,
    pub detector: &'static str,
    pub action: &'static str,
    /// Count observed in the window, and the threshold it reached (for the
    /// anomaly model: score and threshold in millionths).
    pub observed: u64,
    pub threshold: u64,
    /// The evidence in words (the model's score and top features).
    pub evidence: String,
    /// What it does, in words: "drops reflected_udp", "limits syn to 100/s".
    pub does: String,
    /// Rate of a throttle or budget.
    pub rate: Option<u32>,
    /// For a throttle: the classes of the source's packets it limits and drops.
    pub limits: Vec<&'static str>,
    pub drops: Vec<&'static str>,
    pub strikes: u32,
    pub decided_at: String,
    pub seconds_left: u64,
    /// The decision's whole TTL.
    pub ttl_seconds: u64,
    /// From the attack's first packet in its window to the decision.
    pub time_to_mitigate_ms: f64,
    /// Application decisions: sample paths and user agent, accounts (as
    /// pseudonyms), from the agent's evidence file.
    pub details: Option<String>,
    pub accounts: Vec<String>,
    /// The log line that decided (log and byte offset).
    pub line: Option<LineAt>,
}

pub fn rows(store: &Store) -> Result<Vec<DecisionRow>> {
    let now = clock::mono_ns();
    // Read in the order the agent writes, backwards: the storefront's name
    // before the decision, the evidence after it. A decision read first
    // has its name in the reasons read next.
    let decisions = store.decisions()?;
    let reasons = store.reasons()?;
    let details = app_evidence::read(store.pins());
    let mut rows: Vec<DecisionRow> = decisions
        .into_iter()
        .filter(|(_, r)| r.expires_at_ns > now)
        .map(|(key, r)| {
            let key_text = DecisionTarget(key).to_string();
            let storefront = (r.storefront_id != 0)
                .then(|| reasons.text(r.storefront_id).map(String::from))
                .flatten();
            // A storefront as a whole is shown by its name.
            let target = match (DecisionTarget(key).storefront_id(), &storefront) {
                (Some(_), Some(name)) => format!("storefront:{name}"),
                _ => key_text.clone(),
            };
            // Evidence of an earlier decision on the same target is not this one's.
            let detail = details.get(&key_text).filter(|d| {
                d.detector == detector_name(r.detector) && d.decided_secs == r.created_secs
            });
            DecisionRow {
                details: detail.map(|d| d.text.clone()),
                accounts: detail.map(|d| d.accounts.clone()).unwrap_or_default(),
                line: detail.and_then(|d| d.line.clone()),
                target,
                storefront,
                detector: detector_name(r.detector),
                action: action_name(r.action),
                observed: r.evidence[0],
                threshold: r.evidence[1],
                evidence: decide::describe_evidence(&r),
                does: decide::describe_action(&r),
                rate: (r.rate != 0).then_some(r.rate),
                limits: evidence::class_names(r.limit_classes),
                drops: evidence::class_names(r.drop_classes),
                strikes: r.strikes,
                decided_at: clock::rfc3339(r.created_secs),
                seconds_left: (r.expires_at_ns - now) / 1_000_000_000,
                ttl_seconds: r
                    .expires_at_ns
                    .saturating_sub(r.decided_ns)
                    .div_ceil(1_000_000_000),
                time_to_mitigate_ms: r.decided_ns.saturating_sub(r.first_seen_ns) as f64 / 1e6,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(rows)
}

pub fn list(pins: &PinDir, format: OutputFormat) -> Result<()> {
    let store = Store::open(pins)?;
    let rows = rows(&store)?;
    let mut table = vec![
        [
            "TARGET",
            "STOREFRONT",
            "DETECTOR",
            "ACTION",
            "DOES",
            "EVIDENCE",
            "STRIKES",
            "TIME LEFT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &rows {
        table.push(vec![
            r.target.clone(),
            r.storefront.clone().unwrap_or_else(|| "-".into()),
            r.detector.into(),
            r.action.into(),
            r.does.clone(),
            r.evidence.clone(),
            r.strikes.to_string(),
            format_remaining(Duration::from_secs(r.seconds_left)),
        ]);
    }
    output::print(format, &rows, table);
    Ok(())
}

/// The key of a target as `decisions list` shows it (`storefront:NAME` is
/// looked up by its name).
fn parse_target(store: &Store, target: &str) -> Result<DecisionKey> {
    if let Some(name) = target.strip_prefix("storefront:") {
        let reasons = store.reasons()?;
        let key = store.decisions()?.into_iter().map(|(k, _)| k).find(|k| {
            DecisionTarget(*k)
                .storefront_id()
                .is_some_and(|id| reasons.text(id) == Some(name))
        });
        return key.ok_or_else(|| anyhow!("no storefront-wide decision on {name}"));
    }
    Ok(target.parse::<DecisionTarget>().map_err(|e| anyhow!(e))?.0)
}

/// The journal's entry for a decision an operator lifted, and the state it
/// leaves (no decision; for a source, no strikes either).
pub fn lifted_by_hand(
    log: &OperatorLog,
    key: &DecisionKey,
    record: &DecisionRecord,
) -> (Entry, Vec<StateChange>) {
    let target = DecisionTarget(*key);
    let mut entry = log.entry(Kind::DecisionRm, target);
    entry.detector = Some(detector_name(record.detector).to_string());
    entry.action = Some(action_name(record.action).to_string());
    let mut changes = vec![StateChange::DecisionGone(target.to_string())];
    if key.scope == SCOPE_SOURCE {
        changes.push(StateChange::OffenderGone(key_addr(&key.addr).to_string()));
    }
    (entry, changes)
}

pub fn rm(pins: &PinDir, log: &mut OperatorLog, target: &str) -> Result<()> {
    let store = Store::open(pins)?;
    let key = parse_target(&store, target)?;
    let record = store
        .decision(&key)?
        .ok_or_else(|| anyhow!("no automatic decision on {target}"))?;
    decide::lift(&store.write()?, &key, &record, decide::Lift::ByHand)?;
    let (entry, changes) = lifted_by_hand(log, &key, &record);
    log.record(&[entry], &changes);
    println!(
        "lifted the {} on {target} ({})",
        action_name(record.action),
        detector_name(record.detector)
    );
    Ok(())
}
