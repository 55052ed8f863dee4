//! `ensuresec block import` and `block export`: a list file (plain, netset,
//! Spamhaus) or ensuresec's own JSON export, all or nothing, journaled as
//! one operation that remembers what each entry held before.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use ensuresec_common::{
    entry::Target,
    import::{self, Format},
    maps::{FLAG_BLOCK, REASON_TEXT_MAX},
    ttl::parse_ttl,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::operator::OperatorLog;
use crate::{
    clock,
    edit::{self, Op},
    journal::{Kind, StateChange, operations::Before, state::ListRow},
    pins::PinDir,
    store::{Store, validate_reason},
};

/// What `block import --format` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    Lines(Format),
    /// `block export`'s output: reasons, times added and expiries kept.
    Json,
}

impl std::str::FromStr for ImportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(ImportFormat::Json),
            other => other
                .parse()
                .map(ImportFormat::Lines)
                .map_err(|e| format!("{e}, or json")),
        }
    }
}

impl std::fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportFormat::Lines(format) => write!(f, "{format}"),
            ImportFormat::Json => f.write_str("json"),
        }
    }
}

/// One operator block as `block export` writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exported {
    pub entry: String,
    pub reason: Option<String>,
    /// RFC 3339.
    pub added_at: String,
    /// RFC 3339; null blocks until removed.
    pub expires_at: Option<String>,
}

/// A block to add: target, reason text, wall-clock expiry (ms) and time
/// added.
struct Wanted {
    target: Target,
    reason: Option<String>,
    expires_ms: Option<u64>,
    added_secs: u64,
}

fn rfc3339_secs(text: &str, what: &str, entry: &str) -> Result<u64> {
    let t = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("{entry}: {what} `{text}` is not an RFC 3339 time"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs())
}

fn read_json(file: &Path, room: usize) -> Result<Vec<Wanted>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let rows: Vec<Exported> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an ensuresec block export", file.display()))?;
    if rows.len() > room {
        bail!(
            "{}: {} entries, more than the lists hold ({room})",
            file.display(),
            rows.len()
        );
    }
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = || format!("{} entry {}", file.display(), i + 1);
            let target: Target = r.entry.parse().with_context(at)?;
            if let Some(reason) = &r.reason {
                validate_reason(reason).with_context(at)?;
            }
            let expires_ms = r
                .expires_at
                .as_deref()
                .map(|t| rfc3339_secs(t, "expires_at", &at()).map(|s| s * 1000))
                .transpose()?;
            Ok(Wanted {
                target,
                reason: r.reason,
                expires_ms,
                added_secs: rfc3339_secs(&r.added_at, "added_at", &at())?,
            })
        })
        .collect()
}

fn read_lines(file: &Path, format: Format, room: usize) -> Result<Vec<Wanted>> {
    let reader = std::fs::File::open(file)
        .map(std::io::BufReader::new)
        .with_context(|| format!("reading {}", file.display()))?;
    let entries = import::parse_reader(&file.display().to_string(), reader, format, room)?;
    let now = clock::unix_secs();
    Ok(entries
        .into_iter()
        .map(|e| Wanted {
            target: e.target,
            reason: e
                .label
                .map(|label| truncate(&format!("{format} {label}"), REASON_TEXT_MAX).to_string()),
            expires_ms: None,
            added_secs: now,
        })
        .collect())
}

pub fn import(
    pins: &PinDir,
    log: &mut OperatorLog,
    file: &Path,
    format: ImportFormat,
    ttl: Option<&str>,
    reason: Option<&str>,
) -> Result<()> {
    let ttl: Option<Duration> = ttl.map(parse_ttl).transpose()?;
    if let Some(r) = reason {
        validate_reason(r)?;
    }
    let store = Store::open(pins)?;
    let caps = store.capacities;
    let room = [caps.exact_v4, caps.exact_v6, caps.cidr_v4, caps.cidr_v6]
        .iter()
        .map(|c| *c as usize)
        .sum();
    let mut wanted = match format {
        ImportFormat::Json => read_json(file, room)?,
        ImportFormat::Lines(f) => read_lines(file, f, room)?,
    };
    let lines = wanted.len();
    // The flags say for all: a TTL from now, one reason.
    let now_ms = clock::unix_ms();
    for w in &mut wanted {
        if let Some(t) = ttl {
            w.expires_ms = Some(now_ms + t.as_millis() as u64);
        }
        if let Some(r) = reason {
            w.reason = Some(r.to_string());
        }
    }
    // A target listed twice keeps its last line.
    wanted.reverse();
    wanted.sort_by_key(|w| w.target);
    wanted.dedup_by_key(|w| w.target);
    let before_expiry = wanted.len();
    wanted.retain(|w| w.expires_ms.is_none_or(|ms| ms > now_ms));
    let expired = before_expiry - wanted.len();

    let w = store.write()?;
    let mut reasons = w.reasons()?;
    let mut edits = Vec::with_capacity(wanted.len());
    for want in &wanted {
        let reason_id = match &want.reason {
            None => 0,
            Some(text) => w.intern_reason(&mut reasons, text, || w.reason_ids_in_use())?,
        };
        let expires_at_ns = match want.expires_ms {
            None => 0,
            // Checked above: still ahead.
            Some(ms) => clock::mono_of_wall_ms(ms).unwrap_or(1),
        };
        edits.push((
            want.target,
            Op::Block {
                expires_at_ns,
                reason_id,
                now_secs: want.added_secs,
            },
        ));
    }
    let before = entries_before(&w, &edits)?;
    // What each entry held, to undo the import: its operator block, if any.
    let held: Vec<(String, serde_json::Value)> = edits
        .iter()
        .zip(&before)
        .filter_map(|((t, _), was)| {
            let was = was.filter(|e| e.flags & FLAG_BLOCK != 0)?;
            let before = Before {
                block_expires_ms: (was.expires_at_ns != 0)
                    .then(|| clock::wall_ms_of_mono(was.expires_at_ns)),
                reason: reasons.text(was.reason_id).map(str::to_string),
                added_secs: was.added_at_secs,
            };
            Some((
                t.to_string(),
                serde_json::to_value(before).expect("serializable"),
            ))
        })
        .collect();
    let summary = w.edit(&edits)?;
    println!(
        "imported {} entries from {} ({} new, {} updated, {} duplicate lines, {} expired)",
        edits.len(),
        file.display(),
        summary.added,
        summary.changed,
        lines - before_expiry,
        expired,
    );
    journal_import(
        log,
        &Imported {
            file,
            format,
            edits: &edits,
            before: &before,
            wanted: &wanted,
            summary: &summary,
            held: &held,
        },
    );
    Ok(())
}

