//! `ensuresec block ...` and `ensuresec allow ...`: they work on the pinned maps,
//! so they need no agent.

use std::{collections::HashMap, time::Duration};

use anyhow::Result;
use ensuresec_common::{
    decisions::DecisionKey,
    entry::Target,
    maps::{FLAG_ALLOW, FLAG_ALLOW_FROM_CONFIG, FLAG_BAN, FLAG_BLOCK, FLAGS_BLOCKING},
    ttl::{format_remaining, parse_ttl},
};
use serde::Serialize;

use serde_json::json;

use super::operator::{OperatorLog, list_change};
use crate::{
    cli::OutputFormat,
    clock,
    detect::decide::{self, Lift, detector_name},
    edit::Op,
    journal::Kind,
    output,
    pins::PinDir,
    store::{Listed, Reasons, Store, Writer, decisions::DecisionTarget, validate_reason},
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Block,
    Allow,
}

fn parse_target(text: &str) -> Result<Target> {
    Ok(text.parse::<Target>()?)
}

fn parse_opt_ttl(ttl: Option<&str>) -> Result<Option<Duration>> {
    Ok(ttl.map(parse_ttl).transpose()?)
}

fn intern(w: &Writer, reasons: &mut Reasons, text: Option<&str>) -> Result<u32> {
    match text {
        None => Ok(0),
        Some(t) => Ok(w.intern_reason(reasons, t, || w.reason_ids_in_use())?),
    }
}

pub fn block_add(
    pins: &PinDir,
    log: &mut OperatorLog,
    target: &str,
    ttl: Option<&str>,
    reason: Option<&str>,
) -> Result<()> {
    let target = parse_target(target)?;
    let ttl = parse_opt_ttl(ttl)?;
    if let Some(r) = reason {
        validate_reason(r)?;
    }
    let store = Store::open(pins)?;
    let w = store.write()?;
    let mut reasons = w.reasons()?;
    let reason_id = intern(&w, &mut reasons, reason)?;
    let op = Op::Block {
        expires_at_ns: clock::expiry_for(ttl),
        reason_id,
        now_secs: clock::unix_secs(),
    };
    w.edit(&[(target, op)])?;
    let change = list_change(&store, &reasons, &target)?;
    let entry = log.entry(Kind::Block, target).detail(json!({
        "ttl": ttl.map(format_remaining),
        "reason": reason,
    }));
    log.record(&[entry], &[change]);
    let until = ttl.map_or("until removed".to_string(), |t| {
        format!("for {}", format_remaining(t))
    });
    println!("blocked {target} {until}");
    warn_if_allowlisted(&store, &target)?;
    Ok(())
}

/// Tells the operator when an allowlist entry overrides the block just added.
fn warn_if_allowlisted(store: &Store, target: &Target) -> Result<()> {
    let Some(addr) = target.addr() else {
        return Ok(());
    };
    if let Some(l) = store.allowlisted_by(addr)? {
        eprintln!(
            "note: {} is on the allowlist, which wins: {target} is not dropped",
            l.target
        );
    }
    Ok(())
}

/// Removes the operator's block and lifts the agent's ban of the target, if
/// any, as `decisions rm` would: the operator has the last word.
pub fn block_rm(pins: &PinDir, log: &mut OperatorLog, target: &str) -> Result<()> {
    let target = parse_target(target)?;
    let store = Store::open(pins)?;
    let w = store.write()?;
    let flags = w.entries_for(&target)?.map_or(0, |e| e.flags);
    let (mut entries, mut changes) = (Vec::new(), Vec::new());
    if flags & FLAG_BAN != 0
        && let Some(addr) = target.addr()
    {
        let key = DecisionTarget::source(addr).0;
        match w.decision(&key)? {
            Some(record) => {
                decide::lift(&w, &key, &record, Lift::ByHand)?;
                let (entry, lifted) = super::decisions::lifted_by_hand(log, &key, &record);
                entries.push(entry);
                changes.extend(lifted);
            }
            None => {
                w.edit(&[(target, Op::Unban)])?;
            }
        }
        println!("lifted the agent's ban of {target}");
    }
    if flags & FLAG_BLOCK != 0 || flags & FLAG_BAN == 0 {
        w.edit(&[(target, Op::Unblock)])?;
        entries.push(log.entry(Kind::Unblock, target));
        println!("unblocked {target}");
    }
    changes.push(list_change(&store, &w.reasons()?, &target)?);
    log.record(&entries, &changes);
    Ok(())
}

pub fn allow_add(pins: &PinDir, log: &mut OperatorLog, target: &str) -> Result<()> {
    let target = parse_target(target)?;
    let store = Store::open(pins)?;
    let op = Op::Allow {
        from_config: false,
        now_secs: clock::unix_secs(),
    };
    let w = store.write()?;
    w.edit(&[(target, op)])?;
    let change = list_change(&store, &w.reasons()?, &target)?;
    log.record(&[log.entry(Kind::Allow, target)], &[change]);
    println!("allowlisted {target}");
    Ok(())
}