/// What each target of `edits` holds now. A large import reads every entry
/// at once (one pass over the maps) rather than each target apart.
fn entries_before(
    store: &Store,
    edits: &[(Target, Op)],
) -> crate::error::Result<Vec<Option<ensuresec_common::maps::ListEntry>>> {
    if edits.len() <= 64 {
        return edits.iter().map(|(t, _)| store.entries_for(t)).collect();
    }
    let all: std::collections::HashMap<Target, ensuresec_common::maps::ListEntry> = store
        .entries()?
        .into_iter()
        .map(|l| (l.target, l.entry))
        .collect();
    Ok(edits.iter().map(|(t, _)| all.get(t).copied()).collect())
}

/// One journal entry and one operation for the whole import; the desired
/// state of every entry it set; what each held before, to undo it.
/// What an import did, for the journal.
struct Imported<'a> {
    file: &'a Path,
    format: ImportFormat,
    edits: &'a [(Target, Op)],
    before: &'a [Option<ensuresec_common::maps::ListEntry>],
    wanted: &'a [Wanted],
    summary: &'a crate::store::EditSummary,
    /// What each entry held before, for `rollback --operation`.
    held: &'a [(String, serde_json::Value)],
}

fn journal_import(log: &mut OperatorLog, done: &Imported) {
    let Imported {
        file,
        format,
        edits,
        before,
        wanted,
        summary,
        held,
    } = *done;
    let detail = json!({
        "file": file.display().to_string(),
        "format": format.to_string(),
        "entries": edits.len(),
        "added": summary.added,
        "changed": summary.changed,
    });
    let command = format!("block import {} --format {format}", file.display());
    let operation = log.operation(&command, &detail);
    let mut changes = Vec::with_capacity(edits.len());
    for (((target, op), was), want) in edits.iter().zip(before).zip(wanted) {
        let Ok(Some(after)) = edit::apply(target, *was, *op) else {
            continue;
        };
        if let Some(mut row) = ListRow::of_entry(target.to_string(), &after, want.reason.clone()) {
            row.block_expires_ms = want.expires_ms;
            row.operation = operation;
            changes.push(StateChange::List(row));
        }
    }
    if let Some(op) = operation {
        log.record_before(op, held);
    }
    let mut entry = log.entry(Kind::Import, file.display()).detail(detail);
    entry.target = None;
    entry.operation = operation;
    log.record(&[entry], &changes);
}

/// The operator's blocks (not the agent's bans) as JSON that `block import
/// --format json` reads back.
pub fn export(pins: &PinDir) -> Result<()> {
    let store = Store::open(pins)?;
    let reasons = store.reasons()?;
    let mut rows: Vec<(Target, Exported)> = store
        .entries()?
        .into_iter()
        .filter(|l| l.entry.flags & FLAG_BLOCK != 0)
        .map(|l| {
            let e = &l.entry;
            (
                l.target,
                Exported {
                    entry: l.target.to_string(),
                    reason: reasons.text(e.reason_id).map(str::to_string),
                    added_at: clock::rfc3339(e.added_at_secs),
                    // To the nearest second: an import of this reads it back
                    // as the same second, however the clocks jitter.
                    expires_at: (e.expires_at_ns != 0).then(|| {
                        clock::rfc3339((clock::wall_ms_of_mono(e.expires_at_ns) + 500) / 1000)
                    }),
                },
            )
        })
        .collect();
    rows.sort_by_key(|(t, _)| *t);
    let rows: Vec<Exported> = rows.into_iter().map(|(_, r)| r).collect();
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_bytes_and_keeps_characters_whole() {
        let label = format!("spamhaus {}", "é".repeat(40));
        let cut = truncate(&label, 63);
        assert!(cut.len() <= 63 && cut.len() >= 62, "{}", cut.len());
        assert!(label.starts_with(cut));
        assert_eq!(truncate("short", 63), "short");
    }

    #[test]
    fn import_formats_name_json_too() {
        assert_eq!("json".parse(), Ok(ImportFormat::Json));
        assert_eq!("netset".parse(), Ok(ImportFormat::Lines(Format::Netset)));
        let e = "csv".parse::<ImportFormat>().unwrap_err();
        assert!(e.contains("csv") && e.contains("json"), "{e}");
    }
}