pub fn allow_rm(pins: &PinDir, log: &mut OperatorLog, target: &str) -> Result<()> {
    let target = parse_target(target)?;
    let store = Store::open(pins)?;
    let w = store.write()?;
    w.edit(&[(target, Op::Unallow)])?;
    let change = list_change(&store, &w.reasons()?, &target)?;
    log.record(&[log.entry(Kind::Unallow, target)], &[change]);
    println!("removed {target} from the allowlist");
    Ok(())
}

/// One row of `block list` / `allow list -o json`.
#[derive(Serialize)]
pub struct ListRow {
    pub entry: String,
    pub family: &'static str,
    pub kind: &'static str,
    /// Who blocks it: `operator`, `agent` (an automatic ban) or both.
    pub owner: &'static str,
    /// The operator's reason; for the agent's ban, its detector.
    pub reason: Option<String>,
    pub added_at: String,
    /// Wall-clock time the block ends; null when it never does.
    pub expires_at: Option<String>,
    pub seconds_left: Option<u64>,
    pub from_config: bool,
}

/// Who owns the block of an entry.
fn owner(flags: u32) -> &'static str {
    match (flags & FLAG_BLOCK != 0, flags & FLAG_BAN != 0) {
        (true, true) => "operator+agent",
        (false, true) => "agent",
        _ => "operator",
    }
}

pub fn rows(store: &Store, which: Which) -> Result<Vec<ListRow>> {
    let flag = match which {
        Which::Block => FLAGS_BLOCKING,
        Which::Allow => FLAG_ALLOW,
    };
    let reasons = store.reasons()?;
    // The detector behind each ban, from the decisions (a few thousand at most).
    let ban_detectors: HashMap<DecisionKey, u32> = if which == Which::Block {
        store
            .decisions()?
            .into_iter()
            .map(|(k, r)| (k, r.detector))
            .collect()
    } else {
        HashMap::new()
    };
    let ban_reason = |l: &Listed| {
        let key = DecisionTarget::source(l.target.addr()?).0;
        let detector = ban_detectors
            .get(&key)
            .map_or("unknown", |d| detector_name(*d));
        Some(format!("auto: {detector}"))
    };
    let (now_boot, now_unix) = (clock::mono_ns(), clock::unix_secs());
    let mut entries: Vec<Listed> = store
        .entries()?
        .into_iter()
        .filter(|l| l.entry.flags & flag != 0)
        .collect();
    entries.sort_unstable_by_key(|l| l.target);
    Ok(entries
        .into_iter()
        .map(|l| {
            let blocking = which == Which::Block;
            let left = l
                .entry
                .block_ends_ns()
                .filter(|_| blocking)
                .and_then(|ends| clock::remaining(ends, now_boot));
            let operator_reason = reasons.text(l.entry.reason_id).map(str::to_string);
            let reason = match (blocking, l.entry.flags & FLAG_BLOCK != 0) {
                (false, _) => None,
                (true, true) => operator_reason,
                (true, false) => ban_reason(&l),
            };
            ListRow {
                entry: l.target.to_string(),
                family: l.target.family(),
                kind: l.target.kind(),
                owner: owner(l.entry.flags),
                reason,
                added_at: clock::rfc3339(l.entry.added_at_secs),
                expires_at: left.map(|d| clock::rfc3339(now_unix + d.as_secs())),
                seconds_left: left.map(|d| d.as_secs()),
                from_config: l.entry.flags & FLAG_ALLOW_FROM_CONFIG != 0,
            }
        })
        .collect())
}

pub fn list(pins: &PinDir, which: Which, format: OutputFormat) -> Result<()> {
    let store = Store::open(pins)?;
    let rows = rows(&store, which)?;
    let mut table = vec![
        match which {
            Which::Block => vec!["ENTRY", "OWNER", "REASON", "ADDED", "TIME LEFT"],
            Which::Allow => vec!["ENTRY", "SOURCE", "ADDED"],
        }
        .into_iter()
        .map(String::from)
        .collect(),
    ];
    for r in &rows {
        table.push(match which {
            Which::Block => vec![
                r.entry.clone(),
                r.owner.into(),
                r.reason.clone().unwrap_or_else(|| "-".into()),
                r.added_at.clone(),
                match r.seconds_left {
                    None => "never expires".into(),
                    Some(0) => "expired".into(),
                    Some(s) => format_remaining(Duration::from_secs(s)),
                },
            ],
            Which::Allow => vec![
                r.entry.clone(),
                if r.from_config { "config" } else { "cli" }.into(),
                r.added_at.clone(),
            ],
        });
    }
    output::print(format, &rows, table);
    Ok(())
}
